"""Read the runs of an MLflow experiment into arrays for `mosgym.compare`.

Only what the tracking contract promises is read (see mosgym.experiment.tracking): tags
``mosgym.agent``, ``mosgym.seed``, ``mosgym.kind``, ``mosgym.format``; params
``env.train.total_steps`` and ``env.skills`` (older records: ``env.skills.N.name``); the
``final/...`` metrics; the histories of ``dev_loss_mean`` and ``weight/{skill}``. Both record
formats are read: in format 2 each weight is logged at the start of its interval; in format 1
(no ``mosgym.format`` tag) at its end, after a uniform point at step 0, and it is moved here
to the start of its interval, so the two compare alike.
Runs that cannot be compared with each other (other skills, other budget) are refused here,
before any statistic is computed, because a number across them would mean nothing.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mosgym.errors import MosgymError
from mosgym.records.archive_format import CONFIG_FILE

KIND_TAG, AGENT_TAG, SEED_TAG = "mosgym.kind", "mosgym.agent", "mosgym.seed"
FORMAT_TAG = "mosgym.format"
BUDGET_PARAM = "env.train.total_steps"
SKILLS_PARAM = "env.skills"
_SKILL_PARAM = re.compile(r"^env\.skills\.(\d+)\.name$")
_PAGE = 1000


@dataclass(frozen=True)
class RunData:
    """One finished run (one agent, one seed) as arrays.

    `steps` (K,) and `dev_loss_mean` (K,): the mean-dev-loss curve; `weight_steps` (M,) and
    `weights` (M, N): the mixture path, columns in `skills` order (empty when not logged).
    """

    run_id: str
    agent: str
    seed: str
    budget: int
    skills: tuple[str, ...]
    finals: dict[str, float]
    steps: np.ndarray
    dev_loss_mean: np.ndarray
    weight_steps: np.ndarray
    weights: np.ndarray

    @property
    def label(self) -> str:
        return f"{self.agent} seed {self.seed} (run {self.run_id[:8]})"


@dataclass
class Loaded:
    """The runs to compare and what was left out on the way, as one-line notes."""

    runs: list[RunData]
    notes: list[str] = field(default_factory=list)


def make_client(tracking_uri: str | None, archive: str | os.PathLike | None = None) -> Any:
    """An MlflowClient; the fluent API's global state (tracking URI, active run) is untouched.

    With `archive` (a folder `python -m mosgym.export` wrote): a read-only ArchiveReader with the
    same reading methods, so everything below reads the archive as it reads MLflow.
    """
    if archive is not None:
        if tracking_uri:
            raise MosgymError("--archive and --tracking-uri: give one source of runs, not both")
        from mosgym.records.archive_reader import ArchiveReader

        return ArchiveReader(archive)
    from mlflow.tracking import MlflowClient

    if tracking_uri and tracking_uri.startswith(("http://", "https://")):
        # An unreachable server should be reported in seconds, not after minutes of retries.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    return MlflowClient(tracking_uri=tracking_uri)


def experiment_id(client: Any, name: str) -> str:
    """The id of experiment `name`; a clear error naming the known ones when it does not exist."""
    try:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            known = sorted(e.name for e in client.search_experiments(max_results=50))
    except Exception as e:  # any failure here means the store cannot be read
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise MosgymError(
            f"MLflow tracking store {client.tracking_uri} cannot be read ({first[:200]}); "
            "pass --tracking-uri or set MLFLOW_TRACKING_URI to the store the runs were logged to"
        ) from None
    if exp is None:
        raise MosgymError(
            f"--experiment {name}: no such MLflow experiment at {client.tracking_uri} "
            f"(known: {', '.join(known) or 'none'}); pass --tracking-uri if the runs are elsewhere"
        )
    return str(exp.experiment_id)


def search_all(
    client: Any, exp_id: str, filter_string: str, newest_first: bool = False
) -> list[Any]:
    """Every active run of the experiment matching the filter, page by page, by start time."""
    from mlflow.entities import ViewType

    order = "DESC" if newest_first else "ASC"
    out: list[Any] = []
    token = None
    while True:
        page = client.search_runs(
            [exp_id],
            filter_string,
            ViewType.ACTIVE_ONLY,
            _PAGE,
            [f"attributes.start_time {order}"],
            token,
        )
        out.extend(page)
        token = page.token
        if not token:
            return out


def run_config(client: Any, run_id: str) -> bytes | None:
    """The run's resolved config artifact (config.yaml) as written, or None when it has none;
    from an MLflow store or a run archive alike."""
    if CONFIG_FILE not in {a.path for a in client.list_artifacts(run_id)}:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        return Path(client.download_artifacts(run_id, CONFIG_FILE, tmp)).read_bytes()


def _requested_runs(client: Any, exp_id: str, run_ids: list[str]) -> list[Any]:
    """The runs named on the command line; a parent run stands for its children."""
    from mlflow.exceptions import MlflowException

    out: list[Any] = []
    for rid in run_ids:
        try:
            run = client.get_run(rid)
        except MlflowException:
            raise MosgymError(
                f"--runs {rid}: no such MLflow run; copy the id from `mlflow ui`"
            ) from None
        if run.info.experiment_id != exp_id:
            raise MosgymError(
                f"--runs {rid}: the run belongs to experiment id {run.info.experiment_id}, not "
                f"to the one given with --experiment; pass that experiment's runs only"
            )
        if run.data.tags.get(KIND_TAG) == "parent":
            out.extend(search_all(client, exp_id, f"tags.`mlflow.parentRunId` = '{rid}'"))
        else:
            out.append(run)
    return out


def _select(runs: list[Any], agents: list[str] | None) -> tuple[list[Any], list[str]]:
    """FINISHED runs of kind 'run' (of `agents` if given), and a note per unfinished one."""
    notes: list[str] = []
    kept: list[Any] = []
    seen: set[str] = set()
    for run in runs:
        tags = run.data.tags
        if run.info.run_id in seen or tags.get(KIND_TAG) != "run":
            continue  # parent and comparison runs carry no per-seed results
        seen.add(run.info.run_id)
        if agents is not None and tags.get(AGENT_TAG) not in agents:
            continue
        if run.info.status != "FINISHED":
            notes.append(
                f"skipped run {run.info.run_id[:8]} ({tags.get(AGENT_TAG, '?')} seed "
                f"{tags.get(SEED_TAG, '?')}): status {run.info.status}, not FINISHED"
            )
            continue
        kept.append(run)
    found = {r.data.tags.get(AGENT_TAG) for r in kept}
    missing = [a for a in agents or [] if a not in found]
    if missing:
        raise MosgymError(
            f"--agents {' '.join(missing)}: no finished runs of that agent "
            f"(agents with finished runs: {', '.join(sorted(map(str, found))) or 'none'})"
        )
    return kept, notes


def skill_names(params: dict[str, str], metrics: dict[str, float]) -> tuple[str, ...]:
    """Skills from param env.skills (comma-separated) or params env.skills.N.name (in N order),
    else from dev_loss/{skill} metric keys."""
    if params.get(SKILLS_PARAM):
        return tuple(params[SKILLS_PARAM].split(","))
    indexed = sorted(
        (int(m.group(1)), v) for k, v in params.items() if (m := _SKILL_PARAM.match(k))
    )
    if indexed:
        return tuple(v for _, v in indexed)
    return tuple(sorted(k.split("/", 1)[1] for k in metrics if k.startswith("dev_loss/")))


def metric_history(client: Any, run_id: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of a metric, sorted by step; the latest value wins on a repeated step."""
    hist = sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))
    by_step = {m.step: m.value for m in hist}
    steps = np.array(sorted(by_step), dtype=np.float64)
    return steps, np.array([by_step[s] for s in sorted(by_step)], dtype=np.float64)


