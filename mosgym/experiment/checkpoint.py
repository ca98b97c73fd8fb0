"""Checkpoints: a run's whole state, written atomically, kept K deep, read back safely.

A checkpoint folder (``--checkpoint-dir``) holds::

    step-000012/state.pt   one checkpoint: torch.save of tensors and plain Python data
    latest                 the name of the newest complete checkpoint ("step-000012")
    request.json           the run's configs and seeds (a new run compares its own with them)
    finished               present once every seed of the run has ended

A finished run's checkpoints are removed (they only serve to resume); `--keep-checkpoints`
keeps them.

The number in a folder name counts env steps over the whole run (all seeds so far), so names
sort in the order they were written. Writes go to ``*.tmp`` first, are flushed to disk and
then renamed over the target, `latest` only after the state it names is complete: a crash or a
full disk in the middle of a save leaves the previous checkpoint, and the pointer to it, as they
were. Reading uses ``torch.load(weights_only=True)``, which refuses anything but tensors and
plain data, so a checkpoint never runs code; numpy arrays and numpy scalars (the learner's
state has many) are stored as tensors and turned back into numpy on load.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from mosgym.errors import MosgymError

log = logging.getLogger(__name__)

FORMAT = 1
"""Bumped when the layout of state.pt changes; older checkpoints are refused by name."""
STATE = "state.pt"
LATEST = "latest"
FINISHED = "finished"
REQUEST = "request.json"
_STEP_RE = re.compile(r"^step-(\d{6,})$")
_NDARRAY = "__ndarray__"
_NPSCALAR = "__npscalar__"


# --------------------------------------------------------------------------------------------
# numpy <-> tensors, so weights_only loading works


def to_safe(obj: Any) -> Any:
    """A copy of nested dicts/lists/tuples with numpy arrays and scalars as marked tensors."""
    if isinstance(obj, np.ndarray | np.generic):
        arr = np.asarray(obj)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"checkpoint: cannot store a numpy array of dtype {arr.dtype}")
        key = _NPSCALAR if isinstance(obj, np.generic) else _NDARRAY
        return {key: torch.from_numpy(np.array(arr, order="C", copy=True))}
    if isinstance(obj, dict):
        return {k: to_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(to_safe(v) for v in obj)
    return obj


def from_safe(obj: Any) -> Any:
    """Inverse of `to_safe`: marked tensors back to numpy arrays (dtype and values exact)."""
    if isinstance(obj, dict):
        if len(obj) == 1 and _NDARRAY in obj:
            return obj[_NDARRAY].numpy().copy()
        if len(obj) == 1 and _NPSCALAR in obj:
            return obj[_NPSCALAR].numpy()[()]
        return {k: from_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(from_safe(v) for v in obj)
    return obj


# --------------------------------------------------------------------------------------------
# Atomic files


def _fsync_dir(path: Path) -> None:
    """Make a rename durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write `path` through `write(file)` into path.tmp, fsync, rename; no partial `path` ever."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


# --------------------------------------------------------------------------------------------
# The checkpoint folder


