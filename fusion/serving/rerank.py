"""Diversity re-ranking over the knowledge graph's category tree, with one knob λ.

From a pool of the most relevant candidates, k answers are picked greedily: the next one
maximises (1 − λ) · relevance + λ · (its mean category distance to the answers already picked),
and the k picked are then shown in relevance order (which answers, not their order, makes a
list varied; the order only costs accuracy). This is max-sum diversification of the intra-list
distance (Ziegler et al. 2005) rather than maximal marginal relevance's "distance to the closest
one picked": it rewards a list whose pairs differ on average, which is what intra-list
diversity measures, instead of chasing the single closest pair.

- Relevance is the model's probability relative to the pool's best, exp(score − best score):
  a recommend model's scores are the logits of its training softmax, so this is
  p(answer) / p(best). A confident head (the best far above the rest) is kept; where the model
  cannot tell the candidates apart, they are nearly equal and variety decides. λ means the same
  whatever the catalogue, since only score differences count.
- Distance of two products is the Jaccard distance of their category sets (1 − shared /
  either), graded along the category tree (a product's set holds its categories' ancestors, so
  Makeup > Lips and Makeup > Eyes share Makeup); where either product has no category, the
  distance of their vectors, 1 − cosine clipped to [0, 1].
- λ = 0 returns the relevance order unchanged.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

import torch
from torch import Tensor

from fusion.evaluation.metrics import top_k
from kg.errors import InvalidArgumentError

POOL_FACTOR = 5  # candidates considered per answer when diversifying
POOL_MIN_EXTRA = 20


def pool_size(k: int, diversity: float) -> int:
    """How many relevance-ranked candidates a diversified top-k is picked from."""
    check_diversity(diversity)
    return k if diversity == 0 or k < 1 else max(POOL_FACTOR * k, k + POOL_MIN_EXTRA)


def check_diversity(diversity: float) -> None:
    if not 0.0 <= diversity <= 1.0:
        raise InvalidArgumentError(f"diversity must be within [0, 1], got {diversity}")


def label_sets(keys: Sequence[Iterable[Hashable]]) -> Tensor:
    """[N, m] LongTensor: each row's distinct labels (one id per distinct key over all rows),
    padded with -1 to the longest row (m ≥ 1)."""
    ids: dict[Hashable, int] = {}
    rows = [sorted({ids.setdefault(key, len(ids)) for key in row}) for row in keys]
    out = torch.full((len(rows), max(1, *map(len, rows)) if rows else 1), -1, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


class ProductDistance:
    """Pairwise distance of products: Jaccard distance of their category sets, or of their unit
    vectors (1 − clipped cosine) where either has no category."""

    def __init__(self, vectors: Tensor, categories: Tensor) -> None:
        """`vectors` [N, d] unit rows; `categories`: `label_sets` of the products' categories."""
        self.vectors, self.categories = vectors, categories

    def __call__(self, idx: Tensor) -> Tensor:
        """[P, P] distances of the products `idx` [P], or [B, P, P] for `idx` [B, P]."""
        sets = self.categories[idx]
        known = (sets >= 0).any(-1)
        vectors = self.vectors[idx]
        cosine = (vectors @ vectors.transpose(-1, -2)).clamp(0, 1)
        both = known.unsqueeze(-1) & known.unsqueeze(-2)
        return torch.where(both, 1 - _jaccard(sets), 1 - cosine)


def diversify(relevance: Tensor, distance: Tensor, k: int, diversity: float) -> list[int]:
    """Positions (into `relevance` [P], as shown) of the k answers picked with λ =
    `diversity`, `distance` [P, P] between the candidates."""
    return diversify_batch(relevance.unsqueeze(0), distance.unsqueeze(0), k, diversity)[0].tolist()


def diversify_batch(relevance: Tensor, distance: Tensor, k: int, diversity: float) -> Tensor:
    """`diversify` for a batch of pools at once: [B, k] positions into `relevance` [B, P] (raw
    scores), with `distance` [B, P, P]. A candidate with a non-finite relevance (masked) comes
    last."""
    check_diversity(diversity)
    k = min(k, relevance.size(1))
    by_relevance = torch.argsort(relevance, dim=1, descending=True, stable=True)
    if diversity == 0:
        return by_relevance[:, :k]
    finite = relevance.isfinite()
    best = relevance.masked_fill(~finite, -torch.inf).max(1, keepdim=True).values
    likely = torch.exp(relevance - best.nan_to_num(0, neginf=0))
    # Masked candidates come after every rankable one; picked ones never again.
    base = ((1 - diversity) * likely).masked_fill(~finite, -torch.finfo(likely.dtype).max)
    spread = torch.zeros_like(base)  # summed distance to the answers picked so far
    rows = torch.arange(relevance.size(0))
    for step in range(k):
        pick = torch.argmax(base + (diversity / max(step, 1)) * spread, dim=1)  # first of equals
        base[rows, pick] = -torch.inf
        spread += distance[rows, pick]
    chosen = base.isneginf().gather(1, by_relevance)  # the picked, in relevance order
    return by_relevance[chosen].view(-1, k)


class DiversifiedScorer:
    """A scorer whose top-k lists are re-ranked by `diversify` (what `--diversity` serves),
    for the evaluation harness: each query's `pool_size` best rankable products (after
    `exclusions`, as the metrics mask them) are re-chosen and lifted above every other product;
    the rest keep the wrapped scorer's order."""

    def __init__(
        self,
        scorer,  # noqa: ANN001 - any harness Scorer
        distance: ProductDistance,
        diversity: float,
        exclusions: dict[int, Tensor],
        candidates: Tensor,
        k: int = 10,
    ) -> None:
        self.scorer, self.distance, self.diversity = scorer, distance, diversity
        self.exclusions, self.candidates, self.k = exclusions, candidates, k

    @torch.no_grad()
    def full_sort_predict(self, query_idx: Tensor, stage: str = "test") -> Tensor:
        scores = self.scorer.full_sort_predict(query_idx, stage=stage).float().cpu()
        excluded = [
            self.exclusions.get(q, torch.empty(0, dtype=torch.long)) for q in query_idx.tolist()
        ]
        pool = top_k(scores, excluded, pool_size(self.k, self.diversity), self.candidates)
        relevance = scores.gather(1, pool)
        order = diversify_batch(relevance, self.distance(pool), self.k, self.diversity)
        picked = pool.gather(1, order)
        top = scores.max().item() + 1
        lifted = top + torch.arange(picked.size(1), 0, -1, dtype=scores.dtype).expand_as(picked)
        return scores.scatter(1, picked, lifted)


def _jaccard(sets: Tensor) -> Tensor:
    """[..., P, P]: shared / either of the label sets `sets` [..., P, m] (-1 = padding); 0 where
    both are empty. Through a multi-hot of the labels present, so the cost grows with the
    pool, not with the catalogue's number of categories."""
    present, index = torch.unique(sets, return_inverse=True)
    hot = torch.zeros(*sets.shape[:-1], present.numel()).scatter_(-1, index, 1.0)
    if present[0] < 0:
        hot[..., 0] = 0  # the padding
    shared = hot @ hot.transpose(-1, -2)
    size = hot.sum(-1)
    either = size.unsqueeze(-1) + size.unsqueeze(-2) - shared
    return shared / either.clamp(min=1)