def _mixture(
    client: Any, run_id: str, skills: tuple[str, ...], format_1: bool, last_step: float
) -> tuple[np.ndarray, np.ndarray]:
    """The weight/{skill} histories as (steps (M,), weights (M, N)), each weight at the start
    of its interval; empty if any is missing. `format_1`: a record without the format tag;
    `last_step`: the last step of its dev-loss curve."""
    series = [metric_history(client, run_id, f"weight/{s}") for s in skills]
    if not series or any(len(st) == 0 for st, _ in series):
        return np.zeros(0), np.zeros((0, len(skills)))
    steps = series[0][0]
    if any(not np.array_equal(st, steps) for st, _ in series):
        return np.zeros(0), np.zeros((0, len(skills)))
    weights = np.stack([v for _, v in series], axis=1)
    # Format 1 wrote the reset's uniform mixture at step 0 and each interval's at its end:
    # drop the first, and put row k at the start of its interval, steps[k - 1].
    if format_1 and len(steps) > 1 and steps[0] == 0 and steps[-1] == last_step:
        return steps[:-1], weights[1:]
    return steps, weights


def skill_curves(client: Any, run: RunData) -> tuple[np.ndarray, np.ndarray]:
    """The run's dev_loss/{skill} histories on the steps all of them share: (steps (K,),
    losses (K, N), columns in run.skills order); empty when a skill has none."""
    series = [metric_history(client, run.run_id, f"dev_loss/{s}") for s in run.skills]
    if not series or any(len(st) == 0 for st, _ in series):
        return np.zeros(0), np.zeros((0, len(run.skills)))
    common = sorted(set.intersection(*(set(st.tolist()) for st, _ in series)))
    cols = [np.array([dict(zip(st, v, strict=True))[t] for t in common]) for st, v in series]
    return np.array(common, dtype=np.float64), np.stack(cols, axis=1)


