"""`mosgym/MoSSim-v0`: the MixtureOfSkills env on the simulated learner, with a fused step.

The spec is `MixtureOfSkillsEnv`'s docstring: the same spaces, rewards, infos and state. Only
`step` is rewritten, for speed: it drives the `SimLearner`'s lists directly and does the
env's own per-skill bookkeeping (mixture, training loss, observation) in Python floats, for
the reasons of mosgym.sim.scalar, and it leaves out what cannot fail here (checking a
mixture the env built itself). Rewards come from the same `RewardComputer`. tests/test_sim.py
checks that it returns exactly what `MixtureOfSkillsEnv.step` returns on the same learner.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mosgym.config import EnvConfig, load_env_config
from mosgym.envs.mixing import action_to_mixture
from mosgym.envs.mixture_of_skills import MixtureOfSkillsEnv
from mosgym.errors import MosgymError
from mosgym.learner.base import TrainStats
from mosgym.sim.learner import SimLearner


class MoSSimEnv(MixtureOfSkillsEnv):
    """MixtureOfSkillsEnv with learner 'sim' (see MixtureOfSkillsEnv for the spec)."""

    learner: SimLearner

    def __init__(
        self,
        config: str | Path | Mapping[str, Any] | EnvConfig | None = None,
        overrides: list[str] | None = None,
        render_mode: str | None = None,
        **kwargs: Any,
    ) -> None:
        cfg = load_env_config(config, overrides, **kwargs)
        cfg.learner = "sim"
        super().__init__(cfg, render_mode=render_mode)
        self._sizes = self.learner.train_sizes.tolist()  # >= 1 (checked by SimLearner)
        self._needs_stats = self.config.reward.type == "train_loss"

    def _to_mixture(self, action: Any) -> np.ndarray:
        """`action_to_mixture` in Python floats for a well-formed action (N < 8: numpy sums
        fewer than 8 numbers left to right, so the sum is the same); otherwise the function
        itself, which also raises the errors."""
        a, n = self.config.action, len(self.skill_names)
        if n < 8 and a.kind == "continuous":
            if type(action) is np.ndarray and action.shape == (n,) and action.dtype.kind == "f":
                values = action.tolist()
                if all(map(math.isfinite, values)):
                    scale = float(a.logit_scale)
                    logits = [(-1.0 if v < -1.0 else 1.0 if v > 1.0 else v) * scale for v in values]
                    top = max(logits)
                    z = [math.exp(x - top) for x in logits]
                    total = 0.0
                    for x in z:
                        total += x
                    return self._floored([x / total for x in z])
        elif n < 8 and (type(action) is int or isinstance(action, np.integer)):
            if 0 <= action < n:
                p = [0.0] * n
                p[int(action)] = 1.0
                return self._floored(p)
        return action_to_mixture(action, a.kind, n, a.logit_scale, a.floor)

    def _floored(self, p: list[float]) -> np.ndarray:
        floor = self.config.action.floor
        if floor == 0.0:  # 1.0 * x + 0.0 is x for the x >= +0 of a distribution
            return np.array(p)
        keep = 1.0 - len(p) * floor
        return np.array([keep * x + floor for x in p])

    def step(self, action: np.ndarray | int) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self._init_dev is None:
            raise MosgymError("call reset() before step()")
        cfg, lr = self.config, self.learner
        total_steps, n_steps = cfg.train.total_steps, cfg.train.interval
        if lr.step >= total_steps:
            raise MosgymError("the episode has ended (terminated=True); call reset()")
        mixture = self._to_mixture(action)
        counts = lr._draw(mixture, n_steps)
        c, loss_sum, step_losses = lr._learn(counts, n_steps)
        terminated = lr.step >= total_steps
        dev_list = lr._level_lists()[0]
        dev = np.array(dev_list)
        stats = None  # only the train_loss reward reads the interval's statistics
        if self._needs_stats:
            stats = TrainStats(counts, counts * lr._tpe, np.array(loss_sum), step_losses)
        result = self.rewards.compute(lr, stats, dev, self._dev, self._init_dev)
        # A skill not drawn keeps its last training loss (TrainStats.mean_loss elsewhere).
        train_loss = [
            s / k if k > 0 else old
            for s, k, old in zip(loss_sum, c, self._train_loss.tolist(), strict=True)
        ]
        self._train_loss = np.array(train_loss)
        self._dev, self._mixture, self._last_reward = dev, mixture, result.smoothed
        info: dict[str, Any] = {
            "mixture": mixture.copy(),
            "skill_rewards": result.smoothed.copy(),
            "raw_skill_rewards": result.raw,
            "dev_loss": dev.copy(),
            "train_loss": self._train_loss.copy(),
            "train_examples": counts.copy(),
            "step_loss": float(np.add.reduce(step_losses) / step_losses.size),  # .sum()
            "examples_seen": lr.consumed,  # fresh arrays
            "tokens_seen": lr.tokens_seen,
            "step": lr.step,
            "probe_skipped": int(result.probe_skipped),
            "reward_fallback": result.fallback.copy(),
            "skill_names": list(self.skill_names),
        }
        if terminated:
            accuracy = lr.evaluate(generate=True).accuracy
            info["final_eval"] = {"dev_loss": dev.copy(), "accuracy": accuracy}
        obs = [d / i for d, i in zip(dev_list, self._init_dev.tolist(), strict=True)]
        p, smoothed = mixture.tolist(), result.smoothed.tolist()
        obs += p
        obs += [k / m for k, m in zip(lr._consumed_list, self._sizes, strict=True)]
        obs += smoothed
        obs.append(lr.step / total_steps)
        reward = 0.0  # mixture @ smoothed: numpy's dot of a few terms runs left to right
        for x, r in zip(p, smoothed, strict=True):
            reward += x * r
        return np.array(obs, dtype=np.float32), reward, terminated, False, info


DEFAULT_SIM_CONFIG = "sim-skills-tiny"
"""The simulator calibrated to the embedded default (envs/sim-skills-tiny.yaml)."""


def make_sim_env(
    config: str | Path | Mapping[str, Any] | EnvConfig | None = None,
    overrides: list[str] | None = None,
    **kwargs: Any,
) -> MoSSimEnv:
    """`mosgym/MoSSim-v0`: the MixtureOfSkills env on the simulator (learner: sim). With no
    config (and no `sim` parameters given), the calibrated default, envs/sim-skills-tiny.yaml."""
    if config is None and "sim" not in kwargs:
        config = DEFAULT_SIM_CONFIG
    return MoSSimEnv(config, overrides, **kwargs)
