"""The MLflow side of a sweep: the parent run, its trial children, resuming, and one trial.

A sweep is one parent run (tag ``mosgym.kind=parent``, so `mosgym.compare --runs PARENT` stands
for its trials, and ``mosgym.sweep.*`` tags listing the grid) with one child run per trial. A
child is exactly the per-seed run `python -m mosgym.run` logs (same name, tags, params, metrics,
artifacts: it is made by mosgym.runner), plus the tags ``mosgym.sweep`` (the parent's id),
``mosgym.trial`` (the trial's id: a hash of its resolved configs and seed, so a rerun recognises
it) and ``mosgym.attempt`` (one execution of it, so a failed attempt's run can be found).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

from mosgym.errors import MosgymError
from mosgym.experiment.browse import run_name
from mosgym.experiment.request import RunRequest
from mosgym.records.runs import search_all

log = logging.getLogger("mosgym.sweep")

KIND, GRID, SPEC = "mosgym.kind", "mosgym.sweep.grid", "mosgym.sweep.spec"
SWEEP, TRIAL, ATTEMPT, ERROR = "mosgym.sweep", "mosgym.trial", "mosgym.attempt", "mosgym.error"
PARENT_TAG = "mlflow.parentRunId"


@dataclass(frozen=True)
class Trial:
    """One (env config, agent config, seed): a one-seed RunRequest without checkpoints."""

    request: RunRequest
    trial_id: str

    @property
    def name(self) -> str:
        """The run name mosgym.run gives this seed's run."""
        req = self.request
        return run_name(str(req.agent["name"]), req.seeds, req.env_name, req.experiment)

    def outcome(self, status: str, run_id: str, loss: float, wall: float, error: str = "") -> Any:
        """A TrialOutcome of this trial."""
        env, agent = self.request.env_name, str(self.request.agent["name"])
        return TrialOutcome(self.name, self.trial_id, status, run_id, loss, wall, error, env, agent)


def trial_id(req: RunRequest) -> str:
    """A hash of the resolved configs and the seed: equal configs give equal ids on rerun."""
    data = {"env": req.env, "agent": req.agent, "seed": req.seeds[0]}
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def grid_id(trials: list[Trial]) -> str:
    """A hash of the set of trials: a rerun of the same sweep finds its parent by it."""
    text = ",".join(sorted(t.trial_id for t in trials))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class TrialOutcome:
    """What became of one trial: FINISHED, FAILED, or SKIPPED (finished by an earlier run)."""

    name: str
    trial_id: str
    status: str
    run_id: str
    final_dev_loss_mean: float
    wall_time_s: float
    error: str = ""
    env_name: str = ""
    agent: str = ""

    @property
    def env(self) -> str:
        """The env config's name (outcomes made without it: from an ENV__AGENT__sSEED name)."""
        return self.env_name or self.name.rsplit("__", 2)[0]

    @property
    def group(self) -> str:
        """ENV__AGENT: the trials the parent run averages together."""
        return f"{self.env}__{self.agent}" if self.agent else self.name.rsplit("__s", 1)[0]


def new_attempt() -> str:
    return uuid.uuid4().hex


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(e).__name__}: {first}"[:500] if not isinstance(e, MosgymError) else first[:500]


def run_trial(trial: Trial, parent_id: str, uri: str, attempt: str) -> TrialOutcome:
    """Run one trial as mosgym.run would, as a child of `parent_id`; never raises on a failure
    of the trial itself (its child run is marked FAILED), so the sweep goes on.

    Runs in the sweep's process (sequential) or in a Ray worker: everything it needs is in its
    arguments, the MLflow tracking URI included.
    """
    import mlflow

    from mosgym.experiment.runner import run_request

    mlflow.set_tracking_uri(uri)
    tags = {PARENT_TAG: parent_id, SWEEP: parent_id, TRIAL: trial.trial_id, ATTEMPT: attempt}
    req = dataclasses.replace(trial.request, extra_tags={**trial.request.extra_tags, **tags})
    t0 = time.perf_counter()
    try:
        result = run_request(req)[0]
    except Exception as e:  # a failing trial must not stop the others
        error = _one_line(e)
        if isinstance(e, MosgymError):
            log.error("trial %s failed: %s", trial.name, error)
        else:
            log.exception("trial %s failed", trial.name)
        run_id = record_failure(uri, trial, parent_id, attempt, error)
        return trial.outcome("FAILED", run_id, math.nan, time.perf_counter() - t0, error)
    final = float(result.metrics.get("final/dev_loss_mean", math.nan))
    return trial.outcome("FINISHED", result.run_id, final, result.wall_time_s)


