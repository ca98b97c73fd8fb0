"""Run an agent on an env over several seeds, with a progress bar and an MLflow record."""

from __future__ import annotations

import logging
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from mosgym import tracking
from mosgym.config import EnvConfig, flatten, from_dict
from mosgym.episode import EpisodeLog, RecordEpisode, run_episode
from mosgym.errors import MosgymError
from mosgym.run import RunRequest

log = logging.getLogger(__name__)


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

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="step", leave=True, dynamic_ncols=True)

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
def _mlflow_run(run_name: str, tags: dict[str, str], nested: bool) -> Any:
    """An MLflow run that ends FINISHED, FAILED, or KILLED (Ctrl-C / SIGTERM)."""
    import mlflow

    run = mlflow.start_run(run_name=run_name, tags=tags, nested=nested)
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


def run_request(req: RunRequest) -> list[SeedResult]:
    """Run every seed of the request; one MLflow run per seed (nested under a parent if >1)."""
    import mlflow

    from mosgym.agents import check_compatible, load_agent_config
    from mosgym.envs.mixture_of_skills import MixtureOfSkillsEnv

    uri = tracking.check_tracking_server()
    env_cfg = from_dict(EnvConfig, req.env, "env config")
    agent_cfg = load_agent_config(req.agent)
    check_compatible(agent_cfg, env_cfg.action.kind)
    env = MixtureOfSkillsEnv(env_cfg)  # model and data are built once and reset per seed
    mlflow.set_experiment(req.experiment)
    already_active = mlflow.active_run() is not None
    results: list[SeedResult] = []
    try:
        if len(req.seeds) == 1:
            results.append(_run_seed(env, agent_cfg, req, req.seeds[0], already_active, uri))
        else:
            name = f"{req.env_name}__{req.agent['name']}"
            with _mlflow_run(name, _tags(req, None, "parent"), already_active):
                mlflow.log_param("seeds", ",".join(map(str, req.seeds)))
                for seed in req.seeds:
                    results.append(_run_seed(env, agent_cfg, req, seed, True, uri))
                _log_parent_summary(results)
    finally:
        env.close()
    return results


def _run_seed(
    env: Any, agent_cfg: Any, req: RunRequest, seed: int, nested: bool, uri: str
) -> SeedResult:
    import mlflow

    from mosgym.agents import SelfDrivingAgent, make_agent

    name = f"{req.env_name}__{req.agent['name']}__s{seed}"
    with _mlflow_run(name, _tags(req, seed, "run"), nested) as run:
        run_id = run.info.run_id
        tracking.log_params(flatten({"env": req.env, "agent": req.agent}))
        agent = make_agent(agent_cfg)
        agent.setup(env.spec_info, seed)
        if hasattr(agent, "set_metrics_sink"):  # SB3's own logger goes into this run
            agent.set_metrics_sink(
                lambda values, step: tracking.log_sb3_metrics(run_id, values, step)
            )
        bar = ProgressBar(env.n_env_steps, f"seed {seed}", req.progress)
        step_logger = tracking.MlflowStepLogger(run_id)

        def on_step(ep: EpisodeLog) -> None:
            if recorder.finished:  # SB3's automatic reset after the last step: not logged
                return
            step_logger(ep)
            bar(ep)

        recorder = RecordEpisode(env, on_step=on_step)
        t0 = time.perf_counter()
        try:
            if isinstance(agent, SelfDrivingAgent):
                # SB3 resets the env itself, seeded with the agent's seed.
                agent.learn(recorder, env.n_env_steps)
            else:
                run_episode(recorder, agent, seed)
        finally:
            bar.close()
        wall = time.perf_counter() - t0
        ep = recorder.last_complete
        if ep is None:
            raise MosgymError(f"agent {req.agent['name']} stopped before the episode ended")
        metrics = tracking.final_metrics(ep, wall)
        mlflow.log_metrics(metrics)
        tracking.log_episode_artifacts(ep, {"env": req.env, "agent": req.agent}, name)
    return SeedResult(seed, run_id, ep, wall, metrics, uri, req.experiment)


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
