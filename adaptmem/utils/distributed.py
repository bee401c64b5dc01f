"""Minimal helpers for ``torchrun`` data-parallel training (gloo on CPU, nccl on GPU)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "cpu") -> DistInfo:
    """Join the process group when launched by ``torchrun``; a no-op otherwise."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", 1)) == 1:
        return DistInfo()
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    info = DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    if device.startswith("cuda"):
        torch.cuda.set_device(info.local_rank)
    return info


def all_reduce_mean(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Average a tensor over ranks (returns ``x`` unchanged without a process group)."""
    if not info.enabled:
        return x
    x = x.clone()
    dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x / info.world_size


def all_reduce_sum_(tensors: Iterable[torch.Tensor], info: DistInfo) -> None:
    """Sum tensors over ranks in place, in one collective (a flat buffer; nothing to do alone)."""
    tensors = list(tensors)
    if not info.enabled or not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    for t, part in zip(tensors, flat.split([t.numel() for t in tensors])):
        t.copy_(part.view_as(t))


def all_reduce_gradients(parameters: Iterable[torch.nn.Parameter], info: DistInfo) -> None:
    """Sum the gradients of ``parameters`` over ranks (a missing gradient counts as zeros).

    Summing, not averaging: with a loss summed over examples, the sum of the ranks' gradients is
    the gradient of the loss of all ranks' examples together.
    """
    if not info.enabled:
        return
    params = list(parameters)
    for p in params:
        if p.grad is None:  # every rank must send the same tensors
            p.grad = torch.zeros_like(p)
    all_reduce_sum_([p.grad for p in params], info)


def broadcast_module(module: torch.nn.Module, info: DistInfo, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank."""
    if info.enabled:
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src)


def all_gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` alone); objects are pickled."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def any_rank(flag: bool, info: DistInfo) -> bool:
    """Whether ``flag`` is set on any rank (so that all ranks stop at the same step)."""
    if not info.enabled:
        return bool(flag)
    # nccl reduces CUDA tensors only (init_distributed set each process's device)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([int(bool(flag))], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def split_evenly(fn: str, name: str, total: int, info: DistInfo) -> int:
    """``total // world_size``, refusing totals the ranks cannot share equally."""
    if total % info.world_size:
        raise ValueError(f"{fn}: {name} ({total}) must be divisible by the number of processes ({info.world_size})")
    return total // info.world_size


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup_distributed(info: DistInfo) -> None:
    """Leave the process group; ranks wait for each other first so none tears down a peer's sockets."""
    if info.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
