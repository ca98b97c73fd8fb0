"""The simulator stage: every algorithm x seed trained under the budget, with learning curves.

An SB3 algorithm trains on `SimVecEnv` (or, for '-dr', on randomised simulators) for the budget
of simulated env steps; every `eval_every` steps (and at 0 and at the end) its deterministic
policy is scored on the held-out simulator episodes: the learning curve. The final policy is
saved (written to a temporary name, then renamed: a file on disk is always complete) and also
attached to the MLflow child run. MoS and ODM learn within an episode only, so there is nothing
to train: their entry (its knobs tuned in the simulator, see mosgym.benchmark.tune) is scored
once on the same held-out episodes. Baselines are scored the same way.

Resumable: a child FINISHED with the same trial id (and, for SB3, its policy file on disk) is
skipped; a run killed half-way is marked KILLED and redone.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

from mosgym.agents.sb3 import SB3Agent
from mosgym.benchmark import tracking as bt
from mosgym.benchmark.protocol import Settings
from mosgym.benchmark.randomize import RandomizedSimVecEnv
from mosgym.benchmark.simeval import EVAL_SEED, batch_spec, score_agent, score_policy
from mosgym.benchmark.suite import Entry, agent_env, baseline_agent, digest
from mosgym.config import EnvConfig, flatten, to_dict
from mosgym.experiment.sim2real import SimScore
from mosgym.sim.batch import SimVecEnv

log = logging.getLogger(__name__)

OnEval = Callable[[int, SimScore], None]


@dataclass
class StageCounts:
    """What a stage did: done now, skipped (done before)."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class CurveCallback(BaseCallback):
    """Calls `evaluate(env_steps)` at 0, every `every` env steps, and at the end of training."""

    def __init__(self, every: int, evaluate: Callable[[int], None]) -> None:
        super().__init__()
        self.every, self.evaluate = every, evaluate
        self.next, self.last = every, -1

    def _at(self, steps: int) -> None:
        self.evaluate(steps)
        self.last = steps

    def _on_training_start(self) -> None:
        if self.num_timesteps == 0:
            self._at(0)

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.next:
            self._at(self.num_timesteps)
            self.next = (self.num_timesteps // self.every + 1) * self.every
        return True

    def _on_training_end(self) -> None:
        if self.last != self.num_timesteps:
            self._at(self.num_timesteps)


def train_sb3(
    entry: Entry,
    sim: EnvConfig,
    seed: int,
    budget: int,
    eval_every: int,
    eval_episodes: int,
    on_eval: OnEval,
    dr_spread: float = 0.0,
    eval_seed: int = EVAL_SEED,
) -> tuple[SB3Agent, float]:
    """Train the entry's SB3 algorithm on the simulator `sim` (the algorithm's view of it);
    returns the agent (its `.model` is the policy) and the training seconds (evaluations
    excluded). `on_eval(env_steps, score)` sees every point of the learning curve."""
    n_envs = entry.settings.n_envs
    if entry.randomised:
        venv: Any = RandomizedSimVecEnv(sim, n_envs, seed, dr_spread)
        spec = batch_spec(venv.parts[0].batch)
    else:
        venv = SimVecEnv(sim, n_envs=n_envs, seed=seed)
        spec = batch_spec(venv.batch)
    venv.seed(seed)
    agent = SB3Agent(entry.agent.name, entry.agent.params)
    agent.setup(spec, seed)
    eval_time = 0.0

    def evaluate(steps: int) -> None:
        nonlocal eval_time
        t0 = time.perf_counter()
        assert agent.model is not None
        score = score_policy(sim, agent.model, eval_episodes, eval_seed)
        eval_time += time.perf_counter() - t0
        on_eval(steps, score)

    start = time.perf_counter()
    agent.learn(venv, budget, callback=CurveCallback(eval_every, evaluate))
    return agent, time.perf_counter() - start - eval_time


def _save_policy(agent: SB3Agent, path: Path) -> None:
    """Write the policy under a temporary name, then rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial.zip")
    agent.save(tmp)
    os.replace(tmp, path)


def policy_path(settings: Settings, algo: str, seed: int, trial: str) -> Path:
    return settings.out / "policies" / f"{algo}-s{seed}-{trial[:8]}.zip"


def _eval_logger(client: Any, run_id: str) -> OnEval:
    def on_eval(steps: int, score: SimScore) -> None:
        metrics = {
            "eval/final_dev_loss_mean": score.final_dev_loss,
            "eval/episode_return": score.episode_return,
        }
        bt.log_metrics(client, run_id, metrics, step=steps)
        log.info("  %d env steps: sim final mean dev loss %.4f", steps, score.final_dev_loss)

    return on_eval


def _child_tags(settings: Settings, algo: str, trial: str, kind: str, seed: int | None) -> dict:
    tags = {
        bt.KIND: kind,
        bt.BENCH: settings.bench_id,
        bt.TRIAL: trial,
        bt.ALGO: algo,
        "mosgym.agent": algo,
        "mosgym.env": settings.suite.sim.name,
    }
    if seed is not None:
        tags[bt.SEED] = tags[bt.TRAIN_SEED] = str(seed)
    return tags


def _train_one(
    client: Any,
    parent: bt.Parent,
    settings: Settings,
    entry: Entry,
    seed: int,
    trial: str,
    path: Path,
) -> None:
    name = f"{settings.suite.name}__{entry.algo}__s{seed}"
    tags = _child_tags(settings, entry.algo, trial, bt.TRAIN_KIND, seed)
    log.info(
        "training %s seed %d in the simulator (%d env steps)", entry.algo, seed, settings.budget
    )
    with bt.child_run(client, parent, name, tags) as run_id:
        sim = entry.sim_config(settings.suite)
        params = {
            "budget": settings.budget,
            "eval_every": settings.eval_every,
            "eval_episodes": settings.eval_episodes,
            "eval_seed": EVAL_SEED,
            "entry": str(entry.path),
            "n_envs": entry.settings.n_envs,
            "dr_spread": settings.dr_spread if entry.randomised else 0.0,
        }
        bt.log_params(client, run_id, params | flatten({"agent": to_dict(entry.agent)}))
        scores: list[SimScore] = []

        def on_eval(steps: int, score: SimScore) -> None:
            scores.append(score)
            _eval_logger(client, run_id)(steps, score)

        agent, seconds = train_sb3(
            entry,
            sim,
            seed,
            settings.budget,
            settings.eval_every,
            settings.eval_episodes,
            on_eval,
            settings.dr_spread,
        )
        assert agent.model is not None
        _save_policy(agent, path)
        client.log_artifact(run_id, str(path), "policy")
        final = scores[-1]
        bt.log_metrics(
            client,
            run_id,
            {
                "sim/final_dev_loss_mean": final.final_dev_loss,
                "sim/episode_return": final.episode_return,
                "train_seconds": seconds,
                "train/env_steps": float(agent.model.num_timesteps),
            },
        )


def _score_one(
    client: Any,
    parent: bt.Parent,
    settings: Settings,
    algo: str,
    agent: Any,
    sim: EnvConfig,
    trial: str,
    kind: str,
    params: dict[str, Any],
) -> None:
    """An act/observe agent (in-episode learner or baseline) scored on the held-out episodes."""
    name = f"{settings.suite.name}__{algo}__sim"
    log.info("scoring %s on %d held-out simulated episodes", algo, settings.eval_episodes)
    with bt.child_run(client, parent, name, _child_tags(settings, algo, trial, kind, None)) as rid:
        bt.log_params(client, rid, params | flatten({"agent": to_dict(agent)}))
        t0 = time.perf_counter()
        score = score_agent(sim, agent, settings.eval_episodes)
        _eval_logger(client, rid)(0, score)
        bt.log_metrics(
            client,
            rid,
            {
                "sim/final_dev_loss_mean": score.final_dev_loss,
                "sim/episode_return": score.episode_return,
                "eval_seconds": time.perf_counter() - t0,
            },
        )


def run_sim_stage(client: Any, parent: bt.Parent, settings: Settings) -> StageCounts:
    """Train (or score) everything not done yet; returns what was done and what was skipped."""
    counts = StageCounts()
    finished = bt.finished_trials(client, parent)
    params = {"eval_episodes": settings.eval_episodes, "eval_seed": EVAL_SEED}
    for algo, entry in settings.entries.items():
        if not entry.trains:
            trial = settings.trial_id(entry, None)
            label = f"{algo} (sim score)"
            if trial in finished:
                counts.skipped.append(label)
                continue
            sim = entry.sim_config(settings.suite)
            _score_one(
                client,
                parent,
                settings,
                algo,
                entry.agent,
                sim,
                trial,
                bt.TRAIN_KIND,
                params | {"entry": str(entry.path)},
            )
            counts.done.append(label)
            continue
        for seed in settings.seeds:
            trial = settings.trial_id(entry, seed)
            path = policy_path(settings, algo, seed, trial)
            label = f"{algo} seed {seed}"
            if trial in finished and path.is_file():
                counts.skipped.append(label)
                continue
            _train_one(client, parent, settings, entry, seed, trial, path)
            counts.done.append(label)
    for name in settings.baselines:
        _, agent = baseline_agent(name)
        sim = agent_env(settings.suite.sim, agent)
        trial = digest({"sim": to_dict(sim), "agent": to_dict(agent), **params})
        label = f"{name} (sim score)"
        if trial in finished:
            counts.skipped.append(label)
            continue
        _score_one(client, parent, settings, name, agent, sim, trial, bt.BASELINE_KIND, params)
        counts.done.append(label)
    return counts
