"""Run an agent on an env over several seeds, with a progress bar and an MLflow record."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mosgym import distributed, faults, tracking
from mosgym.checkpoint import CheckpointDir, global_rng_state, set_global_rng_state
from mosgym.config import EnvConfig, flatten, from_dict
from mosgym.episode import EpisodeLog, RecordEpisode, run_episode
from mosgym.errors import MosgymError
from mosgym.run import RunRequest

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


class ProgressBar:
    """tqdm bar over env steps, showing the live mixture."""

    def __init__(self, total: int, desc: str, enabled: bool, initial: int = 0) -> None:
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total, initial=initial, desc=desc, unit="step", leave=True, dynamic_ncols=True
            )

    def __call__(self, ep: EpisodeLog) -> None:
        if self.bar is None or len(ep.steps) < 2:
            return
        mix = " ".join(
            f"{n[:6]}={p:.2f}" for n, p in zip(ep.skill_names, ep.mixture[-1], strict=True)
        )
        self.bar.set_postfix_str(f"dev={np.mean(ep.dev_loss[-1]):.3f} | {mix}", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


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

    `resume`: a checkpoint's state (mosgym.checkpoint.load_state); the runs it names are
    continued from where it was saved, with the same MLflow runs.

    Under torchrun only rank 0 runs the agent, MLflow and checkpoints; the other ranks repeat
    its env calls (mosgym.distributed.follow) and return no results.
    """
    import mlflow

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
            name = f"{req.env_name}__{req.agent['name']}"
            tags = _tags(req, None, "parent")
            with _mlflow_run(name, tags, ctx.nested, ctx.parent_run_id) as parent:
                if ctx.parent_run_id is None:
                    mlflow.log_param("seeds", ",".join(map(str, req.seeds)))
                ctx.parent_run_id, ctx.nested = parent.info.run_id, True
                _run_seeds(ctx, start, resume, first_agent)
                _log_parent_summary(ctx.results)
            finished_id = ctx.parent_run_id
        if ctx.ckpt is not None:
            ctx.ckpt.mark_finished(finished_id)
        distributed.lead("end")  # on failure torchrun stops the followers instead
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
            distributed.follow(env, None if current is None else current["env"])
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
    return ctx, start, first_agent


def _set_experiment(name: str) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        mlflow.set_experiment(name)
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

    req = ctx.req
    name = f"{req.env_name}__{req.agent['name']}__s{seed}"
    run_id = None if current is None else current["run_id"]
    with _mlflow_run(name, _tags(req, seed, "run"), ctx.nested, run_id) as run:
        run_id = run.info.run_id
        if current is None:
            tracking.log_params(flatten({"env": req.env, "agent": req.agent}))
        seed_run = SeedRun(ctx, pos, seed, run_id, agent, current)
        ep, wall = seed_run.play()
        metrics = tracking.final_metrics(ep, wall)
        mlflow.log_metrics(metrics)
        tracking.log_episode_artifacts(ep, {"env": req.env, "agent": req.agent}, name)
        result = SeedResult(seed, run_id, ep, wall, metrics, ctx.uri, req.experiment)
        if ctx.ckpt is not None:  # this seed is done: a resume goes on with the next one
            ctx.results.append(result)
            try:
                ctx.save(pos + 1, 0, None)
            finally:
                ctx.results.pop()
    return result


