"""The Agent protocol: a data-scheduling policy acting on a MixtureOfSkills environment."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from mosgym.envs.spec import EnvSpec

__all__ = ["Agent", "EnvSpec"]


@runtime_checkable
class Agent(Protocol):
    """A data-scheduling policy. Not a base class: any object with these methods is an agent.

    The loop (mosgym.run) calls `setup` once, then per episode `reset`, and per env step `act`
    then `observe` with the transition. Agents that want a mixture rather than logits convert it
    with `mosgym.envs.mixing.mixture_to_action` (the env's inverse of its own action mapping).
    """

    name: str
    action_kind: str
    """'continuous', 'discrete', or 'any' (the agent adapts to the env's action kind)."""

    def setup(self, spec: EnvSpec, seed: int) -> None:
        """Called once before the first episode."""

    def reset(self, obs: np.ndarray, info: dict[str, Any]) -> None:
        """Called at the start of each episode with reset()'s output."""

    def act(self, obs: np.ndarray) -> np.ndarray | int:
        """The next action."""

    def observe(
        self,
        action: np.ndarray | int,
        reward: float,
        obs: np.ndarray,
        terminated: bool,
        truncated: bool,
        info: dict[str, Any],
    ) -> None:
        """Learn from a transition (info carries the per-skill reward vector and losses)."""

    def state_dict(self) -> dict[str, Any]:
        """The agent's learning state, for checkpoints."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
