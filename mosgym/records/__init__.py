"""records: reading and writing the records of runs (MLflow stores and the repo's archive); imports
only mosgym.errors and mosgym.config.

`archive_format` is the run archive's files; `archive` its two commands, `python -m
mosgym.export` (MLflow runs -> plain files) and `python -m mosgym.import` (the files -> any
MLflow store); `archive_reader` lets the readers of runs (compare, fidelity, calibrate, the
paper's report) read an archive exactly as they read an MLflow experiment.
"""