def _budget(run: Any, curve_steps: np.ndarray) -> int:
    """env.train.total_steps, else the last step of the dev-loss curve (runs logged by hand)."""
    raw = run.data.params.get(BUDGET_PARAM)
    if raw is None:
        return int(curve_steps[-1])
    try:
        return int(float(raw))
    except ValueError:
        raise MosgymError(
            f"run {run.info.run_id}: param {BUDGET_PARAM}={raw!r} is not a number of steps"
        ) from None


def to_run_data(client: Any, run: Any) -> RunData:
    """Read one MLflow run (final metrics, curve, mixture path) into a RunData."""
    tags, metrics = run.data.tags, run.data.metrics
    rid = run.info.run_id
    agent = tags.get(AGENT_TAG)
    if not agent:
        raise MosgymError(f"run {rid}: no tag {AGENT_TAG}; log runs with `python -m mosgym.run`")
    skills = skill_names(run.data.params, metrics)
    steps, curve = metric_history(client, rid, "dev_loss_mean")
    if len(steps) == 0:
        raise MosgymError(
            f"run {rid} ({agent}): no dev_loss_mean history; it was not logged by mosgym.run "
            "(see the MLflow contract in mosgym/experiment/tracking.py)"
        )
    format_1 = tags.get(FORMAT_TAG) is None
    w_steps, weights = _mixture(client, rid, skills, format_1, float(steps[-1]))
    finals = {k: float(v) for k, v in metrics.items() if k.startswith("final/")}
    return RunData(
        rid,
        agent,
        tags.get(SEED_TAG, "?"),
        _budget(run, steps),
        skills,
        finals,
        steps,
        curve,
        w_steps,
        weights,
    )