def _trial_tags(trial: Trial, parent_id: str, attempt: str) -> dict[str, str]:
    """The tags the runner gives a per-seed run (see runner._tags), plus the sweep's."""
    from mosgym.experiment import tracking

    req = trial.request
    return {
        "mosgym.env": req.env_name,
        "mosgym.agent": str(req.agent["name"]),
        "mosgym.git_commit": tracking.git_commit(),
        "mosgym.format": tracking.RECORD_FORMAT,
        KIND: "run",
        "mosgym.seed": str(req.seeds[0]),
        **req.extra_tags,
        PARENT_TAG: parent_id,
        SWEEP: parent_id,
        TRIAL: trial.trial_id,
        ATTEMPT: attempt,
    }


def record_failure(
    uri: str,
    trial: Trial,
    parent_id: str,
    attempt: str,
    error: str,
    status: str = "FAILED",
    create: bool = True,
) -> str:
    """Mark the attempt's child run FAILED (or `status`) with the error as tag ``mosgym.error``;
    make one (if `create`) when the trial failed before its run started (bad data, a worker
    lost), so the record shows it. Returns the run id ('' when none was made)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp_id = client.get_run(parent_id).info.experiment_id
    found = search(client, exp_id, f"tags.`{ATTEMPT}` = '{attempt}'")
    if found:
        run_id = found[0].info.run_id
        if found[0].info.status in ("RUNNING", "SCHEDULED"):
            client.set_terminated(run_id, status)
    elif not create:
        return ""
    else:
        tags = _trial_tags(trial, parent_id, attempt)
        run_id = client.create_run(exp_id, tags=tags, run_name=trial.name).info.run_id
        client.set_terminated(run_id, status)
    client.set_tag(run_id, ERROR, error[:500] or "failed")
    return str(run_id)


def search(client: Any, exp_id: str, filter_string: str) -> list[Any]:
    """All active runs of the experiment matching the filter, newest first."""
    return search_all(client, exp_id, filter_string, newest_first=True)


# ---------------------------------------------------------------------------------------------
# The parent run


@dataclass
class Parent:
    """The sweep's parent run and what its children already hold."""

    run_id: str
    experiment_id: str
    reused: bool
    finished: dict[str, Any]
    """trial id -> its newest FINISHED child run."""
    stale: list[str]
    """Children left RUNNING by a sweep that stopped."""


def spec_tags(spec: dict[str, Any], trials: list[Trial]) -> dict[str, str]:
    """The parent's tags: the grid, readable and as JSON (for --resume)."""
    from mosgym.experiment import tracking

    tags = {
        KIND: "parent",
        SWEEP: "true",
        GRID: grid_id(trials),
        SPEC: json.dumps(spec, sort_keys=True),
        "mosgym.sweep.envs": ",".join(spec["envs"]),
        "mosgym.sweep.agents": ",".join(spec["agents"]),
        "mosgym.sweep.seeds": spec["seeds"],
        "mosgym.sweep.sets": " ".join(spec["sets"]),
        "mosgym.sweep.n_trials": str(len(trials)),
        "mosgym.git_commit": tracking.git_commit(),
    }
    envs = {t.request.env_name for t in trials}
    if len(envs) == 1:
        tags["mosgym.env"] = envs.pop()
    return tags


def read_spec(client: Any, parent_id: str) -> tuple[dict[str, Any], str]:
    """The grid recorded on a sweep's parent run, and the run's experiment name (--resume)."""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(parent_id)
    except MlflowException:
        raise MosgymError(
            f"--resume {parent_id}: no such MLflow run in {client.tracking_uri}; copy the "
            "sweep's parent run id from its summary or `mlflow ui`, and use the same tracking store"
        ) from None
    if SPEC not in run.data.tags:
        raise MosgymError(
            f"--resume {parent_id}: that run is not a sweep's parent run (no tag {SPEC}); "
            "pass the id of the parent run `python -m mosgym.sweep` made"
        )
    exp = client.get_experiment(run.info.experiment_id)
    return json.loads(run.data.tags[SPEC]), str(exp.name)


