"""`python -m mosgym.benchmark`: the same as `mosgym benchmark`."""

import os
import sys

from mosgym.benchmark.cli import main

if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
