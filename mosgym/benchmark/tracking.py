"""The benchmark's MLflow record: one parent run per benchmark, children per algorithm x seed.

The parent (tag ``mosgym.kind=benchmark``) is found again by ``mosgym.bench.id``, a hash of what
the benchmark trains and where (suite configs, entries, seeds, budget, evaluation), so rerunning
the same command continues it. Its children are the simulator side: ``bench-train`` (one
algorithm x training seed: learning curve, simulator score, policy) and ``bench-sim-baseline``
(a baseline scored on the same held-out simulator episodes). Each child carries
``mosgym.bench.trial``, a hash of its resolved settings: a FINISHED child with the same trial
is not redone. The real deployments are ordinary `mosgym run` runs in the real experiment,
tagged with the benchmark's id (see mosgym.benchmark.deploy).

Everything goes through an MlflowClient: no fluent run is left active between steps.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from mosgym.errors import MosgymError
from mosgym.experiment.tracking import git_commit
from mosgym.records.runs import search_all

KIND, BENCH, TRIAL, ALGO = (
    "mosgym.kind",
    "mosgym.bench.id",
    "mosgym.bench.trial",
    "mosgym.bench.algo",
)
SPEC, PARENT_TAG, SEED = "mosgym.bench.spec", "mlflow.parentRunId", "mosgym.seed"
TRAIN_SEED, ERROR = "mosgym.bench.train_seed", "mosgym.error"
TRAIN_KIND, BASELINE_KIND = "bench-train", "bench-sim-baseline"
# The real-training route (mosgym.benchmark.real_train): its episodes and final deployments.
ROLE, EPISODE, EPISODES = "mosgym.bench.role", "mosgym.bench.episode", "mosgym.bench.episodes"
TRAIN_ROLE, ROUTE = "real-train", "-real"
# The offline route (mosgym.benchmark.offline): its training children and deployments' suffix.
OFFLINE_KIND, OFFLINE = "bench-offline", "-offline"


def experiment_id(client: Any, name: str, create: bool) -> str | None:
    """The experiment's id (None when absent and not `create`); deleted ones are an error."""
    from mlflow.exceptions import MlflowException

    if not name.strip():
        raise MosgymError("--experiment / --real-experiment: must be a non-empty name")
    try:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            return str(client.create_experiment(name)) if create else None
    except MlflowException as e:
        raise MosgymError(f"MLflow experiment {name!r}: {str(e).splitlines()[0][:200]}") from None
    if exp.lifecycle_stage != "active":
        raise MosgymError(f"MLflow experiment {name!r} is deleted; choose another name")
    return str(exp.experiment_id)


@dataclass
class Parent:
    """The benchmark's parent run and its experiment."""

    run_id: str
    experiment_id: str


def find_parent(client: Any, exp_id: str | None, bench_id: str) -> Parent | None:
    """The newest parent run of this benchmark, if any."""
    if exp_id is None:
        return None
    found = search_all(
        client,
        exp_id,
        f"tags.`{BENCH}` = '{bench_id}' and tags.`{KIND}` = 'benchmark'",
        newest_first=True,
    )
    return Parent(found[0].info.run_id, exp_id) if found else None


def require_parent(client: Any, experiment: str, bench_id: str) -> Parent:
    """The benchmark's parent run, or one error line: the real and report stages read the
    settings of a simulator stage, and a run of them under other settings (another algorithm,
    seed, budget or baseline list) would belong to no benchmark."""
    parent = find_parent(client, experiment_id(client, experiment, create=False), bench_id)
    if parent is None:
        raise MosgymError(
            f"no benchmark with these settings in MLflow experiment {experiment!r} (id "
            f"{bench_id}); run the simulator stage first (--stage sim) with the same --algos, "
            "--seeds, --budget, --baselines and MLFLOW_TRACKING_URI"
        )
    return parent


def open_parent(
    client: Any, experiment: str, bench_id: str, spec: dict[str, Any], name: str
) -> Parent:
    """The benchmark's parent, marked RUNNING (made, with the spec as tag and params, if new)."""
    exp_id = experiment_id(client, experiment, create=True)
    assert exp_id is not None
    parent = find_parent(client, exp_id, bench_id)
    if parent is not None:
        client.update_run(parent.run_id, status="RUNNING")
        for run in children(client, parent):  # left running by a process that was killed
            if run.info.status in ("RUNNING", "SCHEDULED"):
                client.set_tag(run.info.run_id, ERROR, "left running by a benchmark that stopped")
                client.set_terminated(run.info.run_id, "FAILED")
        return parent
    tags = {
        KIND: "benchmark",
        BENCH: bench_id,
        SPEC: json.dumps(spec, sort_keys=True)[:5000],
        "mosgym.env": spec["suite"],
        "mosgym.git_commit": git_commit(),
    }
    run = client.create_run(exp_id, tags=tags, run_name=name)
    flat = {k: v for k, v in spec.items() if not isinstance(v, dict)}
    log_params(client, run.info.run_id, flat)
    return Parent(run.info.run_id, exp_id)


def log_params(client: Any, run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(k, _text(v)[:500]) for k, v in params.items()]
    for i in range(0, len(items), 100):
        client.log_batch(run_id, params=items[i : i + 100])


def _text(v: Any) -> str:
    return ",".join(map(str, v)) if isinstance(v, list | tuple) else str(v)


def log_metrics(client: Any, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
    from mlflow.entities import Metric

    ts = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, float(v), ts, step) for k, v in metrics.items()])


def children(client: Any, parent: Parent, kind: str | None = None) -> list[Any]:
    """The parent's child runs (of `kind`), newest first."""
    query = f"tags.`{PARENT_TAG}` = '{parent.run_id}'"
    if kind is not None:
        query += f" and tags.`{KIND}` = '{kind}'"
    return search_all(client, parent.experiment_id, query, newest_first=True)


def finished_trials(client: Any, parent: Parent) -> dict[str, Any]:
    """trial id -> its newest FINISHED child run."""
    out: dict[str, Any] = {}
    for run in children(client, parent):
        trial = run.data.tags.get(TRIAL)
        if trial and run.info.status == "FINISHED":
            out.setdefault(trial, run)
    return out


@contextmanager
def child_run(client: Any, parent: Parent, name: str, tags: dict[str, str]) -> Iterator[str]:
    """A child run that ends FINISHED, KILLED (Ctrl-C) or FAILED (with the error as a tag)."""
    all_tags = {PARENT_TAG: parent.run_id, "mosgym.git_commit": git_commit(), **tags}
    run_id = client.create_run(parent.experiment_id, tags=all_tags, run_name=name).info.run_id
    try:
        yield str(run_id)
    except KeyboardInterrupt:
        client.set_terminated(run_id, "KILLED")
        raise
    except BaseException as e:
        client.set_tag(run_id, ERROR, (str(e).splitlines() or [type(e).__name__])[0][:500])
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")


def close_parent(client: Any, parent: Parent, status: str) -> None:
    client.set_terminated(parent.run_id, status)
