"""What an agent may know about an environment before acting: its spec."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class EnvSpec:
    """What an agent may know about the environment before acting (no hidden state)."""

    skill_names: list[str]
    """The N skills, in action order."""
    train_sizes: np.ndarray
    """(N,) training examples per skill (temperature priors need them)."""
    action_kind: str
    """'continuous' (Box(-1, 1, (N,)) logits) or 'discrete' (one skill per interval)."""
    n_env_steps: int
    """Env steps in one episode (T / S)."""
    interval: int
    """S: optimizer steps per env step."""
    logit_scale: float = 5.0
    """Continuous actions are multiplied by this before the softmax."""
    floor: float = 0.0
    """Minimum probability per skill mixed into every mixture."""