def find_parent(
    client: Any, exp_id: str | None, trials: list[Trial], reuse: str | None, fresh: bool
) -> Parent | None:
    """The parent to continue, read only: `reuse` (an id), else the newest parent of the same
    grid in the experiment (unless `fresh`); None: a new one is needed."""
    if reuse is None:
        if exp_id is None or fresh:
            return None
        found = search(client, exp_id, f"tags.`{GRID}` = '{grid_id(trials)}'")
        if not found:
            return None
        reuse = str(found[0].info.run_id)
    exp_id = str(client.get_run(reuse).info.experiment_id)
    ids = {t.trial_id for t in trials}
    finished: dict[str, Any] = {}
    stale: list[str] = []
    for child in search(client, exp_id, f"tags.`{PARENT_TAG}` = '{reuse}'"):
        tid = child.data.tags.get(TRIAL)
        if child.info.status == "FINISHED" and tid in ids:
            finished.setdefault(tid, child)  # newest first
        elif child.info.status in ("RUNNING", "SCHEDULED"):
            stale.append(child.info.run_id)
    return Parent(reuse, exp_id, True, finished, stale)


def start_parent(
    client: Any,
    found: Parent | None,
    exp_id: str,
    spec: dict[str, Any],
    trials: list[Trial],
    outer: str | None = None,
) -> Parent:
    """Mark the found parent RUNNING again (its children left RUNNING by a sweep that stopped
    become FAILED), or make a new one (nested under run `outer` if given)."""
    if found is not None:
        client.update_run(found.run_id, status="RUNNING")
        for run_id in found.stale:
            client.set_terminated(run_id, "FAILED")
            client.set_tag(run_id, ERROR, "left running by a sweep that stopped")
        return found
    name = f"sweep__{'_'.join(spec['envs'])}__{len(trials)}-trials"[:250]
    tags = spec_tags(spec, trials) | ({PARENT_TAG: outer} if outer else {})
    run = client.create_run(exp_id, tags=tags, run_name=name)
    params = [_param(k, _str(v)) for k, v in spec.items()]
    client.log_batch(run.info.run_id, params=[_param("n_trials", len(trials)), *params])
    return Parent(run.info.run_id, exp_id, False, {}, [])


def _str(v: Any) -> str:
    return ",".join(map(str, v)) if isinstance(v, list) else str(v)


def _param(key: str, value: Any) -> Any:
    from mlflow.entities import Param

    return Param(key, str(value)[:500])


def skipped_outcome(trial: Trial, run: Any) -> TrialOutcome:
    metrics = run.data.metrics
    return trial.outcome(
        "SKIPPED",
        run.info.run_id,
        float(metrics.get("final/dev_loss_mean", math.nan)),
        float(metrics.get("wall_time_s", math.nan)),
    )


def close_parent(client: Any, parent_id: str, outcomes: list[TrialOutcome], status: str) -> None:
    """End the parent: counts, mean final dev loss per env x agent over its finished trials."""
    done = [o for o in outcomes if o.status in ("FINISHED", "SKIPPED")]
    metrics: dict[str, float] = {
        "sweep/n_finished": sum(o.status == "FINISHED" for o in outcomes),
        "sweep/n_skipped": sum(o.status == "SKIPPED" for o in outcomes),
        "sweep/n_failed": sum(o.status == "FAILED" for o in outcomes),
    }
    groups: dict[str, list[float]] = {}
    for o in done:
        if math.isfinite(o.final_dev_loss_mean):
            groups.setdefault(o.group, []).append(o.final_dev_loss_mean)
    for group, vals in groups.items():
        metrics[f"mean/{group}/final/dev_loss_mean"] = sum(vals) / len(vals)
    from mlflow.entities import Metric

    ts = int(time.time() * 1000)
    client.log_batch(parent_id, metrics=[Metric(k, float(v), ts, 0) for k, v in metrics.items()])
    client.set_terminated(parent_id, status)