class SeedRun:
    """One seed's episode: steps it (or continues it from a checkpoint), logs every step,
    checks the loss, writes checkpoints, and stops cleanly on SIGINT/SIGTERM."""

    def __init__(
        self, ctx: _Request, pos: int, seed: int, run_id: str, agent: Any, current: dict | None
    ) -> None:
        self.ctx, self.pos, self.seed, self.agent = ctx, pos, seed, agent
        self.current = current
        n = ctx.env.n_env_steps
        done_steps = 0 if current is None else len(current["episode"]["steps"]) - 1
        self.bar = ProgressBar(n, f"seed {seed}", ctx.req.progress, initial=done_steps)
        logged = -1 if current is None else tracking.last_logged_step(run_id)
        self.step_logger = tracking.MlflowStepLogger(run_id, logged_through=logged)
        env = distributed.Lead(ctx.env) if distributed.active() else ctx.env
        self.recorder = RecordEpisode(env, on_step=self.on_step)
        self.run_id = run_id
        self.last_checkpoint: Path | None = None
        self.wall_before = 0.0 if current is None else float(current["wall_time_s"])
        self.t0 = time.perf_counter()
        if hasattr(agent, "set_metrics_sink"):  # SB3's own logger goes into this run
            agent.set_metrics_sink(
                lambda values, step: tracking.log_sb3_metrics(run_id, values, step)
            )

    @property
    def wall(self) -> float:
        return self.wall_before + time.perf_counter() - self.t0

    def play(self) -> tuple[EpisodeLog, float]:
        """Run (the rest of) the episode; returns its log and wall time."""
        from mosgym.agents import SelfDrivingAgent

        env, agent = self.ctx.env, self.agent
        try:
            with faults.STOP.deferred():
                if isinstance(agent, SelfDrivingAgent):
                    # SB3 resets the env itself, seeded with the agent's seed.
                    agent.learn(self.recorder, env.n_env_steps)
                elif self.current is None:
                    obs, info = self.recorder.reset(seed=self.seed)
                    agent.reset(obs, info)
                    self.after_step(obs)
                    run_episode(self.recorder, agent, self.seed, (obs, info), self.after_step)
                else:
                    obs = self.restore(self.current)
                    if not self.recorder.log.done:
                        run_episode(self.recorder, agent, self.seed, (obs, {}), self.after_step)
        finally:
            self.bar.close()
        ep = self.recorder.last_complete
        if ep is None:
            raise MosgymError(f"agent {self.agent.name} stopped before the episode ended")
        return ep, self.wall

    def restore(self, state: dict[str, Any]) -> np.ndarray:
        """Env, agent, episode log and global RNGs as they were at the checkpoint."""
        distributed.lead("restore")  # every rank loads the checkpoint it read itself
        self.ctx.env.load_state_dict(state["env"])
        self.agent.load_state_dict(state["agent"])
        self.recorder.resume(EpisodeLog.from_state(state["episode"]))
        set_global_rng_state(state["global_rng"])
        return np.asarray(state["obs"], dtype=np.float32)

    def on_step(self, ep: EpisodeLog) -> None:
        """After every env step, before the agent learns from it."""
        if self.recorder.finished:  # SB3's automatic reset after the last step: not logged
            return
        if len(ep.steps) > 1:
            last = None if self.last_checkpoint is None else str(self.last_checkpoint)
            faults.check_train_loss(ep.train_loss[-1], ep.steps[-1], last)
        self.step_logger(ep)
        self.bar(ep)
        if self.ctx.ckpt is None:
            _stop_if_requested()

    def after_step(self, obs: np.ndarray) -> None:
        """After the agent learnt from the step: checkpoint when due, stop when asked."""
        ckpt = self.ctx.ckpt
        ep_steps = len(self.recorder.log.steps) - 1
        if ckpt is not None:
            due = ep_steps % self.ctx.req.checkpoint_every == 0 or self.recorder.log.done
            if due or faults.STOP.requested:
                self.save(obs, ep_steps)
        _stop_if_requested()

    def save(self, obs: np.ndarray, ep_steps: int) -> None:
        distributed.lead("state")  # the other ranks take part in gathering a sharded model
        current = {
            "seed": self.seed,
            "run_id": self.run_id,
            "episode": self.recorder.log.to_state(),
            "obs": np.asarray(obs, dtype=np.float32),
            "env": self.ctx.env.state_dict(),
            "agent": self.agent.state_dict(),
            "global_rng": global_rng_state(),
            "wall_time_s": self.wall,
        }
        self.last_checkpoint = self.ctx.save(self.pos, ep_steps, current)


def _log_parent_summary(results: list[SeedResult]) -> None:
    """Mean over seeds of the final metrics, on the parent run."""
    import mlflow

    keys = set.intersection(*(set(r.metrics) for r in results))
    means = {
        f"mean/{k}": float(np.mean([r.metrics[k] for r in results]))
        for k in sorted(keys)
        if all(math.isfinite(r.metrics[k]) for r in results)
    }
    mlflow.log_metrics(means)


def _stop_if_requested() -> None:
    """Honour a deferred stop at an env-step boundary (where every rank is between
    collectives): the other ranks are told to end, then this one raises."""
    if faults.STOP.requested:
        distributed.lead("end")
    faults.STOP.raise_if_requested()
