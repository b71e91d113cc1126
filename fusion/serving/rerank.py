"""Diversity re-ranking by maximal marginal relevance (MMR, Carbonell & Goldstein 1998) over the
knowledge graph's categories and brands and the model's product vectors, with one knob.

From a candidate pool ranked by relevance, answers are picked greedily: the next one maximises
(1 − λ) · relevance − λ · (highest similarity to an answer already picked). Relevance is
min–max scaled over the pool, so λ means the same whatever the model's score scale. Similarity
of two products is the mean of: the Jaccard similarity of their category sets (shared / either;
graded, so two products under neighbouring categories are closer than unrelated ones), same
brand (0 where unknown), and the cosine of their vectors clipped at 0. λ = 0 keeps the
relevance order exactly.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

import torch
from torch import Tensor

from fusion.evaluation.metrics import top_k
from kg.errors import InvalidArgumentError

POOL_FACTOR = 3  # candidates considered per answer when diversifying
POOL_MIN_EXTRA = 20


def pool_size(k: int, diversity: float) -> int:
    """How many relevance-ranked candidates a diversified top-k is picked from."""
    check_diversity(diversity)
    return k if diversity == 0 or k < 1 else max(POOL_FACTOR * k, k + POOL_MIN_EXTRA)


def check_diversity(diversity: float) -> None:
    if not 0.0 <= diversity <= 1.0:
        raise InvalidArgumentError(f"diversity must be within [0, 1], got {diversity}")


def labels(keys: Sequence[Hashable | None]) -> Tensor:
    """LongTensor: one label per distinct key, -1 where the key is None (unknown)."""
    ids: dict[Hashable, int] = {}
    return torch.tensor(
        [-1 if key is None else ids.setdefault(key, len(ids)) for key in keys], dtype=torch.long
    )


def label_sets(keys: Sequence[Iterable[Hashable]]) -> Tensor:
    """[N, m] LongTensor: each row's distinct labels (one id per distinct key over all rows),
    padded with -1 to the longest row (m ≥ 1)."""
    ids: dict[Hashable, int] = {}
    rows = [sorted({ids.setdefault(key, len(ids)) for key in row}) for row in keys]
    out = torch.full((len(rows), max(1, *map(len, rows)) if rows else 1), -1, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


class ProductSimilarity:
    """Pairwise similarity of products from category sets, brand labels and unit vectors."""

    def __init__(self, vectors: Tensor, categories: Tensor, brand: Tensor) -> None:
        """`categories`: `label_sets` of the products' categories; `brand`: `labels`."""
        self.vectors, self.categories, self.brand = vectors, categories, brand

    def __call__(self, idx: Tensor) -> Tensor:
        """[P, P] similarities of the products `idx` [P], or [B, P, P] for `idx` [B, P]."""
        vectors = self.vectors[idx]
        return (
            _jaccard(self.categories[idx])
            + _same(self.brand[idx])
            + (vectors @ vectors.transpose(-1, -2)).clamp(min=0)
        ) / 3


def mmr(relevance: Tensor, similarity: Tensor, k: int, diversity: float) -> list[int]:
    """Positions (into `relevance` [P], best first) of the k answers MMR picks, `similarity`
    [P, P] between the candidates, λ = `diversity`."""
    return mmr_batch(relevance.unsqueeze(0), similarity.unsqueeze(0), k, diversity)[0].tolist()


def mmr_batch(relevance: Tensor, similarity: Tensor, k: int, diversity: float) -> Tensor:
    """`mmr` for a batch of pools at once: [B, k] positions into `relevance` [B, P], with
    `similarity` [B, P, P]. A candidate with a non-finite relevance (masked) comes last."""
    check_diversity(diversity)
    k = min(k, relevance.size(1))
    if diversity == 0:
        return torch.argsort(relevance, dim=1, descending=True, stable=True)[:, :k]
    finite = relevance.isfinite()
    known = relevance.masked_fill(~finite, torch.nan)
    low = known.nan_to_num(torch.inf).min(1, keepdim=True).values
    span = known.nan_to_num(-torch.inf).max(1, keepdim=True).values - low
    scaled = torch.where(span > 0, (relevance - low) / span, torch.ones_like(relevance))
    closest = torch.zeros_like(scaled)  # highest similarity to a picked answer
    free = torch.ones_like(scaled, dtype=torch.bool)
    rows = torch.arange(relevance.size(0))
    picked = torch.empty(relevance.size(0), k, dtype=torch.long)
    for step in range(k):
        gain = (1 - diversity) * scaled - diversity * closest
        gain = gain.masked_fill(~finite, -torch.finfo(gain.dtype).max).masked_fill(
            ~free, -torch.inf
        )
        best = torch.argmax(gain, dim=1)  # the first of equals: ties keep the relevance order
        picked[:, step] = best
        free[rows, best] = False
        closest = torch.maximum(closest, similarity[rows, best])
    return picked


class DiversifiedScorer:
    """A scorer whose top-k lists are re-ranked by MMR (what `--diversity` serves), for the
    evaluation harness: each query's `pool_size` best rankable products (after `exclusions`,
    as the metrics mask them) are re-ordered and lifted above every other product; the rest
    keep the wrapped scorer's order."""

    def __init__(
        self,
        scorer,  # noqa: ANN001 - any harness Scorer
        similarity: ProductSimilarity,
        diversity: float,
        exclusions: dict[int, Tensor],
        candidates: Tensor,
        k: int = 10,
    ) -> None:
        self.scorer, self.similarity, self.diversity = scorer, similarity, diversity
        self.exclusions, self.candidates, self.k = exclusions, candidates, k

    @torch.no_grad()
    def full_sort_predict(self, query_idx: Tensor, stage: str = "test") -> Tensor:
        scores = self.scorer.full_sort_predict(query_idx, stage=stage).float().cpu()
        excluded = [
            self.exclusions.get(q, torch.empty(0, dtype=torch.long)) for q in query_idx.tolist()
        ]
        pool = top_k(scores, excluded, pool_size(self.k, self.diversity), self.candidates)
        relevance = scores.gather(1, pool)
        order = mmr_batch(relevance, self.similarity(pool), self.k, self.diversity)
        picked = pool.gather(1, order)
        top = scores.max().item() + 1
        lifted = top + torch.arange(picked.size(1), 0, -1, dtype=scores.dtype).expand_as(picked)
        return scores.scatter(1, picked, lifted)


def _jaccard(sets: Tensor) -> Tensor:
    """[..., P, P]: shared / either of the label sets `sets` [..., P, m] (-1 = padding); 0 where
    both are empty."""
    known = sets >= 0
    equal = sets.unsqueeze(-2).unsqueeze(-1) == sets.unsqueeze(-3).unsqueeze(-2)  # [.., P, P, m, m]
    both = known.unsqueeze(-2).unsqueeze(-1) & known.unsqueeze(-3).unsqueeze(-2)
    shared = (equal & both).sum((-1, -2)).float()
    size = known.sum(-1).float()
    either = size.unsqueeze(-1) + size.unsqueeze(-2) - shared
    return shared / either.clamp(min=1)


def _same(labels: Tensor) -> Tensor:
    """[..., P, P]: 1 where two products of `labels` [..., P] share a known label."""
    known = labels >= 0
    return ((labels.unsqueeze(-1) == labels.unsqueeze(-2)) & known.unsqueeze(-1)).float()
