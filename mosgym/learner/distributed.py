"""The process group the learner is spread over under `torchrun`: ranks, collectives, DDP.

Launched as ``torchrun --nproc-per-node W -m mosgym.run ...``, every rank builds the same env
(same model init, same data, same seeds). Rank 0 is the leader: the agent acts there, and every
env call it makes (reset, step, state, restore) is broadcast first, so the other ranks (the
followers, mosgym.experiment.launch) make the same call in the same order and every collective
inside the learner lines up. The data sampler, the probe plan and the rewards are then identical
on every rank by construction; `check_same` gathers each step's mixture and rewards and refuses
to go on if any rank disagrees (the authors' code lets each rank's scorer drift).

With one process (no WORLD_SIZE > 1 in the environment) nothing here creates a process group and
every helper is the identity: single-process numbers do not change.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import logging
import os
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from mosgym.config import TrainConfig
from mosgym.errors import MosgymError

log = logging.getLogger(__name__)

PARALLEL_MODES = ("ddp", "fsdp")


# --------------------------------------------------------------------------------------------
# The process group


def env_world_size() -> int:
    """World size announced by torchrun (WORLD_SIZE), readable before any process group."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise MosgymError(
            f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not an integer; launch with torchrun"
        ) from None


def init() -> None:
    """Join the torchrun process group (NCCL on CUDA, gloo on CPU); a no-op in one process or
    when already joined. Pins the CUDA device of this rank (LOCAL_RANK)."""
    if env_world_size() <= 1 or (dist.is_available() and dist.is_initialized()):
        return
    if not dist.is_available():
        raise MosgymError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    for key in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        if key not in os.environ:
            raise MosgymError(f"WORLD_SIZE > 1 but {key} is not set; launch with torchrun")
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend="nccl" if cuda else "gloo", timeout=timedelta(minutes=30))
    log.info("rank %d of %d joined (%s)", rank(), world_size(), dist.get_backend())


def active() -> bool:
    """True inside a process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """True on the rank that acts, logs to MLflow, prints and writes checkpoints (read from
    torchrun's RANK outside a process group: before it is joined, after it is left)."""
    if active():
        return rank() == 0
    return os.environ.get("RANK", "0") == "0"


def teardown() -> None:
    """Leave the process group (end of the CLI run). Unreachable DDP wrappers are collected
    first: freed after the group is gone, their reducer hangs the interpreter's exit."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def barrier() -> None:
    if active():
        dist.barrier()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (it fills shared caches), the others after it."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def check_parallel(train: TrainConfig) -> None:
    """train.parallel is known and the global batch splits evenly over the ranks."""
    if train.parallel not in PARALLEL_MODES:
        raise MosgymError(
            f"train.parallel: unknown value {train.parallel!r} (valid: 'ddp', 'fsdp')"
        )
    w = env_world_size()
    if w > 1 and train.parallel != "fsdp" and os.environ.get("ACCELERATE_USE_FSDP") == "true":
        log.warning(
            "accelerate's FSDP settings are not read: mosgym runs DDP; set train.parallel=fsdp "
            "to shard the model"
        )
    if w > 1 and train.batch_size % w:
        raise MosgymError(
            f"train.batch_size={train.batch_size} is not divisible by the world size {w}: set "
            f"train.batch_size to a multiple of {w} or launch with --nproc-per-node that "
            "divides it"
        )


# --------------------------------------------------------------------------------------------
# Collectives on plain data


def broadcast_object(obj: Any) -> Any:
    """Rank 0's `obj` on every rank (pickled)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order."""
    if not active():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """In-place sum over ranks (the identity in one process)."""
    if active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def shard_positions(n: int) -> np.ndarray:
    """This rank's positions among n items: rank, rank + W, ... (strided, so that a length-sorted
    list gives every rank a similar share of long examples)."""
    return np.arange(rank(), n, world_size(), dtype=np.int64)


def gather_rows(local: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """Per-item arrays computed on each rank's `shard_positions(n)`, put back in item order on
    every rank."""
    if not active():
        return local
    parts = all_gather_object(local)
    out = {}
    for key, first in local.items():
        full = np.empty((n, *first.shape[1:]), dtype=first.dtype)
        for r, part in enumerate(parts):
            full[r :: world_size()] = part[key]
        out[key] = full
    return out


def check_same(what: str, value: np.ndarray) -> None:
    """Refuse to go on when ranks disagree on `value` (bitwise): they would sample from
    different mixtures. An internal error, not a user mistake."""
    if not active():
        return
    arrays = all_gather_object(np.asarray(value))
    if any(not np.array_equal(a, arrays[0], equal_nan=True) for a in arrays[1:]):
        raise RuntimeError(f"ranks disagree on {what}: {[a.tolist() for a in arrays]}")


# --------------------------------------------------------------------------------------------
# Wrapping the training forward


def wrap_for_training(module: torch.nn.Module) -> torch.nn.Module:
    """`module` (the learner's ModelCall, through which every forward goes) under DDP; itself
    in one process. Parameters are broadcast from rank 0 (every rank built the same ones)."""
    if not active():
        return module
    from torch.nn.parallel import DistributedDataParallel

    device = next(module.parameters()).device
    ids = [device.index] if device.type == "cuda" else None
    # Buffers (rotary tables) are identical on every rank by construction: no per-step sync
    # (the argument was renamed in torch 2.13; older releases only know broadcast_buffers).
    renamed = "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
    no_buffer_sync = {"forward_sync_buffers" if renamed else "broadcast_buffers": False}
    return DistributedDataParallel(module, device_ids=ids, **no_buffer_sync)


@contextlib.contextmanager
def no_sync(module: torch.nn.Module, skip: bool) -> Iterator[None]:
    """Skip DDP's gradient all-reduce for this backward when `skip` (gradient accumulation)."""
    if skip and hasattr(module, "no_sync"):
        with module.no_sync():
            yield
    else:
        yield
