"""Data-parallel training with ``torch.distributed``, as launched by ``torchrun``.

``torchrun`` (or a Kubeflow PyTorchJob, which runs it in every pod) sets ``RANK``,
``LOCAL_RANK`` and ``WORLD_SIZE``; without them the run is a single process and every helper
here is a no-op, so the training loop has one code path. Gloo on CPU, NCCL on GPU.

How the data is split (:func:`shard_bounds`): every rank draws the same permutation from the
same seeded generator and cuts each global batch of ``batch_size`` rows into ``world_size``
near-equal parts, keeping its own. Each rank scales its summed loss by
``world_size / global_batch_rows``; DDP averages gradients over ranks, which then equal the
gradient of the mean loss over the whole global batch: the same update as one process with
the same batch size, up to floating-point summation order (and dropout masks, which each rank
draws for its own rows).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

T = TypeVar("T")


@dataclass(frozen=True)
class Context:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only one that logs, shows progress and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def from_env() -> Context:
    """The process's place in the job, from the variables torchrun sets."""
    return Context(
        rank=int(os.environ.get("RANK", "0")),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        world_size=int(os.environ.get("WORLD_SIZE", "1")),
    )


def init(ctx: Context, device: torch.device, timeout_s: float = 600) -> None:
    """Join the process group (once per process)."""
    if not ctx.distributed or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL binds each rank to its own GPU
    dist.init_process_group(
        backend="nccl" if device.type == "cuda" else "gloo",
        timeout=datetime.timedelta(seconds=timeout_s),
    )


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap(network: nn.Module, ctx: Context, device: torch.device) -> nn.Module:
    """DDP around the network when there is more than one rank (it also broadcasts rank 0's
    initial weights, so every rank starts from the same model)."""
    if not ctx.distributed:
        return network
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(network, device_ids=device_ids)


def shard_bounds(rows: int, ctx: Context) -> tuple[int, int]:
    """This rank's [start, stop) of a global batch of ``rows`` rows (near-equal parts)."""
    base, extra = divmod(rows, ctx.world_size)
    start = ctx.rank * base + min(ctx.rank, extra)
    return start, start + base + (1 if ctx.rank < extra else 0)


def all_reduce(tensor: torch.Tensor, ctx: Context, op: str = "sum") -> torch.Tensor:
    """Sum (or max) of ``tensor`` over all ranks, in place; unchanged with one rank."""
    if ctx.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return tensor


def gather(obj: T, ctx: Context) -> list[T]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank."""
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj: T, ctx: Context) -> T:
    """Rank 0's ``obj`` on every rank."""
    if not ctx.distributed:
        return obj
    box: list[Any] = [obj]
    dist.broadcast_object_list(box, src=0)
    result: T = box[0]
    return result


def barrier(ctx: Context) -> None:
    if ctx.distributed:
        dist.barrier()
