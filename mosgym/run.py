"""`python -m mosgym.run`, as the README and papers cite it (the code lives in a stage folder)."""

import os
import sys

from mosgym.experiment.run import main

if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
