"""`python -m mosgym.compare`, as the README and papers cite it (code: a stage folder)."""

import os
import sys

from mosgym.analysis.compare import main

if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
