"""Run an agent on an env over several seeds, with a progress bar and an MLflow record."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mosgym.config import EnvConfig, from_dict
from mosgym.errors import MosgymError
from mosgym.experiment import browse, faults, launch, tracking
from mosgym.experiment.checkpoint import CheckpointDir
from mosgym.experiment.episode import EpisodeLog
from mosgym.experiment.request import RunRequest
from mosgym.experiment.run_params import run_params
from mosgym.experiment.seed_run import SeedRun
from mosgym.learner import distributed

log = logging.getLogger(__name__)

SELF_DRIVING_KINDS = ("sb3",)
"""Agent kinds that step the env inside their own loop (SB3 learning online): they write no
checkpoints and cannot be resumed exactly."""


@dataclass
class SeedResult:
    """What one seed's run produced (for the summary and for callers in Python)."""

    seed: int
    run_id: str
    episode: EpisodeLog
    wall_time_s: float
    metrics: dict[str, float]
    tracking_uri: str
    experiment: str


@contextmanager
def _mlflow_run(
    run_name: str, tags: dict[str, str], nested: bool, run_id: str | None = None
) -> Any:
    """An MLflow run (a new one, or `run_id` continued) that ends FINISHED, FAILED, or KILLED
    (Ctrl-C / SIGTERM)."""
    import mlflow

    if run_id is None:
        run = mlflow.start_run(run_name=run_name, tags=tags, nested=nested)
    else:
        run = _continue_run(run_id, nested)
    try:
        yield run
    except KeyboardInterrupt:
        mlflow.end_run("KILLED")
        raise
    except BaseException:
        mlflow.end_run("FAILED")
        raise
    else:
        mlflow.end_run("FINISHED")


def _continue_run(run_id: str, nested: bool) -> Any:
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.start_run(run_id=run_id, nested=nested)
    except MlflowException as e:
        raise MosgymError(
            f"cannot continue MLflow run {run_id} in {mlflow.get_tracking_uri()} "
            f"({str(e).splitlines()[0][:160]}); resume against the tracking store the run "
            "started in"
        ) from None


def _tags(req: RunRequest, seed: int | None, kind: str) -> dict[str, str]:
    tags = {
        "mosgym.env": req.env_name,
        "mosgym.agent": str(req.agent["name"]),
        "mosgym.git_commit": tracking.git_commit(),
        "mosgym.kind": kind,
        "mosgym.format": tracking.RECORD_FORMAT,
        **req.extra_tags,
    }
    if seed is not None:
        tags["mosgym.seed"] = str(seed)
    return tags


@dataclass
class _Request:
    """What every seed of one request shares, and what a checkpoint records about it."""

    req: RunRequest
    env: Any
    agent_cfg: Any
    uri: str
    ckpt: CheckpointDir | None
    nested: bool
    parent_run_id: str | None = None
    results: list[SeedResult] = field(default_factory=list)

    def state(self, seed_index: int, current: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "request": dataclasses.asdict(self.req),
            "tracking_uri": self.uri,
            "experiment": self.req.experiment,
            "parent_run_id": self.parent_run_id,
            "done": [_result_state(r) for r in self.results],
            "seed_index": seed_index,
            "current": current,
        }

    def save(self, seed_index: int, ep_steps: int, current: dict[str, Any] | None) -> Path:
        """Checkpoint named by env steps done over the whole request."""
        assert self.ckpt is not None
        index = seed_index * self.env.n_env_steps + ep_steps
        return self.ckpt.save(index, self.state(seed_index, current))


def _result_state(r: SeedResult) -> dict[str, Any]:
    return {
        "seed": r.seed,
        "run_id": r.run_id,
        "episode": r.episode.to_state(),
        "wall_time_s": r.wall_time_s,
        "metrics": r.metrics,
    }


def _result_from_state(s: dict[str, Any], uri: str, experiment: str) -> SeedResult:
    ep = EpisodeLog.from_state(s["episode"])
    return SeedResult(s["seed"], s["run_id"], ep, s["wall_time_s"], s["metrics"], uri, experiment)


