"""Beyond-accuracy metrics of top-k lists (what a shop sees besides hits): catalogue coverage,
Gini of exposure, popularity percentile, long-tail share, intra-list diversity by category and
brand, novelty.

Accumulators in the style of `torch_geometric.metrics` (`update` with a batch of top-k index
lists, then `compute`), but they keep every query's value, so intervals can be bootstrapped
over queries. Corpus-level metrics (coverage, Gini) depend on the whole set of lists; they are
computed from query weights (`compute(weights)`, one row per bootstrap resample) for the same
reason.

Definitions (popularity = a product's training interactions, over the rankable catalogue):
- `coverage@k`: share of catalogue products in at least one list.
- `gini@k`: Gini coefficient of how often each catalogue product is shown (0 = even exposure).
- `pop_percentile@k`: mean over a list of the share of the catalogue less popular than the item
  (ties count half: `scipy.stats.percentileofscore(kind="mean")`).
- `long_tail@k`: share of a list outside the head, the products fewer than 20% of the
  catalogue are more popular than.
- `ild_category@k`, `ild_brand@k`: share of a list's distinct pairs with different category sets
  / brands; pairs with an unknown side do not count (a list with no known pair: NaN, left out).
- `category_distance@k`: mean over a list's distinct pairs of the Jaccard distance of their
  category sets (1 − shared / either), pairs with an unknown side left out: graded where
  `ild_category` only asks "same set or not" (two shades of lipstick under Beauty > Makeup > Lips
  and Beauty > Makeup > Lips > Lipstick differ as sets, yet are close).
- `novelty@k`: mean of −log2 of the item's popularity share, add-one smoothed
  ((count + 1) / (total + catalogue size)) so never-seen products stay finite.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

HEAD_SHARE = 0.2  # the most popular 20% of the catalogue is the head; the rest, the long tail
CORPUS_METRICS = ("coverage", "gini")  # of the lists together, not a mean over queries


def product_sets(graph: HeteroData, relation: str) -> Tensor:
    """BoolTensor[num_products, num_targets]: which nodes each product links to by `relation`
    (no column where the graph has no such relation)."""
    num_products = graph["product"].num_nodes
    edge_types = [t for t in graph.edge_types if t[0] == "product" and t[1] == relation]
    if not edge_types:
        return torch.zeros(num_products, 0, dtype=torch.bool)
    src, dst = graph[edge_types[0]].edge_index
    out = torch.zeros(num_products, graph[edge_types[0][2]].num_nodes, dtype=torch.bool)
    out[src, dst] = True
    return out


def product_labels(graph: HeteroData, relation: str) -> Tensor:
    """LongTensor[num_products]: one label per distinct set of nodes a product links to by
    `relation` (`made_by`, `in_category`); -1 for products without any."""
    num_products = graph["product"].num_nodes
    edge_types = [t for t in graph.edge_types if t[0] == "product" and t[1] == relation]
    if not edge_types:  # e.g. a catalogue without brands: every product unknown
        return torch.full((num_products,), -1, dtype=torch.long)
    src, dst = graph[edge_types[0]].edge_index
    linked: list[list[int]] = [[] for _ in range(num_products)]
    for p, n in zip(src.tolist(), dst.tolist(), strict=True):
        linked[p].append(n)
    ids: dict[tuple[int, ...], int] = {}
    labels = [ids.setdefault(tuple(sorted(set(n))), len(ids)) if n else -1 for n in linked]
    return torch.tensor(labels, dtype=torch.long)


class ListMetrics:
    """Per-query beyond-accuracy values of top-k lists (see the module docstring)."""

    def __init__(
        self,
        k: int,
        popularity: Tensor,
        candidates: Tensor,
        category: Tensor,
        brand: Tensor,
        category_sets: Tensor | None = None,
    ) -> None:
        """`category_sets` (`product_sets(graph, "in_category")`) adds `category_distance@k`."""
        self.k = k
        counts = popularity.float().masked_fill(~candidates, 0)
        catalogue = counts[candidates]
        n = catalogue.numel()
        # One sorted pass gives, per product, how many catalogue products are less / more popular.
        ordered = catalogue.sort().values
        less = torch.searchsorted(ordered, counts, right=False).float()
        more = n - torch.searchsorted(ordered, counts, right=True).float()
        self.percentile = (less + (n - less - more) / 2) / n
        self.tail = more >= HEAD_SHARE * n
        self.surprise = -torch.log2((counts + 1) / (catalogue.sum() + n))
        self.category, self.brand, self.category_sets = category, brand, category_sets
        self.reset()

    def reset(self) -> None:
        self._values: list[dict[str, Tensor]] = []

    def update(self, top: Tensor) -> None:
        """Add a batch of lists `top` [B, k] (product indices, best first)."""
        top = top[:, : self.k]
        k = self.k
        graded = {}
        if self.category_sets is not None:
            graded[f"category_distance@{k}"] = _jaccard_distance(self.category_sets[top])
        self._values.append(
            graded
            | {
                f"pop_percentile@{k}": self.percentile[top].mean(1),
                f"long_tail@{k}": self.tail[top].float().mean(1),
                f"ild_category@{k}": _pairwise_difference(self.category[top]),
                f"ild_brand@{k}": _pairwise_difference(self.brand[top]),
                f"novelty@{k}": self.surprise[top].mean(1),
            }
        )

    def values(self) -> dict[str, Tensor]:
        """Every query's value per metric, in `update` order (FloatTensor[Q])."""
        return {name: torch.cat([v[name] for v in self._values]) for name in self._values[0]}


