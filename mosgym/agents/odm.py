"""ODM: Online Data Mixing as an EXP3 bandit (Albalak et al. 2023, "Efficient Online Data
Mixing For Language Model Pre-Training", arXiv 2312.02406).

Each skill is an arm; its reward is the training loss (a skill the model still finds hard is
worth sampling), importance-weighted by the probability of drawing it and smoothed:

    eps_t   = min(1/N, sqrt(ln N / (N t)))                        (eps_0 = 1/N)
    pi_t(i) = (1 - N eps_t) softmax(eps_{t-1} Rhat)_i + eps_t
    Rhat_i <- alpha Rhat_i + (1 - alpha) L_i / pi_t(i)            (only for arms that were drawn)

t counts env steps (one decision per S optimizer steps; the paper decides per batch).
Discrete action space: one arm sampled from pi per env step, only it is rewarded (the paper).
Continuous: the mixture is pi itself and every skill drawn during the step (finite
info["train_loss"]) is rewarded, importance-weighted by the mixture the env actually used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mosgym.agents.static import MixtureActions
from mosgym.envs.spec import EnvSpec
from mosgym.errors import MosgymError


@dataclass
class ODMParams:
    """Online Data Mixing settings."""

    alpha: float = 0.9
    """Smoothing of the reward estimates: Rhat <- alpha Rhat + (1 - alpha) L / pi."""
    reward_scale: float = 1.0
    """Losses are multiplied by this before use (the ODM code divides them by 10)."""
    reset_each_episode: bool = True
    """Start every episode from Rhat = 0, t = 0 (false: keep the estimates across episodes)."""


# --------------------------------------------------------------------------------------------
# Pure math


def exp3_epsilon(t: int, n: int) -> float:
    """Exploration rate eps_t = min(1/N, sqrt(ln N / (N t))) for t >= 1; eps_0 = 1/N."""
    if t <= 0:
        return 1.0 / n
    return min(1.0 / n, math.sqrt(math.log(n) / (n * t)))


def exp3_distribution(rhat: np.ndarray, eps_prev: float, eps: float) -> np.ndarray:
    """pi (N,) = (1 - N eps) softmax(eps_prev * rhat) + eps, from reward estimates rhat (N,)."""
    z = eps_prev * np.asarray(rhat, dtype=np.float64)
    w = np.exp(z - z.max())
    return (1.0 - z.size * eps) * w / w.sum() + eps


def smoothed_rewards(
    rhat: np.ndarray, losses: np.ndarray, probs: np.ndarray, alpha: float
) -> np.ndarray:
    """New Rhat (N,): alpha Rhat + (1 - alpha) L / p where L (N,) is finite; unchanged elsewhere
    (NaN = the arm was not drawn)."""
    rhat = np.asarray(rhat, dtype=np.float64)
    losses = np.asarray(losses, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    seen = np.isfinite(losses) & (probs > 0)
    out = rhat.copy()
    out[seen] = alpha * rhat[seen] + (1.0 - alpha) * losses[seen] / probs[seen]
    return out


# --------------------------------------------------------------------------------------------
# The agent


class ODMAgent:
    """EXP3 over skills with the training loss as reward (discrete or continuous actions)."""

    action_kind = "any"

    def __init__(self, name: str, params: ODMParams) -> None:
        if not 0.0 <= params.alpha < 1.0:
            raise MosgymError(f"agent {name}: params.alpha must lie in [0, 1), got {params.alpha}")
        if not params.reward_scale > 0:
            raise MosgymError(f"agent {name}: params.reward_scale must be > 0")
        self.name = name
        self.params = params

    def setup(self, spec: EnvSpec, seed: int) -> None:
        self.n = len(spec.skill_names)
        self.kind = spec.action_kind
        self._actions = MixtureActions(spec, seed)
        self._restart()

    def _restart(self) -> None:
        self.rhat = np.zeros(self.n)
        self.t = 0
        self.eps = exp3_epsilon(0, self.n)
        self.pi = np.full(self.n, 1.0 / self.n)

    def reset(self, obs: np.ndarray, info: dict[str, Any]) -> None:
        if self.params.reset_each_episode:
            self._restart()

    def act(self, obs: np.ndarray) -> np.ndarray | int:
        self.t += 1
        eps_prev, self.eps = self.eps, exp3_epsilon(self.t, self.n)
        self.pi = exp3_distribution(self.rhat, eps_prev, self.eps)
        return self._actions(self.pi)

    def observe(
        self,
        action: np.ndarray | int,
        reward: float,
        obs: np.ndarray,
        terminated: bool,
        truncated: bool,
        info: dict[str, Any],
    ) -> None:
        losses = np.asarray(info["train_loss"], dtype=np.float64) * self.params.reward_scale
        if losses.shape != (self.n,):
            raise MosgymError(
                f"info['train_loss'] has shape {losses.shape}, expected ({self.n},): the env "
                "does not follow the mosgym env contract"
            )
        if "train_examples" in info:  # the env carries stale losses forward for undrawn skills
            losses = np.where(np.asarray(info["train_examples"]) > 0, losses, np.nan)
        if self.kind == "discrete":  # bandit feedback: only the sampled arm is rewarded
            arm = int(np.asarray(action).reshape(()))
            only_arm = np.full(self.n, np.nan)
            only_arm[arm] = losses[arm]
            self.rhat = smoothed_rewards(self.rhat, only_arm, self.pi, self.params.alpha)
        else:  # every drawn skill, weighted by the mixture the env really used
            probs = np.asarray(info.get("mixture", self.pi), dtype=np.float64)
            self.rhat = smoothed_rewards(self.rhat, losses, probs, self.params.alpha)

    def probabilities(self) -> np.ndarray:
        """(N,) the EXP3 distribution used for the last action."""
        return self.pi.copy()

    def state_dict(self) -> dict[str, Any]:
        return {
            "rhat": self.rhat.tolist(),
            "t": self.t,
            "eps": self.eps,
            "pi": self.pi.tolist(),
            "actions": self._actions.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rhat = np.asarray(state["rhat"], dtype=np.float64)
        self.t = int(state["t"])
        self.eps = float(state["eps"])
        self.pi = np.asarray(state["pi"], dtype=np.float64)
        self._actions.load_state_dict(state["actions"])
