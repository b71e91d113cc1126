"""Full-ranking metrics: every product is ranked (no sampled negatives), after masking the
query's exclusions. Per-query values are returned so the caller can average over batches.

Ties are broken pessimistically: among equal scores, targets rank after non-targets (and
targets among themselves by index). A constant scorer therefore scores zero, not whatever the
index order happens to give it. NaN scores count as -inf.

Only the targets' positions matter, so no row is sorted: a target's position is the number of
products ranked before it, counted with one comparison pass over its row (O(targets × items),
an order of magnitude cheaper than sorting every row).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

ROWS_PER_PASS = 1024  # targets compared against their rows at once (bounds the memory)


def target_positions(
    scores: Tensor,
    targets: Sequence[Tensor],
    exclusions: Sequence[Tensor],
    candidates: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """0-based rank of every (row, target) pair in its row's full ranking (best first).

    `scores` [B, N]; `targets[i]`/`exclusions[i]` are LongTensors of item indices for row i;
    `candidates` (BoolTensor[N]) marks rankable items. Excluded and non-candidate items go to
    the end, except targets, which are never masked. Returns (row of each distinct target,
    its position), both LongTensors [M]."""
    batch, num_items = scores.shape
    is_target = _row_mask(targets, batch, num_items)
    masked = _row_mask(exclusions, batch, num_items)
    if candidates is not None:
        masked |= ~candidates
    scores = scores.float().nan_to_num(nan=float("-inf"))
    scores = scores.masked_fill(masked & ~is_target, float("-inf"))
    keys = torch.unique(_rows_of(targets) * num_items + torch.cat(list(targets)))
    row, item = keys // num_items, keys % num_items  # distinct targets, by row then index
    own = scores[row, item]
    at_or_above = torch.cat(
        [
            (scores[r] >= s.unsqueeze(1)).sum(1)
            for r, s in zip(row.split(ROWS_PER_PASS), own.split(ROWS_PER_PASS), strict=True)
        ]
    )
    # Items at or above a target's score all precede it, except the tied targets of the same
    # row from itself on (ties among targets go by index, and `item` ascends within a row).
    return row, at_or_above - _tied_from_here(row, own)


def ranking_metrics(
    scores: Tensor,
    targets: Sequence[Tensor],
    exclusions: Sequence[Tensor],
    ks: Sequence[int] = (10, 20),
    candidates: Tensor | None = None,
) -> dict[str, Tensor]:
    """Per-query `recall@K` (hits / min(|targets|, K)), `hr@K`, `ndcg@K` (binary relevance,
    ideal DCG over min(|targets|, K)) and `mrr` (1 / rank of the first target in the full
    ranking). Every query needs at least one target. Returns FloatTensors [B]."""
    num_targets = torch.tensor([t.numel() for t in targets], dtype=torch.float)
    if bool((num_targets == 0).any()):
        raise ValueError("every query needs at least one target")
    batch = scores.shape[0]
    row, pos = target_positions(scores, targets, exclusions, candidates)
    gain = 1.0 / torch.log2(pos.float() + 2)
    out: dict[str, Tensor] = {}
    for k in ks:
        hit = (pos < k).float()
        hits = torch.zeros(batch).index_add_(0, row, hit)
        ideal_n = num_targets.clamp(max=k)
        idcg = torch.cumsum(1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float)), 0)
        out[f"recall@{k}"] = hits / ideal_n
        out[f"hr@{k}"] = (hits > 0).float()
        out[f"ndcg@{k}"] = (
            torch.zeros(batch).index_add_(0, row, hit * gain) / idcg[ideal_n.long() - 1]
        )
    first = torch.full((batch,), scores.shape[1], dtype=torch.long).scatter_reduce(
        0, row, pos, reduce="amin"
    )
    out["mrr"] = 1.0 / (first + 1).float()
    return out


def top_k(
    scores: Tensor, exclusions: Sequence[Tensor], k: int, candidates: Tensor | None = None
) -> Tensor:
    """[B, k] indices of each row's k best items (best first) among the rankable ones: the
    lists a user would see, after the same masking as the metrics."""
    masked = _row_mask(exclusions, *scores.shape)
    if candidates is not None:
        masked |= ~candidates
    scores = scores.float().nan_to_num(nan=float("-inf")).masked_fill(masked, float("-inf"))
    return torch.topk(scores, min(k, scores.shape[1]), dim=1).indices


def _tied_from_here(row: Tensor, score: Tensor) -> Tensor:
    """For each target (ordered by row, then index): how many targets of its row have the
    same score and an index at least its own (itself included)."""
    order = torch.argsort(score, stable=True)
    order = order[torch.argsort(row[order], stable=True)]  # by (row, score, index)
    r, s = row[order], score[order]
    starts = torch.ones_like(r, dtype=torch.bool)
    starts[1:] = (r[1:] != r[:-1]) | (s[1:] != s[:-1])
    group = torch.cumsum(starts.long(), 0) - 1
    sizes = torch.bincount(group)
    first = torch.cumsum(sizes, 0) - sizes
    out = torch.empty_like(row)
    out[order] = sizes[group] - (torch.arange(r.numel()) - first[group])
    return out


def _rows_of(indices: Sequence[Tensor]) -> Tensor:
    """The row number of every element of `torch.cat(indices)`."""
    return torch.repeat_interleave(
        torch.arange(len(indices)), torch.tensor([i.numel() for i in indices], dtype=torch.long)
    )


def _row_mask(indices: Sequence[Tensor], batch: int, num_items: int) -> Tensor:
    mask = torch.zeros(batch, num_items, dtype=torch.bool)
    rows = _rows_of(indices)
    if rows.numel():
        mask[rows, torch.cat(list(indices))] = True
    return mask