@dataclass
class CheckpointDir:
    """Where a run's checkpoints live and how many are kept."""

    root: Path
    keep: int = 2

    def complete(self) -> list[Path]:
        """Checkpoint folders with a state.pt, oldest first."""
        if not self.root.is_dir():
            return []
        found = [
            (int(m.group(1)), p)
            for p in self.root.iterdir()
            if (m := _STEP_RE.match(p.name)) and (p / STATE).is_file()
        ]
        return [p for _, p in sorted(found)]

    def latest(self) -> Path | None:
        """The newest complete checkpoint: the one `latest` names, else the highest number."""
        pointer = self.root / LATEST
        if pointer.is_file():
            name = pointer.read_text(encoding="utf-8", errors="replace").strip()
            if _STEP_RE.match(name) and (self.root / name / STATE).is_file():
                return self.root / name
        done = self.complete()
        return done[-1] if done else None

    @property
    def finished(self) -> bool:
        return (self.root / FINISHED).is_file()

    def save(self, index: int, state: dict[str, Any]) -> Path:
        """Write checkpoint `index` atomically, point `latest` at it, prune to `keep`.

        A failed write (full disk, permissions) raises MosgymError and leaves the previous
        checkpoint and `latest` untouched.
        """
        name = f"step-{index:06d}"
        folder = self.root / name
        payload = {"format": FORMAT, "state": to_safe(state)}
        previous = self.latest()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write(folder / STATE, lambda f: torch.save(payload, f))
            atomic_write(self.root / LATEST, lambda f: f.write(name.encode()))
        except OSError as e:
            if not (folder / STATE).is_file():
                shutil.rmtree(folder, ignore_errors=True)
            kept = f"the last good one, {previous}, is intact" if previous else "none was written"
            raise MosgymError(
                f"checkpoint {folder}: cannot write ({e.strerror or e}); {kept}; free disk "
                "space or choose another --checkpoint-dir, then --resume"
            ) from None
        self.prune(keep_also=folder)
        return folder

    def prune(self, keep_also: Path | None = None) -> None:
        """Delete all but the newest `keep` checkpoints (never `keep_also`), and stray tmps."""
        done = self.complete()
        for old in done[: max(0, len(done) - self.keep)]:
            if old != keep_also:
                shutil.rmtree(old, ignore_errors=True)
        for p in self.root.glob("step-*"):
            if p.is_dir() and not (p / STATE).is_file() and p != keep_also:
                shutil.rmtree(p, ignore_errors=True)

    def drop_newer(self, folder: Path) -> None:
        """Resuming from an older checkpoint abandons the ones after it (and `finished`)."""
        m = _STEP_RE.match(folder.name)
        assert m is not None
        for p in self.complete():
            if int(_STEP_RE.match(p.name).group(1)) > int(m.group(1)):  # type: ignore[union-attr]
                shutil.rmtree(p, ignore_errors=True)
        (self.root / FINISHED).unlink(missing_ok=True)
        atomic_write(self.root / LATEST, lambda f: f.write(folder.name.encode()))

    def mark_finished(self, run_id: str) -> None:
        atomic_write(self.root / FINISHED, lambda f: f.write(run_id.encode()))

    def clear(self) -> None:
        """Remove our files (step folders, pointers), nothing else the folder holds."""
        for p in self.root.glob("step-*"):
            if _STEP_RE.match(p.name):
                shutil.rmtree(p, ignore_errors=True)
        for name in (LATEST, FINISHED, REQUEST):
            (self.root / name).unlink(missing_ok=True)
            (self.root / (name + ".tmp")).unlink(missing_ok=True)

    def remove(self) -> None:
        """Our files and then the folder itself, if nothing else is left in it."""
        self.clear()
        try:
            self.root.rmdir()
        except OSError:
            pass  # the user's own files are in it, or it is gone already

    def write_request(self, request: dict[str, Any]) -> None:
        """Record the run's configs and seeds (compared by `check_fresh`)."""
        self.root.mkdir(parents=True, exist_ok=True)
        text = json.dumps(request, sort_keys=True, default=str)
        atomic_write(self.root / REQUEST, lambda f: f.write(text.encode()))

    def read_request(self) -> dict[str, Any] | None:
        """What `write_request` recorded (None for folders written before it existed)."""
        try:
            return dict(json.loads((self.root / REQUEST).read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None


def request_differences(old: dict[str, Any], new: dict[str, Any], limit: int = 3) -> str:
    """'env.train.lr 0.001 -> 0.0003, seeds [0] -> [1]' for the first settings that differ."""
    from mosgym.config import flatten

    def settings(request: dict[str, Any]) -> dict[str, Any]:
        plain = json.loads(json.dumps(request, default=str))  # tuples, numbers as JSON has them
        configs = flatten({"env": plain.get("env"), "agent": plain.get("agent")})
        return {**configs, "seeds": plain.get("seeds")}

    a, b = settings(old), settings(new)
    keys = sorted(set(a) | set(b))
    diffs = [f"{k} {a.get(k)!r} -> {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)]
    more = f" (+{len(diffs) - limit} more)" if len(diffs) > limit else ""
    return ", ".join(diffs[:limit]) + more


def check_fresh(root: Path, request: dict[str, Any] | None = None) -> None:
    """A new run may reuse a folder whose run finished (with a warning when that run had other
    configs); an unfinished one must be resumed or removed by the user, never silently
    overwritten. `request`: the new run's configs and seeds, as `write_request` records them."""
    ckpt = CheckpointDir(root)
    last = ckpt.latest()
    if last is None:
        return
    old = ckpt.read_request()
    differs = "" if old is None or request is None else request_differences(old, request)
    if ckpt.finished:
        if differs:
            log.warning(
                "checkpoint dir %s: replacing the kept checkpoints of a finished run made with "
                "other settings (%s)", root, differs,
            )  # fmt: skip
        return
    if differs:
        raise MosgymError(
            f"checkpoint dir {root} holds an unfinished run made with other settings ({differs}); "
            f"continue that run with --resume {root}, or give this one another --checkpoint-dir "
            "(or delete the folder)"
        )
    raise MosgymError(
        f"checkpoint dir {root} holds an unfinished run (last checkpoint {last.name}); continue "
        f"it with --resume {root}, or start over with another --checkpoint-dir (or delete it)"
    )


def resolve_resume_dir(path: str | Path) -> tuple[CheckpointDir, Path]:
    """(the checkpoint folder, the checkpoint to load) for `--resume PATH`, which may name the
    folder or one `step-*` checkpoint in it."""
    p = Path(path).expanduser().resolve()
    if (p / STATE).is_file() and _STEP_RE.match(p.name):
        return CheckpointDir(p.parent), p
    if not p.is_dir():
        raise MosgymError(f"--resume {path}: no such checkpoint folder")
    ckpt = CheckpointDir(p)
    last = ckpt.latest()
    if last is None:
        raise MosgymError(
            f"--resume {path}: no checkpoint in it (expected {LATEST} and step-*/{STATE}, as "
            "written by `python -m mosgym.run --checkpoint-dir DIR`)"
        )
    return ckpt, last


def load_state(folder: Path) -> dict[str, Any]:
    """The state saved in checkpoint `folder`; MosgymError for foreign or damaged files."""
    path = folder / STATE
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for damaged or foreign files
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise MosgymError(
            f"{path}: not a readable mosgym checkpoint ({first[:160]}); resume from another "
            f"step-* folder of {folder.parent}"
        ) from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        found = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise MosgymError(
            f"{path}: checkpoint format {found!r}, this mosgym reads format {FORMAT}; resume "
            "with the mosgym version that wrote it"
        )
    return from_safe(raw["state"])


def global_rng_state() -> dict[str, Any]:
    """Python's, numpy's legacy and torch's CPU global RNG states (a policy may draw from
    them; our own code keeps its streams in the env, learner and agent states)."""
    import random

    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }


def set_global_rng_state(state: dict[str, Any]) -> None:
    import random

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(tuple(state["numpy"]))
    torch.set_rng_state(state["torch"])
