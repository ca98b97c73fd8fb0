"""`python -m mosgym.sim2real`, as the README and papers cite it (code: a stage folder)."""

import os
import sys

from mosgym.experiment.sim2real import main

if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
