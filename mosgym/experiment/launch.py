"""Leader and followers under `torchrun`: rank 0 acts, every other rank repeats its env calls.

The agent lives on rank 0 only. Every env call it makes (reset, step, state, restore) is
broadcast first, so the followers make the same call in the same order and every collective
inside the learner lines up; after each call the ranks compare mixture and rewards bitwise
(`check_same`). The process group and collectives are mosgym.learner.distributed's.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from mosgym.learner.distributed import broadcast_object, check_same


class Lead(gym.Wrapper):
    """On rank 0: broadcast every reset and step before making it, so the followers repeat it."""

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        broadcast_object(("reset", kwargs))
        obs, info = self.env.reset(**kwargs)
        check_same("the reset mixture", info["mixture"])
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        broadcast_object(("step", action))
        obs, reward, terminated, truncated, info = self.env.step(action)
        check_same("the mixture and rewards", _step_key(info))
        return obs, reward, terminated, truncated, info


def lead(command: str) -> None:
    """Tell the followers to make a call of the raw env: 'restore' (load_state_dict of the
    checkpoint they read themselves), 'state' (state_dict, which gathers a sharded model: rank 0
    keeps it, the others drop it) or 'end'. A no-op in one process."""
    broadcast_object((command, None))


def follow(env: gym.Env, restore: dict[str, Any] | None = None) -> None:
    """On ranks > 0: repeat rank 0's env calls until it says 'end'. `env` may be wrapped (a
    recorder); `restore` is the env state of the checkpoint being resumed."""
    base = env.unwrapped
    while True:
        command, arg = broadcast_object(None)
        if command == "end":
            return
        if command == "reset":
            _, info = env.reset(**arg)
            check_same("the reset mixture", info["mixture"])
        elif command == "step":
            info = env.step(arg)[-1]
            check_same("the mixture and rewards", _step_key(info))
        elif command == "restore":
            if restore is None:
                raise RuntimeError("rank 0 restores a checkpoint but this rank has none")
            base.load_state_dict(restore)  # type: ignore[attr-defined]
        elif command == "state":
            base.state_dict()  # type: ignore[attr-defined]
        else:
            raise RuntimeError(f"unknown leader command {command!r}")


def _step_key(info: dict[str, Any]) -> np.ndarray:
    return np.concatenate([np.asarray(info["mixture"]), np.asarray(info["skill_rewards"])])
