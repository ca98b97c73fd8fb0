"""Static mixtures: the paper's temperature baselines (PROP, TEMP, UNI), any fixed mixture, and
the replay of another run's actions (the same mixture path without its agent; `RecordActions`
records them).

Also home of `MixtureActions`, which every mixture-minded agent (static, MoS, ODM) uses to
turn its mixture into the env's action: logits for a continuous action space, one sampled arm
for a discrete one (the paper's Algorithm 1 picks one dataset per step the same way).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mosgym.config import ActionConfig
from mosgym.envs.mixing import action_to_mixture, logit_span, mixture_to_action, validate_action
from mosgym.envs.spec import EnvSpec
from mosgym.errors import MosgymError
from mosgym.rewards import temperature_prior

logger = logging.getLogger(__name__)


def resolve_tau(value: float | str, where: str) -> float:
    """A temperature from YAML: a positive number, or 'inf' / .inf for the uniform prior."""
    if isinstance(value, str):
        if value.strip().lower() in ("inf", "infinity", "uniform"):
            return math.inf
        raise MosgymError(f"{where}: expected a positive number or 'inf', got {value!r}")
    if not value > 0:
        raise MosgymError(f"{where}: temperature must be > 0 (1 = PROP, 10 = TEMP, inf = UNI)")
    return float(value)


def logit_scale_of(spec: EnvSpec) -> float:
    """The env's action.logit_scale (EnvSpec has no such field yet: the config default)."""
    return float(getattr(spec, "logit_scale", ActionConfig().logit_scale))


def warn_if_clipped(name: str, p: np.ndarray, spec: EnvSpec) -> None:
    """Log a warning when the action box cannot express mixture `p` (see mosgym.envs.mixing)."""
    scale = logit_scale_of(spec)
    need = logit_span(p)
    if need <= scale * (1 + 1e-9):
        return
    floor = float(getattr(spec, "floor", 0.0))
    used = action_to_mixture(mixture_to_action(p, scale), "continuous", len(p), scale, floor)
    i = int(np.argmin(p))
    logger.warning(
        "agent %s: its mixture gives %s %.3g, but at action.logit_scale=%g weights can differ "
        "at most %.3g-fold, so the env trains on %.3g; set action.logit_scale=%.3g (or more) to "
        "use the mixture exactly", name, spec.skill_names[i], p[i], scale, math.exp(2 * scale),
        used[i], need,
    )  # fmt: skip


class MixtureActions:
    """Turns a mixture p (N,) into an action for `spec`'s action space.

    continuous: `mixture_to_action(p, logit_scale)` (the env maps it back to p exactly unless a
    weight is more extreme than the action box allows). discrete: one arm drawn from p with a
    generator seeded by `seed`, so the same seed gives the same arms.
    """

    def __init__(self, spec: EnvSpec, seed: int) -> None:
        self.kind = spec.action_kind
        self.logit_scale = logit_scale_of(spec)
        self.rng = np.random.default_rng(seed)
        self.last_arm: int | None = None

    def __call__(self, p: np.ndarray) -> np.ndarray | int:
        if self.kind == "continuous":
            return mixture_to_action(p, self.logit_scale)
        p = np.asarray(p, dtype=np.float64)
        self.last_arm = int(self.rng.choice(p.size, p=p / p.sum()))
        return self.last_arm

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "last_arm": self.last_arm}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.last_arm = state["last_arm"]


@dataclass
class StaticParams:
    """A fixed mixture (a temperature prior over the training sizes, or explicit weights), or a
    recorded run's actions replayed."""

    tau: float | str | None = None
    """Temperature of p_i = q_i^(1/tau) / sum_n q_n^(1/tau), q = sizes / total: 1 = PROP,
    10 = TEMP, 'inf' (or .inf) = UNI."""
    weights: list[float] | None = None
    """Explicit weights instead of tau: length N, non-negative, not all zero (normalised)."""
    replay: list[list[float] | int] | None = None
    """Instead of a mixture: the actions a recorded run gave the env, one per env step (N
    numbers each on a continuous action space, a skill index on a discrete one), replayed in
    order from every reset. The env turns each into the mixture it did then, bit for bit, so
    with the same seed the run trains on exactly that run's examples; a mixture read back from
    its log would not (the action is float32). bench/overhead.py times MoS against this."""


