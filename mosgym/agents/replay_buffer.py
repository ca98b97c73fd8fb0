"""An off-policy SB3 algorithm's replay buffer on disk, without pickle.

SB3's own `save_replay_buffer` pickles the buffer, and reading a pickle runs whatever it holds.
An SB3 agent that goes on learning from a saved model (`SB3Params.resume_from`, the
benchmark's real-train route) keeps its buffer instead as a compressed .npz of the buffer's
arrays and position, read with `allow_pickle=False` and checked against the agent's shapes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mosgym.errors import MosgymError

BUFFER_FIELDS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")
"""The arrays of an SB3 ReplayBuffer (next_observations is None with optimize_memory_usage)."""


def buffer_path(model_path: str | Path) -> Path:
    """Where a model's replay buffer is kept: `ppo.zip` -> `ppo.buffer.npz`."""
    path = Path(model_path)
    return path.with_name(f"{path.name.removesuffix('.zip')}.buffer.npz")


def save_replay_buffer(buffer: Any, path: Path) -> None:
    """The buffer's arrays and position as a plain .npz (SB3's own `save_replay_buffer`
    pickles, and reading a pickle runs whatever it holds)."""
    arrays = {f: getattr(buffer, f) for f in BUFFER_FIELDS if getattr(buffer, f, None) is not None}
    arrays["pos_full"] = np.array([buffer.pos, int(buffer.full)], dtype=np.int64)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez_compressed(tmp, **arrays)  # a buffer mostly unfilled compresses to little
    os.replace(tmp, path)


def load_replay_buffer(buffer: Any, path: Path) -> None:
    """Fill `buffer` from `save_replay_buffer`'s file; a missing file or arrays of another
    shape (another buffer size or env) are one MosgymError."""
    if not path.is_file():
        raise MosgymError(
            f"{path}: no replay buffer beside the model to resume; resume from a file that "
            "mosgym's save_to wrote (it writes both)"
        )
    try:
        with np.load(path, allow_pickle=False) as data:
            found = {k: data[k] for k in data.files}
    except (OSError, ValueError) as e:
        raise MosgymError(f"{path}: not a readable replay buffer ({e})") from None
    if "pos_full" not in found:
        raise MosgymError(f"{path}: not a replay buffer written by mosgym (no position)")
    for f in BUFFER_FIELDS:
        mine = getattr(buffer, f, None)
        if mine is None:
            continue
        if f not in found or found[f].shape != mine.shape:
            got = found[f].shape if f in found else "nothing"
            raise MosgymError(
                f"{path}: replay buffer {f} has shape {got}, this agent's {mine.shape}; resume "
                "with the buffer_size and env the file was written with"
            )
        mine[...] = found[f]
    buffer.pos, buffer.full = int(found["pos_full"][0]), bool(found["pos_full"][1])