def run_request(req: RunRequest, resume: dict[str, Any] | None = None) -> list[SeedResult]:
    """Run every seed of the request; one MLflow run per seed (nested under a parent if >1).

    `resume`: a checkpoint's state (mosgym.experiment.checkpoint.load_state); the runs it names are
    continued from where it was saved, with the same MLflow runs.

    Under torchrun only rank 0 runs the agent, MLflow and checkpoints; the other ranks repeat
    its env calls (mosgym.experiment.launch.follow) and return no results.
    """

    distributed.init()
    if not distributed.is_main():
        _follow_request(req, resume)
        return []
    ctx, start, first_agent = _prepare(req, resume)
    try:
        if len(req.seeds) == 1:
            _run_seeds(ctx, start, resume, first_agent)
            finished_id = ctx.results[0].run_id
        else:
            name = browse.run_name(str(req.agent["name"]), req.seeds, req.env_name, req.experiment)
            tags = _tags(req, None, "parent")
            with _mlflow_run(name, tags, ctx.nested, ctx.parent_run_id) as parent:
                if ctx.parent_run_id is None:
                    tracking.log_params(
                        {"seeds": ",".join(map(str, req.seeds)), **run_params(req.env, req.agent)}
                    )
                ctx.parent_run_id, ctx.nested = parent.info.run_id, True
                _run_seeds(ctx, start, resume, first_agent)
                _log_parent_summary(ctx.parent_run_id, ctx.results)
            finished_id = ctx.parent_run_id
        if ctx.ckpt is not None:
            ctx.ckpt.mark_finished(finished_id)
            if not req.keep_checkpoints:  # they only serve to resume an unfinished run
                ctx.ckpt.remove()
        launch.lead("end")  # on failure torchrun stops the followers instead
    finally:
        ctx.env.close()
    return ctx.results


def _follow_request(req: RunRequest, resume: dict[str, Any] | None) -> None:
    """A rank > 0: the same configs and env as rank 0 (built in the same order, so the
    collectives inside line up), then rank 0's env calls until it is done."""
    from mosgym.agents import check_compatible, load_agent_config
    from mosgym.envs.mixture_of_skills import MixtureOfSkillsEnv

    env_cfg = from_dict(EnvConfig, req.env, "env config")
    check_compatible(load_agent_config(req.agent), env_cfg.action.kind)
    env = MixtureOfSkillsEnv(env_cfg)
    current = None if resume is None else resume["current"]
    try:
        # A signal stops rank 0 at the next step boundary, after its checkpoint (gathering a
        # sharded model needs this rank); it then tells this rank to end.
        with faults.STOP.deferred():
            launch.follow(env, None if current is None else current["env"])
    finally:
        env.close()


def _prepare(req: RunRequest, resume: dict[str, Any] | None) -> tuple[_Request, int, Any]:
    """Everything that can fail on bad input, before any MLflow run or checkpoint is written:
    the tracking store, the configs, the env (model and data) and the first seed's agent."""
    import mlflow

    from mosgym.agents import check_compatible, load_agent_config
    from mosgym.envs.mixture_of_skills import MixtureOfSkillsEnv

    if resume is not None:
        mlflow.set_tracking_uri(resume["tracking_uri"])
    uri = tracking.check_tracking_server()
    env_cfg = from_dict(EnvConfig, req.env, "env config")
    agent_cfg = load_agent_config(req.agent)
    check_compatible(agent_cfg, env_cfg.action.kind)
    self_driving = agent_cfg.kind in SELF_DRIVING_KINDS
    if resume is not None and self_driving:
        raise MosgymError(
            f"agent {agent_cfg.name} ({agent_cfg.kind}) cannot be resumed exactly: SB3 keeps "
            "its rollout in memory inside model.learn; start a new run instead"
        )
    ckpt = None
    if req.checkpoint_dir and req.checkpoint_every > 0 and not self_driving:
        ckpt = CheckpointDir(Path(req.checkpoint_dir), req.keep)
    env = MixtureOfSkillsEnv(env_cfg)  # model and data are built once and reset per seed
    ctx = _Request(req, env, agent_cfg, uri, ckpt, mlflow.active_run() is not None)
    start = 0
    if resume is not None:
        ctx.results = [_result_from_state(s, uri, req.experiment) for s in resume["done"]]
        ctx.parent_run_id, start = resume["parent_run_id"], int(resume["seed_index"])
    first_agent = _build_agent(ctx, req.seeds[start]) if start < len(req.seeds) else None
    _set_experiment(req.experiment)
    if ckpt is not None and resume is None:
        ckpt.clear()  # a finished run's checkpoints (run.py refuses unfinished ones)
        ckpt.write_request(req.fingerprint())
    return ctx, start, first_agent


