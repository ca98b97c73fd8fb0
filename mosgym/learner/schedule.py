"""What is trained when: the learning-rate schedule and the per-skill example order.

Both are pure functions of a seed and a counter, so reset and resume reproduce them exactly.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from mosgym.config import TrainConfig
from mosgym.errors import MosgymError


def lr_factor(step: int, total_steps: int, warmup_ratio: float) -> float:
    """Multiplier of the peak learning rate for optimizer step `step` (0-based).

    Linear warm-up over ceil(warmup_ratio * total_steps) steps, then linear decay to 0 at
    total_steps (the paper's schedule). Unlike transformers' scheduler, warm-up step k uses
    (k + 1) / warmup, so the first update is not wasted at learning rate 0. Steps past the end
    get 0.
    """
    warmup = math.ceil(warmup_ratio * total_steps)
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup))


def generator_state(rng: np.random.Generator) -> dict[str, Any]:
    """A numpy generator's state as plain data (ints and strings)."""
    return rng.bit_generator.state


def restore_generator(state: dict[str, Any]) -> np.random.Generator:
    """Inverse of `generator_state`."""
    rng = np.random.default_rng()
    rng.bit_generator.state = state
    return rng


def child_seed(seed: int, stream: int) -> int:
    """Independent seed for one RNG stream of the learner."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])


def get_torch_rng(device: torch.device) -> torch.Tensor:
    if device.type == "cuda":
        return torch.cuda.get_rng_state(device)
    return torch.get_rng_state()


def set_torch_rng(device: torch.device, state: torch.Tensor) -> None:
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    else:
        torch.set_rng_state(state)


def seeded_torch_state(device: torch.device, seed: int) -> torch.Tensor:
    """The device generator's state after seeding with `seed` (global RNG left untouched)."""
    return torch.Generator(device=device).manual_seed(seed).get_state()


class SkillSampler:
    """Per-skill epoch order: each skill walks its own seeded permutation of its training
    examples and reshuffles when it is exhausted.

    A skill's order depends only on the seed and on how many of its examples were drawn, never on
    the mixture or the other skills, so "consumed" counts true passes over the data.
    """

    def __init__(self, sizes: np.ndarray, seed: int) -> None:
        self.sizes = np.asarray(sizes, dtype=np.int64)
        if np.any(self.sizes <= 0):
            bad = int(np.flatnonzero(self.sizes <= 0)[0])
            raise MosgymError(f"skill {bad} has no training examples; give it data or drop it")
        seeds = np.random.SeedSequence(seed).spawn(len(self.sizes))
        self.rngs = [np.random.default_rng(s) for s in seeds]
        self.perms = [rng.permutation(int(n)) for rng, n in zip(self.rngs, self.sizes, strict=True)]
        self.pos = np.zeros(len(self.sizes), dtype=np.int64)
        self.epochs = np.zeros(len(self.sizes), dtype=np.int64)

    def draw(self, skill: int, k: int) -> np.ndarray:
        """The next `k` example indices of `skill` (int64), crossing epochs as needed."""
        parts = []
        while k > 0:
            perm, pos = self.perms[skill], int(self.pos[skill])
            take = min(k, len(perm) - pos)
            parts.append(perm[pos : pos + take])
            self.pos[skill] = pos + take
            k -= take
            if self.pos[skill] == len(perm):
                self.perms[skill] = self.rngs[skill].permutation(len(perm))
                self.pos[skill] = 0
                self.epochs[skill] += 1
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def state_dict(self) -> dict[str, Any]:
        return {
            "rngs": [generator_state(r) for r in self.rngs],
            "perms": [p.copy() for p in self.perms],
            "pos": self.pos.copy(),
            "epochs": self.epochs.copy(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rngs = [restore_generator(s) for s in state["rngs"]]
        self.perms = [np.asarray(p, dtype=np.int64).copy() for p in state["perms"]]
        self.pos = np.asarray(state["pos"], dtype=np.int64).copy()
        self.epochs = np.asarray(state["epochs"], dtype=np.int64).copy()


def draw_probe_plan(
    rng: np.random.Generator, sizes: list[int], probe_size: int, rounds: int
) -> list[np.ndarray]:
    """Per skill, (rounds, k) example indices, each round a draw without replacement of
    k = min(probe_size, size) examples. Drawn at reset, so it never depends on the mixture."""
    plan = [np.zeros((rounds, min(probe_size, n)), dtype=np.int64) for n in sizes]
    for r in range(rounds):
        for s, n in enumerate(sizes):
            plan[s][r] = rng.choice(n, size=plan[s].shape[1], replace=False)
    return plan


def check_mixture(mixture: Any, names: list[str]) -> np.ndarray:
    """The mixture as float64 probabilities; MosgymError naming what is wrong otherwise."""
    try:
        p = np.asarray(mixture, dtype=np.float64)
    except (TypeError, ValueError):
        raise MosgymError(f"mixture: not numeric: {mixture!r}") from None
    n = len(names)
    if p.shape != (n,):
        raise MosgymError(
            f"mixture: shape {p.shape}, expected ({n},): one weight per skill {names}"
        )
    bad = np.flatnonzero(~np.isfinite(p))
    if len(bad):
        raise MosgymError(f"mixture: weight of skill '{names[bad[0]]}' is {p[bad[0]]}")
    if np.any(p < 0):
        s = int(np.flatnonzero(p < 0)[0])
        raise MosgymError(f"mixture: weight of skill '{names[s]}' is negative")
    if p.sum() <= 0:
        raise MosgymError("mixture: weights sum to 0; give at least one skill weight > 0")
    return p / p.sum()


def check_train_config(cfg: TrainConfig, probe_sizes: list[int]) -> None:
    """Settings the learner cannot run with, named with the fix."""
    if not probe_sizes:
        raise MosgymError("learner: no skills given; configure at least one skill")
    if cfg.batch_size < 1 or cfg.grad_accum < 1 or cfg.batch_size % cfg.grad_accum:
        raise MosgymError(
            f"train.batch_size {cfg.batch_size} must be a positive multiple of train.grad_accum "
            f"{cfg.grad_accum}"
        )
    if cfg.sampling not in ("per_example", "per_batch"):
        raise MosgymError(f"train.sampling: unknown {cfg.sampling!r} (per_example or per_batch)")
    if cfg.probe_source not in ("train", "probe"):
        raise MosgymError(f"train.probe_source: unknown {cfg.probe_source!r} (train or probe)")
    if cfg.total_steps < 1 or cfg.interval < 1 or cfg.eval_batch_size < 1:
        raise MosgymError(
            "train.total_steps, train.interval and train.eval_batch_size must be >= 1"
        )
    if cfg.probe_source == "probe" and min(probe_sizes) == 0:
        raise MosgymError("train.probe_source is 'probe' but a skill has no probe split examples")
