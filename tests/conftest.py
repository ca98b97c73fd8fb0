"""Shared fixtures: tiny env configs that run in seconds on 2 CPU cores, isolated MLflow."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

REPO = Path(__file__).resolve().parents[1]
DEMO_DIR = REPO.parent / "shared" / "data" / "mos-demo"

# A smaller model and budget than the embedded default: the same code paths in seconds.
FAST_ENV = [
    "model.hidden_size=32",
    "model.num_layers=1",
    "model.num_heads=2",
    "model.intermediate_size=64",
    "train.total_steps=6",
    "train.interval=2",
    "train.batch_size=4",
    "train.probe_size=4",
    "train.eval_batch_size=16",
    "train.n_eval_generate=4",
    "train.eval_max_new_tokens=8",
]


def _mosgym_logger_levels() -> dict[str, int]:
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] == "mosgym"]
    return {n: logging.getLogger(n).level for n in names}


# The levels before any test ran. Restoring to these, not to the levels a test started with,
# matters: a module-scoped fixture that runs a CLI in-process (`-q` raises mosgym's logger to
# ERROR) does so before the first test's snapshot would be taken.
_BASELINE_LEVELS = _mosgym_logger_levels()


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Every test gets its own MLflow store and tokenization cache; no run is left active, and
    no logger level a CLI set leaks into the next test, where it would hide the warnings that
    test checks with caplog."""
    base = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{base}/mlflow.db")
    monkeypatch.setenv("XDG_CACHE_HOME", str(base / "cache"))
    # Every test starts without the experiment id an earlier mlflow.set_experiment exported.
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    yield
    import mlflow

    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(None)  # forget a URI a test set; monkeypatch restores the env var
    # Forget the experiment a test made active (mlflow.set_experiment): its id belongs to that
    # test's store, and a later bare mlflow.start_run() (transformers' MLflowCallback) would
    # look it up in another store ("No Experiment with id=1 exists").
    import mlflow.tracking.fluent

    mlflow.tracking.fluent._active_experiment_id = None
    for name in _mosgym_logger_levels():
        logging.getLogger(name).setLevel(_BASELINE_LEVELS.get(name, logging.NOTSET))


@pytest.fixture
def fast_env_overrides() -> list[str]:
    return list(FAST_ENV)
