"""Full-ranking metrics: every product is ranked (no sampled negatives), after masking the
query's exclusions. Per-query values are returned so the caller can average over batches.

Ties are broken pessimistically: among equal scores, targets rank after non-targets (and
targets among themselves by index). A constant scorer therefore scores zero, not whatever the
index order happens to give it. NaN scores count as -inf.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def ranked_relevance(
    scores: Tensor,
    targets: Sequence[Tensor],
    exclusions: Sequence[Tensor],
    candidates: Tensor | None = None,
) -> Tensor:
    """BoolTensor[B, N]: whether the item at each rank position (best first) is a target.

    `scores` [B, N]; `targets[i]`/`exclusions[i]` are LongTensors of item indices for row i;
    `candidates` (BoolTensor[N]) marks rankable items. Excluded and non-candidate items go to
    the end, except targets, which are never masked.
    """
    batch, num_items = scores.shape
    is_target = _row_mask(targets, batch, num_items)
    masked = _row_mask(exclusions, batch, num_items)
    if candidates is not None:
        masked |= ~candidates
    scores = scores.float().nan_to_num(nan=float("-inf"))
    scores = scores.masked_fill(masked & ~is_target, float("-inf"))
    # Lexicographic sort by (score desc, is_target asc, index asc) via two stable sorts.
    by_target = torch.argsort(is_target.to(torch.uint8), dim=1, stable=True)
    by_score = torch.argsort(scores.gather(1, by_target), dim=1, descending=True, stable=True)
    return is_target.gather(1, by_target.gather(1, by_score))


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
    rel = ranked_relevance(scores, targets, exclusions, candidates).float()
    discount = 1.0 / torch.log2(torch.arange(2, rel.size(1) + 2, dtype=torch.float))
    out: dict[str, Tensor] = {}
    for k in ks:
        top = rel[:, :k]
        ideal_n = num_targets.clamp(max=k)
        idcg = torch.cumsum(discount[:k], 0)[ideal_n.long() - 1]
        out[f"recall@{k}"] = top.sum(1) / ideal_n
        out[f"hr@{k}"] = (top.sum(1) > 0).float()
        out[f"ndcg@{k}"] = (top * discount[:k]).sum(1) / idcg
    out["mrr"] = 1.0 / (rel.argmax(1) + 1).float()  # argmax = first target position
    return out


def _row_mask(indices: Sequence[Tensor], batch: int, num_items: int) -> Tensor:
    mask = torch.zeros(batch, num_items, dtype=torch.bool)
    rows = torch.repeat_interleave(torch.arange(batch), torch.tensor([i.numel() for i in indices]))
    if rows.numel():
        mask[rows, torch.cat(list(indices))] = True
    return mask