class ExposureMetrics:
    """Coverage and Gini of exposure, from the top-k lists and a weight per list."""

    def __init__(self, k: int, candidates: Tensor) -> None:
        self.k, self.candidates = k, candidates
        self.reset()

    def reset(self) -> None:
        self._tops: list[Tensor] = []

    def update(self, top: Tensor) -> None:
        self._tops.append(top[:, : self.k])

    def compute(self, weights: Tensor | None = None) -> dict[str, Tensor]:
        """`coverage@k` and `gini@k`, one value per row of `weights` [R, Q] (how often each
        list counts; default: every list once, R = 1)."""
        top = torch.cat(self._tops)  # fewer than k columns where the catalogue is that small
        (num_queries, width), num_products = top.shape, self.candidates.numel()
        if weights is None:
            weights = torch.ones(1, num_queries)
        shown = torch.sparse_coo_tensor(
            torch.stack([top.flatten(), torch.arange(num_queries).repeat_interleave(width)]),
            torch.ones(top.numel()),
            (num_products, num_queries),
            check_invariants=False,  # built right here: indices in range
        )
        exposure = torch.sparse.mm(shown, weights.float().T).T[:, self.candidates]  # [R, n]
        return {
            f"coverage@{self.k}": (exposure > 0).float().mean(1),
            f"gini@{self.k}": gini(exposure),
        }


def gini(exposure: Tensor) -> Tensor:
    """Gini coefficient of each row of non-negative `exposure` [R, n]:
    sum_i (2i − n − 1) x_(i) / (n · sum x), x sorted ascending, i from 1."""
    n = exposure.size(1)
    ordered = exposure.sort(dim=1).values
    rank = torch.arange(1, n + 1, dtype=exposure.dtype)
    total = ordered.sum(1)
    return (ordered * (2 * rank - n - 1)).sum(1) / (n * total).clamp(min=math.ulp(1.0))


def _jaccard_distance(sets: Tensor) -> Tensor:
    """Per row of `sets` [B, k, C] (bool): mean Jaccard distance over the distinct pairs whose
    sets are both non-empty; NaN where a row has no such pair."""
    multi = sets.float()
    shared = multi @ multi.transpose(1, 2)
    size = multi.sum(2)
    either = size.unsqueeze(2) + size.unsqueeze(1) - shared
    known = (size > 0).unsqueeze(2) & (size > 0).unsqueeze(1)
    upper = torch.ones(sets.size(1), sets.size(1), dtype=torch.bool).triu(1)
    pairs = known & upper
    distance = (1 - shared / either.clamp(min=1)).masked_fill(~pairs, 0)
    return distance.sum((1, 2)) / pairs.sum((1, 2)).float()  # 0/0 = NaN


def _pairwise_difference(labels: Tensor) -> Tensor:
    """Per row of `labels` [B, k] (-1 = unknown): share of distinct known pairs whose labels
    differ; NaN where a row has no known pair."""
    known = labels >= 0
    pair_known = known.unsqueeze(2) & known.unsqueeze(1)
    differ = labels.unsqueeze(2) != labels.unsqueeze(1)
    upper = torch.ones(labels.size(1), labels.size(1), dtype=torch.bool).triu(1)
    pairs = (pair_known & upper).sum((1, 2)).float()
    return (pair_known & differ & upper).sum((1, 2)).float() / pairs  # 0/0 = NaN
