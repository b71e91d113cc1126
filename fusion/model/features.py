"""Where a propagated feature matrix (products × (1 + metapaths) × text dim) lives, within a
memory budget: float32 in memory if it fits, else float16, else float16 memory-mapped from an
unlinked temporary file (the OS pages it; $TMPDIR chooses the disk)."""

from __future__ import annotations

import os
import tempfile

import torch
from torch import Tensor

GIB = 2**30


def feature_matrix(rows: int, cols: int, budget_gib: float, device: torch.device) -> Tensor:
    """An uninitialised ``[rows, cols]`` matrix for `gnn.propagate(..., out=)`."""
    budget = budget_gib * GIB
    if rows * cols * 4 <= budget:
        return torch.empty(rows, cols, device=device)
    if rows * cols * 2 <= budget or device.type != "cpu":
        return torch.empty(rows, cols, dtype=torch.float16, device=device)
    fd, path = tempfile.mkstemp(prefix="kgrec-features-", suffix=".f16")
    try:
        os.ftruncate(fd, rows * cols * 2)
        mapped = torch.from_file(path, shared=True, size=rows * cols, dtype=torch.float16)
    finally:
        os.close(fd)
        os.unlink(path)  # the mapping keeps the data until the tensor is freed
    return mapped.view(rows, cols)
