"""Diversity re-ranking by maximal marginal relevance (MMR, Carbonell & Goldstein 1998) over the
knowledge graph's categories and brands and the model's product vectors, with one knob.

From a candidate pool ranked by relevance, answers are picked greedily: the next one maximises
(1 − λ) · relevance − λ · (highest similarity to an answer already picked). Relevance is
min–max scaled over the pool, so λ means the same whatever the model's score scale. Similarity
of two products is the mean of: same category set, same brand (0 where unknown), and the
cosine of their vectors clipped at 0. λ = 0 keeps the relevance order exactly.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch
from torch import Tensor

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


class ProductSimilarity:
    """Pairwise similarity of products from category and brand labels and unit vectors."""

    def __init__(self, vectors: Tensor, category: Tensor, brand: Tensor) -> None:
        self.vectors, self.category, self.brand = vectors, category, brand

    def __call__(self, idx: Tensor) -> Tensor:
        """[P, P] similarities of the products `idx` [P]."""
        return (
            _same(self.category[idx])
            + _same(self.brand[idx])
            + (self.vectors[idx] @ self.vectors[idx].T).clamp(min=0)
        ) / 3


def mmr(relevance: Tensor, similarity: Tensor, k: int, diversity: float) -> list[int]:
    """Positions (into `relevance` [P], best first) of the k answers MMR picks, `similarity`
    [P, P] between the candidates, λ = `diversity`."""
    check_diversity(diversity)
    k = min(k, relevance.numel())
    if diversity == 0:
        return torch.argsort(relevance, descending=True, stable=True)[:k].tolist()
    span = relevance.max() - relevance.min()
    scaled = (relevance - relevance.min()) / span if span > 0 else torch.ones_like(relevance)
    closest = torch.zeros_like(scaled)  # highest similarity to a picked answer
    free = torch.ones_like(scaled, dtype=torch.bool)
    picked: list[int] = []
    for _ in range(k):
        gain = ((1 - diversity) * scaled - diversity * closest).masked_fill(~free, -torch.inf)
        best = int(torch.argmax(gain))  # the first of equals: ties keep the relevance order
        picked.append(best)
        free[best] = False
        closest = torch.maximum(closest, similarity[best])
    return picked


def _same(labels: Tensor) -> Tensor:
    known = labels >= 0
    return ((labels.unsqueeze(1) == labels.unsqueeze(0)) & known.unsqueeze(1)).float()
