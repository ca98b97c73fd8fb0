"""Weights, optimizer state and gradients of a model that may be sharded with FSDP2.

Under ``train.parallel: fsdp`` (torchrun, more than one rank) every decoder layer and the
`ModelCall` wrapping the model (mosgym.learner.collate) go through
``torch.distributed.fsdp.fully_shard``: each rank holds 1/W of every parameter, gradient and
AdamW moment, and each forward all-gathers a layer's weights just before it runs. Every forward
of the learner goes through the ModelCall, so it is the FSDP root, and every function here takes
it (FSDP2 keeps the root's weights gathered after a forward without backward; only the root can
put them back). The learner needs four things, each the plain version in one process or under
DDP, so that it has one code path:

- local copies of this rank's weights (the initial weights swapped in for the DIFF reward and
  restored at reset never leave their shard, so host memory does not grow with W);
- full (gathered) weights and optimizer state for checkpoints, in exactly the format of one
  process, so a checkpoint resumes under 1, DDP or FSDP ranks alike;
- cosine similarity of two sharded gradients (MultiDDS);
- `lockstep_chunks`: every rank must run the same number of forwards and backwards, since each
  one is a collective; ranks with fewer examples run padding chunks whose results are dropped.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from mosgym.errors import MosgymError
from mosgym.learner import distributed


def _fsdp() -> Any:
    from torch.distributed import fsdp

    return fsdp


def _dtensor_type() -> type:
    from torch.distributed.tensor import DTensor

    return DTensor


def shard_model(call: torch.nn.Module) -> None:
    """fully_shard every decoder layer (the model's `_no_split_modules` classes), then the rest
    (embeddings, final norm, LM head) with `call` as the root, over all ranks."""
    from torch.distributed.device_mesh import init_device_mesh

    fsdp = _fsdp()
    device = next(call.parameters()).device
    mesh = init_device_mesh(device.type, (distributed.world_size(),))
    layer_types = set(getattr(call.model, "_no_split_modules", None) or ())
    if not layer_types:
        raise MosgymError(
            f"train.parallel=fsdp: {type(call.model).__name__} names no decoder layer class "
            "(_no_split_modules) to shard by; use train.parallel=ddp"
        )
    for module in list(call.modules()):
        if type(module).__name__ in layer_types:
            fsdp.fully_shard(module, mesh=mesh)
    fsdp.fully_shard(call, mesh=mesh)


def is_sharded(call: torch.nn.Module) -> bool:
    return isinstance(call, _fsdp().FSDPModule)


def reshard(call: torch.nn.Module) -> None:
    """Put every FSDP module back in its sharded state, so that the registered parameters are
    the shards (the ones the optimizer holds) and writes to them are seen by the next forward."""
    if not is_sharded(call):
        return
    for module in call.modules():
        if isinstance(module, _fsdp().FSDPModule):
            module.reshard()


def _local(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to_local() if isinstance(tensor, _dtensor_type()) else tensor


def _model_state(call: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The wrapped model's state_dict, in its sharded state (DTensors) when sharded."""
    reshard(call)
    return call.model.state_dict()


def local_weights(call: torch.nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of this rank's part of every state_dict entry (all of it when not sharded)."""
    return {k: _local(v).detach().to("cpu", copy=True) for k, v in _model_state(call).items()}


@torch.no_grad()
def load_local_weights(call: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Write `local_weights` back, in place (the optimizer keeps pointing at the parameters)."""
    for key, value in _model_state(call).items():
        _local(value).copy_(weights[key])


def _full(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor on every rank (an all-gather when it is a DTensor)."""
    return tensor.full_tensor() if isinstance(tensor, _dtensor_type()) else tensor


def full_weights(call: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's state_dict as CPU tensors, gathered one tensor at a time. Collective
    under FSDP (every rank calls it); only the main rank keeps the copies."""
    keep = distributed.is_main()
    out = {}
    for key, value in _model_state(call).items():
        whole = _full(value.detach())
        if keep:
            out[key] = whole.to("cpu", copy=True)
    return out


def _my_part(full: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """This rank's piece of `full` in the layout of `like` (FSDP2 shards dim 0 by torch.chunk;
    ranks past the last chunk hold an empty piece)."""
    if not isinstance(like, _dtensor_type()):
        return full
    (placement,) = like.placements
    dim = placement.dim  # type: ignore[attr-defined]
    pieces = full.chunk(distributed.world_size(), dim=dim)
    rank = distributed.rank()
    part = pieces[rank] if rank < len(pieces) else full.narrow(dim, 0, 0)
    if part.shape != like.to_local().shape:
        raise RuntimeError(f"shard of shape {tuple(part.shape)} for {like.to_local().shape}")
    return part


@torch.no_grad()
def load_full_weights(call: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Load a whole state_dict (`full_weights`, or one process's) that every rank holds."""
    state = _model_state(call)
    if set(weights) != set(state):
        missing, extra = sorted(set(state) - set(weights)), sorted(set(weights) - set(state))
        raise RuntimeError(f"model weights do not match: missing {missing}, unexpected {extra}")
    for key, value in state.items():
        _local(value).copy_(_my_part(weights[key], value))


def full_optimizer_state(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """optimizer.state_dict() with every sharded moment gathered, as CPU tensors: the format of
    one process. Collective under FSDP; only the main rank keeps the copies."""
    state = optimizer.state_dict()
    keep = distributed.is_main()
    out: dict[int, dict[str, Any]] = {}
    for index, slots in state["state"].items():
        gathered = {}
        for name, value in slots.items():  # one moment at a time: no full copy on the device
            is_tensor = isinstance(value, torch.Tensor)
            whole = _full(value) if is_tensor else value
            if keep:  # the other ranks only take part in the gather: no copies there
                gathered[name] = whole.to("cpu", copy=True) if is_tensor else whole
        if keep:
            out[index] = gathered
    return {"state": out, "param_groups": state["param_groups"]}


def load_full_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load `full_optimizer_state` (or one process's optimizer.state_dict()): each moment is cut
    to this rank's shard of its parameter first."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if not any(isinstance(p, _dtensor_type()) for p in params):
        optimizer.load_state_dict(state)
        return
    from torch.distributed.tensor import DTensor

    slots_of = {}
    for index, slots in state["state"].items():
        param = params[int(index)]
        slots_of[index] = {
            name: DTensor.from_local(
                _my_part(value, param).to(param.device), param.device_mesh, param.placements
            )
            if isinstance(value, torch.Tensor) and value.shape == param.shape
            else value
            for name, value in slots.items()
        }
    optimizer.load_state_dict({"state": slots_of, "param_groups": state["param_groups"]})


def local_grad(params: list[torch.Tensor]) -> torch.Tensor:
    """This rank's part of all gradients as one float32 vector (zeros where there is none)."""
    parts = []
    for p in params:
        grad = p.grad if p.grad is not None else torch.zeros_like(p)
        parts.append(_local(grad).float().reshape(-1))
    return torch.cat(parts)


def cosine(a: torch.Tensor, b: torch.Tensor, sharded: bool) -> float:
    """Cosine similarity of two vectors; when `sharded`, of the vectors whose parts the ranks
    hold (dot products summed over ranks)."""
    dots = torch.stack([a @ b, a @ a, b @ b]).double()
    if sharded:
        distributed.all_reduce_sum(dots)
    ab, aa, bb = dots.tolist()
    eps = 1e-8  # torch.nn.functional.cosine_similarity's
    return ab / max(math.sqrt(aa) * math.sqrt(bb), eps)


def lockstep_chunks(index: np.ndarray, size: int, sharded: bool) -> list[tuple[np.ndarray, bool]]:
    """This rank's share of `index` in chunks of `size`, each with whether it is real. When
    `sharded`, padded with copies of the first example (not real) up to the largest rank's
    count, so that every rank runs as many forwards as the others."""
    mine = index[distributed.shard_positions(len(index))]
    chunks = [(mine[i : i + size], True) for i in range(0, len(mine), size)]
    if sharded and len(index):
        most = math.ceil(math.ceil(len(index) / distributed.world_size()) / size)
        chunks += [(index[:1], False)] * (most - len(chunks))
    return chunks
