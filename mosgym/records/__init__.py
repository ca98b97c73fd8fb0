"""records: reading the records of runs (MLflow stores): the paginated search and the per-run
curves that compare, fidelity, calibration and sweeps read. A foundation stage like config: it
may import only mosgym.errors and mosgym.config, so every stage can read records.
"""