def check_comparable(runs: list[RunData]) -> None:
    """Refuse runs with different skill sets or budgets: their numbers are not comparable."""
    first = runs[0]
    for r in runs[1:]:
        if sorted(r.skills) != sorted(first.skills):
            raise MosgymError(
                f"runs have different skill sets: {first.label} has {', '.join(first.skills)} "
                f"but {r.label} has {', '.join(r.skills)}; compare runs of one env "
                "(choose them with --runs or --agents, or use separate experiments)"
            )
        if r.budget != first.budget:
            raise MosgymError(
                f"runs have different budgets ({BUDGET_PARAM}): {first.label} trained "
                f"{first.budget} steps but {r.label} {r.budget}; compare runs of one budget "
                "(choose them with --runs or --agents, or use separate experiments)"
            )


def load_runs(
    client: Any,
    experiment: str,
    run_ids: list[str] | None = None,
    agents: list[str] | None = None,
    env: str | None = None,
) -> Loaded:
    """The finished per-seed runs of `experiment` (or of `run_ids`; of env config `env` only
    when given: a sweep over several envs logs them all in one experiment), checked to be
    comparable."""
    exp_id = experiment_id(client, experiment)
    if run_ids:
        raw = _requested_runs(client, exp_id, run_ids)
    else:
        raw = search_all(client, exp_id, f"tags.`{KIND_TAG}` = 'run'")
    if env is not None:
        raw = [r for r in raw if r.data.tags.get("mosgym.env") == env]
    kept, notes = _select(raw, agents)
    if not kept:
        what = f"runs {' '.join(run_ids)}" if run_ids else f"experiment '{experiment}'"
        what += f" (env {env})" if env is not None else ""
        skipped = f" ({len(notes)} unfinished skipped)" if notes else ""
        raise MosgymError(
            f"{what}: no finished runs with tag {KIND_TAG}=run to compare{skipped}; "
            "log some with `python -m mosgym.run --experiment NAME --seeds 0-4`"
        )
    runs = [to_run_data(client, r) for r in kept]
    check_comparable(runs)
    return Loaded(runs, notes + duplicate_seed_notes(runs))


def duplicate_seed_notes(runs: list[RunData]) -> list[str]:
    """A note per agent x seed logged more than once (each such run counts as a seed)."""
    counts: dict[tuple[str, str], int] = {}
    for r in runs:
        counts[(r.agent, r.seed)] = counts.get((r.agent, r.seed), 0) + 1
    return [f"{a} has {n} runs with seed {s}; each counts" for (a, s), n in counts.items() if n > 1]


def stack_curves(curves: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Runs' curves on one step grid: [(steps (K_r,), values (K_r,))] -> (grid (K,), (runs, K)).

    The grid is the union of the runs' steps; a run is linearly interpolated onto it (runs of
    one budget and eval interval share their steps, so this only matters for odd runs).
    """
    grid = np.unique(np.concatenate([s for s, _ in curves]))
    return grid, np.stack([np.interp(grid, s, v) for s, v in curves])


def agent_curve(runs: list[RunData], agent: str) -> tuple[np.ndarray, np.ndarray]:
    """The dev_loss_mean curves of one agent's runs: (grid (K,), values (runs, K))."""
    return stack_curves([(r.steps, r.dev_loss_mean) for r in runs if r.agent == agent])


def mixture_paths(runs: list[RunData], agents: list[str]) -> dict[str, tuple[np.ndarray, ...]]:
    """agent -> (steps (M,), mean over seeds of the weights (M, N)), skills in runs[0]'s order."""
    skills = runs[0].skills
    paths: dict[str, tuple[np.ndarray, ...]] = {}
    for a in agents:
        logged = [r for r in runs if r.agent == a and len(r.weight_steps)]
        if not logged:
            paths[a] = (np.zeros(0), np.zeros((0, len(skills))))
            continue
        cols = []
        for s in skills:
            grid, vals = stack_curves(
                [(r.weight_steps, r.weights[:, r.skills.index(s)]) for r in logged]
            )
            cols.append(vals.mean(axis=0))
        paths[a] = (grid, np.stack(cols, axis=1))
    return paths
