"""records: reading and writing the records of runs (MLflow stores and the repo's archive). A
foundation stage like config: it may import only mosgym.errors and mosgym.config, so every
stage can read records.

`runs` reads an experiment's runs into arrays (the paginated search and the per-run curves that
compare, fidelity, calibration and sweeps read); `archive_format` is the run archive's files;
`archive` its two commands, `mosgym export` (MLflow runs -> plain files) and `mosgym import`
(the files -> any MLflow store); `archive_reader` lets the readers of runs read an archive
exactly as they read an MLflow experiment.
"""
