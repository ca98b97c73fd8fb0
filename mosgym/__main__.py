"""`python -m mosgym <command>`: the same as the `mosgym` console script."""

import sys

from mosgym.cli import main

sys.exit(main())
