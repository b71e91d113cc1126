"""User histories as right-aligned index matrices (what sequence-aware scorers read)."""

from __future__ import annotations

import torch
from torch import Tensor


def history_matrix(history: dict[int, Tensor], num_users: int, length: int) -> Tensor:
    """``[num_users, length]`` right-aligned matrix of each user's last `length` items."""
    lengths = torch.zeros(num_users, dtype=torch.long)
    lengths[list(history)] = torch.tensor([len(seq) for seq in history.values()], dtype=torch.long)
    items = torch.empty(int(lengths.sum()), dtype=torch.long)
    ends = torch.cumsum(lengths, 0)
    for user, seq in history.items():
        items[ends[user] - len(seq) : ends[user]] = seq
    return right_aligned(items, ends - lengths, ends, length)


def right_aligned(items: Tensor, starts: Tensor, ends: Tensor, length: int) -> Tensor:
    """``[len(starts), length]``: row r holds the last `length` of ``items[starts[r]:ends[r]]``,
    right-aligned, -1 padded on the left."""
    cols = ends.unsqueeze(1) - length + torch.arange(length)
    inside = cols >= starts.unsqueeze(1)
    out = torch.full(cols.shape, -1, dtype=torch.long)
    out[inside] = items[cols[inside]]
    return out
