"""How runs look in the MLflow UI: run names, the experiment's view, its URL, run descriptions.

Run names are agent-first and short (``mos-cossim-ema s0``; a parent: ``mos-cossim-ema s0-4``)
because MLflow's runs table cuts names at about 20 characters and the env already names the
experiment; the env joins the name only when the experiment is not named after it (a sweep
over several envs, ``--experiment``). The env, agent and seed are always tags as well.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

# MLflow 3 opens an experiment on its GenAI overview unless the experiment says it holds
# model-training runs (the UI reads this tag; values from MLflow's ExperimentKind).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
TRAINING_KIND = "custom_model_development"
NOTE_TAG = "mlflow.note.content"  # the run's Description in the UI (markdown)
MAX_NOTE = 7500  # MLflow caps a tag value at 8000 characters
LOCAL_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default
SORT_BY_NAME = "tags.`mlflow.runName`"  # the UI's own sort key for its Run Name column


def seeds_label(seeds: list[int]) -> str:
    """'0-4' for a contiguous range, else '0,3,7'."""
    if len(seeds) > 1 and seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}-{seeds[-1]}"
    return ",".join(map(str, seeds))


def run_name(agent: str, seeds: list[int], env: str, experiment: str) -> str:
    """'mos-cossim-ema s0' (one seed) or 'mos-cossim-ema s0-4' (a parent), plus ' @ ENV' when
    the experiment is not named after the env."""
    name = f"{agent} s{seeds_label(seeds)}"
    return name if env == experiment else f"{name} @ {env}"


def mark_training_experiment(experiment_id: str) -> None:
    """Tag the experiment so MLflow 3 opens it on its runs (model training) view."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    exp = client.get_experiment(experiment_id)
    if exp.tags.get(EXPERIMENT_KIND_TAG) != TRAINING_KIND:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, TRAINING_KIND)


def runs_page_url(tracking_uri: str, experiment_id: str, base: str = LOCAL_UI) -> str:
    """The experiment's runs page, sorted by run name (agents together, seeds in order).

    `base` is where `mlflow ui` serves a local store; an http(s) tracking URI is its own base.
    """
    if tracking_uri.startswith(("http://", "https://")):
        base = tracking_uri.rstrip("/")
    query = urllib.parse.urlencode({"orderByKey": SORT_BY_NAME, "orderByAsc": "true"})
    return f"{base}/#/experiments/{experiment_id}/runs?{query}"


def browse_lines(tracking_uri: str, experiment_id: str) -> list[str]:
    """How to open the runs: the command for a local store, then the direct URL."""
    url = runs_page_url(tracking_uri, experiment_id)
    if tracking_uri.startswith(("http://", "https://")):
        return [f"browse: {url}"]
    if tracking_uri.startswith(("sqlite:", "file:", "postgresql", "mysql", "mssql")) or (
        "://" not in tracking_uri
    ):
        return [
            f"browse: mlflow ui --backend-store-uri {tracking_uri} --port 5000",
            f"   then open {url}",
        ]
    return [f"browse: {tracking_uri} (experiment id {experiment_id})"]


def set_note(run_id: str, text: str, client: Any = None) -> None:
    """Make `text` (markdown) the run's Description in the MLflow UI."""
    if client is None:
        from mlflow.tracking import MlflowClient

        client = MlflowClient()
    if len(text) > MAX_NOTE:
        text = text[: MAX_NOTE - 20] + "\n\n(cut: too long)"
    client.set_tag(run_id, NOTE_TAG, text)


def code_block(text: str) -> str:
    """A fixed-width table as markdown (the UI renders the description as markdown)."""
    return f"```\n{text}\n```"
