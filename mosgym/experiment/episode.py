"""Drive one episode of an agent on a MixtureOfSkills env and record what happened.

The recording is a Gymnasium wrapper, so it sees the same transitions whether our loop steps the
env (act/observe agents) or Stable-Baselines3 drives it inside `model.learn` (self-driving
agents). Every step is passed to a callback (MLflow logging, progress bar) as it happens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from mosgym import timing
from mosgym.agents.base import Agent


@dataclass
class EpisodeLog:
    """Per-env-step history of one episode. Arrays are (n_env_steps + 1, N) with row 0 = reset."""

    skill_names: list[str]
    steps: list[int] = field(default_factory=list)
    mixture: list[np.ndarray] = field(default_factory=list)
    skill_rewards: list[np.ndarray] = field(default_factory=list)
    reward: list[float] = field(default_factory=list)
    dev_loss: list[np.ndarray] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    examples: list[np.ndarray] = field(default_factory=list)
    tokens: list[np.ndarray] = field(default_factory=list)
    final_eval: dict[str, np.ndarray] | None = None
    probe_skipped: int = 0
    reward_fallback: int = 0
    """Skill rewards that could not be computed and were filled in (summed over steps)."""

    def start(self, info: dict[str, Any]) -> None:
        """Reset the record to the state after env.reset()."""
        n = len(self.skill_names)
        self.steps[:] = [0]
        self.mixture[:] = [np.asarray(info["mixture"], dtype=np.float64)]
        self.skill_rewards[:] = [np.full(n, np.nan)]
        self.reward[:] = [float("nan")]
        self.dev_loss[:] = [np.asarray(info["dev_loss"], dtype=np.float64)]
        self.train_loss[:] = [float("nan")]
        self.examples[:] = [np.zeros(n, dtype=np.int64)]
        self.tokens[:] = [np.zeros(n, dtype=np.int64)]
        self.final_eval = None
        self.probe_skipped = 0
        self.reward_fallback = 0

    def add(self, reward: float, info: dict[str, Any]) -> None:
        """Append one env step's outcome."""
        self.steps.append(int(info["step"]))
        self.mixture.append(np.asarray(info["mixture"], dtype=np.float64))
        self.skill_rewards.append(np.asarray(info["skill_rewards"], dtype=np.float64))
        self.reward.append(float(reward))
        self.dev_loss.append(np.asarray(info["dev_loss"], dtype=np.float64))
        self.train_loss.append(float(info["step_loss"]))
        self.examples.append(np.asarray(info["examples_seen"], dtype=np.int64))
        self.tokens.append(np.asarray(info["tokens_seen"], dtype=np.int64))
        self.probe_skipped += int(info.get("probe_skipped", 0))
        self.reward_fallback += int(np.sum(info.get("reward_fallback", 0)))
        if "final_eval" in info:
            self.final_eval = {k: np.asarray(v) for k, v in info["final_eval"].items()}

    @property
    def done(self) -> bool:
        return self.final_eval is not None

    def to_state(self) -> dict[str, Any]:
        """Plain-data form (checkpoints)."""
        return {
            "skill_names": self.skill_names,
            "steps": self.steps,
            "mixture": [m.tolist() for m in self.mixture],
            "skill_rewards": [r.tolist() for r in self.skill_rewards],
            "reward": self.reward,
            "dev_loss": [d.tolist() for d in self.dev_loss],
            "train_loss": self.train_loss,
            "examples": [e.tolist() for e in self.examples],
            "tokens": [t.tolist() for t in self.tokens],
            "final_eval": None
            if self.final_eval is None
            else {k: v.tolist() for k, v in self.final_eval.items()},
            "probe_skipped": self.probe_skipped,
            "reward_fallback": self.reward_fallback,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> EpisodeLog:
        log = cls(list(state["skill_names"]))
        log.steps = list(state["steps"])
        log.mixture = [np.asarray(m) for m in state["mixture"]]
        log.skill_rewards = [np.asarray(r) for r in state["skill_rewards"]]
        log.reward = list(state["reward"])
        log.dev_loss = [np.asarray(d) for d in state["dev_loss"]]
        log.train_loss = list(state["train_loss"])
        log.examples = [np.asarray(e, dtype=np.int64) for e in state["examples"]]
        log.tokens = [np.asarray(t, dtype=np.int64) for t in state["tokens"]]
        fe = state["final_eval"]
        log.final_eval = None if fe is None else {k: np.asarray(v) for k, v in fe.items()}
        log.probe_skipped = int(state["probe_skipped"])
        log.reward_fallback = int(state.get("reward_fallback", 0))
        return log


StepCallback = Callable[[EpisodeLog], None]


class RecordEpisode(gym.Wrapper):
    """Records every transition into an EpisodeLog and calls `on_step` after each one.

    A finished episode is kept in `finished` when the env is reset again: vectorised drivers
    (SB3's DummyVecEnv) reset the env on their own right after the last step.
    """

    def __init__(self, env: gym.Env, on_step: StepCallback | None = None) -> None:
        super().__init__(env)
        self.log = EpisodeLog(list(env.unwrapped.skill_names))
        self.finished: list[EpisodeLog] = []
        self.on_step = on_step

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        if self.log.done:
            self.finished.append(self.log)
        self.log = EpisodeLog(list(self.env.unwrapped.skill_names))
        self.log.start(info)
        if self.on_step is not None:
            self.on_step(self.log)
        return obs, info

    def resume(self, log: EpisodeLog) -> None:
        """Continue recording into `log` (restored from a checkpoint) instead of a new one."""
        self.log = log

    @property
    def last_complete(self) -> EpisodeLog | None:
        """The most recent finished episode (the current one if it has ended)."""
        if self.log.done:
            return self.log
        return self.finished[-1] if self.finished else None

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.log.add(float(reward), info)
        if self.on_step is not None:
            self.on_step(self.log)
        return obs, reward, terminated, truncated, info


def run_episode(
    env: RecordEpisode,
    agent: Agent,
    seed: int,
    start: tuple[np.ndarray, dict[str, Any]] | None = None,
    after_step: Callable[[np.ndarray], None] | None = None,
) -> EpisodeLog:
    """One episode of an act/observe agent. `start` continues from a given (obs, info) (after
    reset, or restored from a checkpoint); `after_step(obs)` runs once the agent has learnt
    from each step (checkpoints)."""
    if start is None:
        obs, info = env.reset(seed=seed)
        agent.reset(obs, info)
    else:
        obs, info = start
    terminated = truncated = False
    while not (terminated or truncated):
        with timing.phase(timing.AGENT):
            action = agent.act(obs)
        obs, reward, terminated, truncated, info = env.step(action)
        with timing.phase(timing.AGENT):
            agent.observe(action, float(reward), obs, terminated, truncated, info)
        if after_step is not None:
            after_step(obs)
    return env.log
