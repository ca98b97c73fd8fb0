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
WORKFLOW = "machine_learning"  # ?workflowType=: the UI's "Model training" side, not GenAI
NOTE_TAG = "mlflow.note.content"  # the run's Description in the UI (markdown)
MAX_NOTE = 7500  # MLflow caps a tag value at 8000 characters
LOCAL_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default
SORT_BY_NAME = "tags.`mlflow.runName`"  # the UI's own sort key for its Run Name column
# A saved view of the runs page is an experiment tag mlflow.sharedViewState.KEY holding
# {name, createdAt, updatedAt, state: JSON of the UI state}; ?viewStateShareKey=KEY opens it.
VIEW_KEY = "mosgym-agents"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
VIEW_NAME = "mosgym: agents"
VIEW_METRICS = ("final/dev_loss_mean", "final/dev_loss_worst", "final/accuracy_mean")


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


def agents_view_state() -> dict[str, Any]:
    """The runs table mosgym opens: seed runs grouped by agent (a group's row is the mean over
    its seeds), the final metrics as columns, seeds in order. Keys are those of MLflow's UI
    state (a saved view); `compareRunsMode=CHART` in the URL shows it as charts, one mean
    curve per agent."""
    return {
        "orderByKey": SORT_BY_NAME,
        "orderByAsc": True,
        "searchFilter": "tags.`mosgym.kind` = 'run'",
        "selectedColumns": [f"metrics.`{k}`" for k in VIEW_METRICS],
        "groupBy": {
            "aggregateFunction": "average",
            "groupByKeys": [{"mode": "tag", "groupByData": "mosgym.agent"}],
        },
    }


def prepare_experiment(experiment_id: str) -> None:
    """Tag the experiment so MLflow 3 opens it on its runs (model training) view, and save the
    'mosgym: agents' view of its runs (an experiment tag the UI lists under Views)."""
    import json
    import time

    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    tags = client.get_experiment(experiment_id).tags
    if tags.get(EXPERIMENT_KIND_TAG) != TRAINING_KIND:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, TRAINING_KIND)
    state = json.dumps(agents_view_state(), sort_keys=True)
    try:
        saved = json.loads(tags.get(VIEW_TAG, "{}")).get("state")
    except (ValueError, AttributeError):
        saved = None
    if saved != state:
        now = int(time.time() * 1000)
        view = {"name": VIEW_NAME, "createdAt": now, "updatedAt": now, "state": state}
        client.set_experiment_tag(experiment_id, VIEW_TAG, json.dumps(view))


def runs_page_url(
    tracking_uri: str, experiment_id: str, base: str = LOCAL_UI, charts: bool = False
) -> str:
    """The experiment's runs page in the 'mosgym: agents' view (`charts`: as charts).

    `base` is where `mlflow ui` serves a local store; an http(s) tracking URI is its own base.
    """
    base = _base(tracking_uri) if base == LOCAL_UI else base
    query = {"viewStateShareKey": VIEW_KEY, **({"compareRunsMode": "CHART"} if charts else {})}
    query["workflowType"] = WORKFLOW
    return f"{base}/#/experiments/{experiment_id}/runs?{urllib.parse.urlencode(query)}"


def _base(tracking_uri: str) -> str:
    """Where the UI of this store is served: the server itself, or a local `mlflow ui`."""
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return LOCAL_UI


def run_page_url(
    tracking_uri: str, experiment_id: str, run_id: str, artifact: str | None = None
) -> str:
    """One run's page in the UI (its artifact `artifact` opened, if given)."""
    url = f"{_base(tracking_uri)}/#/experiments/{experiment_id}/runs/{run_id}"
    url = f"{url}/artifacts/{artifact}" if artifact else url
    return f"{url}?workflowType={WORKFLOW}"


def browse_lines(tracking_uri: str, experiment_id: str, url: str | None = None) -> list[str]:
    """How to open `url` (default: the experiment's runs page, as a table and as charts): the
    command that serves a local store, then the URL."""
    extra = []
    if url is None:
        url = runs_page_url(tracking_uri, experiment_id)
        charts = runs_page_url(tracking_uri, experiment_id, charts=True)
        extra = [f"   as charts (a mean curve per agent): {charts}"]
    if tracking_uri.startswith(("http://", "https://")):
        return [f"browse: {url}", *extra]
    if tracking_uri.startswith(("sqlite:", "file:", "postgresql", "mysql", "mssql")) or (
        "://" not in tracking_uri
    ):
        serve = f"mlflow ui --backend-store-uri {tracking_uri} --port 5000"
        return [f"browse: {serve}", f"   then open {url}", *extra]
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