def _set_experiment(name: str) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        exp = mlflow.set_experiment(name)
        browse.prepare_experiment(exp.experiment_id)
    except MlflowException as e:
        raise MosgymError(
            f"MLflow experiment {name!r}: {str(e).splitlines()[0][:200]}; choose another "
            "--experiment (or restore the deleted one in the MLflow UI)"
        ) from None


def _build_agent(ctx: _Request, seed: int) -> Any:
    """The seed's agent, set up: its settings are checked before its MLflow run starts."""
    from mosgym.agents import make_agent

    agent = make_agent(ctx.agent_cfg)
    agent.setup(ctx.env.spec_info, seed)
    return agent


def _run_seeds(ctx: _Request, start: int, resume: dict[str, Any] | None, first_agent: Any) -> None:
    for pos in range(start, len(ctx.req.seeds)):
        seed = ctx.req.seeds[pos]
        current = resume["current"] if resume is not None and pos == start else None
        agent = first_agent if pos == start else _build_agent(ctx, seed)
        ctx.results.append(_run_seed(ctx, pos, seed, agent, current))


def _run_seed(
    ctx: _Request, pos: int, seed: int, agent: Any, current: dict[str, Any] | None
) -> SeedResult:
    import mlflow

    from mosgym.experiment.summary import summary_table

    req = ctx.req
    name = browse.run_name(str(req.agent["name"]), [seed], req.env_name, req.experiment)
    run_id = None if current is None else current["run_id"]
    with _mlflow_run(name, _tags(req, seed, "run"), ctx.nested, run_id) as run:
        run_id = run.info.run_id
        if current is None:
            tracking.log_params(run_params(req.env, req.agent))
            sizes = [int(n) for n in ctx.env.spec_info.train_sizes]
            mlflow.set_tag("mosgym.train_sizes", json.dumps(sizes))
        seed_run = SeedRun(ctx, pos, seed, run_id, agent, current)
        ep, wall = seed_run.play()
        metrics = tracking.final_metrics(ep, wall)
        mlflow.log_metrics(metrics)
        metrics.update(tracking.log_phase_times(seed_run.timer.seconds))
        title = f"{req.env_name}: {name}"
        tracking.log_episode_artifacts(ep, {"env": req.env, "agent": req.agent}, title)
        result = SeedResult(seed, run_id, ep, wall, metrics, ctx.uri, req.experiment)
        browse.set_note(run_id, browse.code_block(summary_table([result])))
        if ctx.ckpt is not None:  # this seed is done: a resume goes on with the next one
            ctx.results.append(result)
            try:
                ctx.save(pos + 1, 0, None)
            finally:
                ctx.results.pop()
    return result


def _log_parent_summary(run_id: str, results: list[SeedResult]) -> None:
    """On the parent run, the children's final metrics under the same keys, each the mean over
    the seeds (so one column sorts parents and children alike), and the summary table as the
    run's description."""
    import mlflow

    from mosgym.experiment.summary import summary_table

    keys = set.intersection(*(set(r.metrics) for r in results))
    means = {
        k: float(np.mean([r.metrics[k] for r in results]))
        for k in sorted(keys)
        if all(math.isfinite(r.metrics[k]) for r in results)
    }
    mlflow.log_metrics(means)
    browse.set_note(run_id, browse.code_block(summary_table(results)))
