"""`python -m mosgym.export`: write MLflow runs into a run archive (see mosgym.records.archive)."""

import sys

from mosgym.records.archive import export_main

if __name__ == "__main__":
    sys.exit(export_main())
