"""Data-parallel training with `torch.distributed`: one code path for one process, N CPU
processes (gloo) or N GPUs (NCCL). Launched by `torchrun` (or `kgrec train --nproc N`, which
runs torchrun), so the process group comes from the environment it sets (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT); without it everything here is a single-process no-op."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

# Rank 0 validates and checkpoints while the others wait at a barrier: allow it that long.
TIMEOUT = timedelta(hours=2)


def launched() -> bool:
    """True in a process started by torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (before or after the group exists: torchrun's RANK)."""
    return dist.get_rank() if active() else int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def device_for(requested: str) -> str:
    """Under torchrun with GPUs, each process takes the GPU of its local rank."""
    if launched() and requested in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return requested


@contextmanager
def process_group(device: str) -> Iterator[None]:
    """Join the torchrun process group for the duration (NCCL on CUDA, gloo otherwise); a
    no-op in a single process or when the group already exists."""
    if not launched() or dist.is_initialized():
        yield
        return
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(torch.device(device))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)
    try:
        yield
    finally:
        dist.destroy_process_group()


def barrier() -> None:
    if active():
        dist.barrier()


def shard(rows: Tensor) -> Tensor:
    """This rank's part of a global batch: every world_size-th row, so the ranks' parts are
    disjoint, cover the batch, and (with gradients averaged) one step equals a one-process
    step on the whole batch."""
    return rows[rank() :: world_size()] if active() else rows


def broadcast(value: Any) -> Any:
    """Rank 0's `value` on every rank (any picklable object, tensors included)."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when `flag` is true on any (so all ranks stop at the same step)."""
    if not active():
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())
