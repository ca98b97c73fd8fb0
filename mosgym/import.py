"""`python -m mosgym.import`: load a run archive into an MLflow store (see mosgym.records.archive).

`import` is a keyword, so this module cannot be named in an import statement; `python -m` runs it
all the same (runpy imports by string). Python code calls mosgym.records.archive.import_main.
"""

import sys

from mosgym.records.archive import import_main

if __name__ == "__main__":
    sys.exit(import_main())