class RecordActions:
    """Wraps an agent and keeps every action it gave the env, in order: what `replay` takes
    (`StaticParams(replay=recorder.actions)` drives the same mixture path without the agent)."""

    def __init__(self, agent: Any) -> None:
        self.agent, self.actions = agent, []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.agent, name)

    def act(self, obs: np.ndarray) -> Any:
        action = self.agent.act(obs)
        self.actions.append(np.asarray(action).tolist())
        return action


class StaticAgent:
    """Always the same mixture; on a discrete action space, one arm sampled from it per step.
    With `replay`, the recorded actions in order instead."""

    action_kind = "any"

    def __init__(self, name: str, params: StaticParams) -> None:
        if sum(x is not None for x in (params.tau, params.weights, params.replay)) != 1:
            raise MosgymError(
                f"agent {name}: params needs exactly one of 'tau' (1 = PROP, 10 = TEMP, "
                "inf = UNI), 'weights' (a fixed mixture) or 'replay' (recorded actions)"
            )
        self.name = name
        self.params = params
        self.tau = None if params.tau is None else resolve_tau(params.tau, f"{name}: params.tau")
        self.mixture = np.zeros(0)
        self._actions: MixtureActions | None = None
        self._replay: list[np.ndarray | int] | None = None
        self._replayed = 0

    def setup(self, spec: EnvSpec, seed: int) -> None:
        n = len(spec.skill_names)
        if self.tau is not None:
            self.mixture = temperature_prior(spec.train_sizes, self.tau)
        elif self.params.replay is not None:
            self._replay = replay_actions(self.params.replay, spec, self.name)
        else:
            self.mixture = fixed_mixture(self.params.weights or [], n, self.name)
        self._actions = MixtureActions(spec, seed)
        if spec.action_kind == "continuous" and self._replay is None:  # a replay has no mixture
            warn_if_clipped(self.name, self.mixture, spec)

    def reset(self, obs: np.ndarray, info: dict[str, Any]) -> None:
        """A replay starts over; a mixture never changes."""
        self._replayed = 0

    def act(self, obs: np.ndarray) -> np.ndarray | int:
        if self._actions is None:
            raise MosgymError(f"agent {self.name}: call setup() before act()")
        if self._replay is not None:
            if self._replayed >= len(self._replay):
                raise MosgymError(
                    f"agent {self.name}: the replay has {len(self._replay)} actions and all "
                    "were used; call reset() at the start of every episode"
                )
            self._replayed += 1
            return self._replay[self._replayed - 1]
        return self._actions(self.mixture)

    def observe(
        self,
        action: np.ndarray | int,
        reward: float,
        obs: np.ndarray,
        terminated: bool,
        truncated: bool,
        info: dict[str, Any],
    ) -> None:
        """Static: nothing to learn."""

    def state_dict(self) -> dict[str, Any]:
        return {
            "actions": None if self._actions is None else self._actions.state_dict(),
            "replayed": self._replayed,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self._actions is not None and state.get("actions") is not None:
            self._actions.load_state_dict(state["actions"])
        self._replayed = int(state.get("replayed", 0))


def replay_actions(actions: list[Any], spec: EnvSpec, name: str) -> list[np.ndarray | int]:
    """Recorded actions checked against the env: one per env step, each valid for its action
    space (the env reads a continuous action as float64 either way: no value changes)."""
    if len(actions) != spec.n_env_steps:
        raise MosgymError(
            f"agent {name}: params.replay has {len(actions)} actions but an episode of this env "
            f"has {spec.n_env_steps} env steps (train.total_steps / train.interval); record "
            "the run to replay with the same budget"
        )
    n = len(spec.skill_names)
    return [validate_action(a, spec.action_kind, n) for a in actions]


def fixed_mixture(weights: list[float], n: int, name: str) -> np.ndarray:
    """(N,) normalised mixture from user weights, or a MosgymError saying what is wrong."""
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise MosgymError(
            f"agent {name}: params.weights has {w.size} entries but the env has {n} skills; "
            "give one weight per skill, in the env's skill order"
        )
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise MosgymError(
            f"agent {name}: params.weights {w.tolist()} must be finite, non-negative and not "
            "all zero"
        )
    return w / w.sum()
