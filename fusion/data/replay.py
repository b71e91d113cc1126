"""Sliding window + replay for warm starts: the training targets that are new since a checkpoint
(the window) and a random sample of the older ones (the replay, redrawn every epoch), so that
continuing training on new behaviour does not forget the old.

A checkpoint records the training pairs it was fitted on by id — (user, product) for
recommendations, (source, target) products for related items — as a multiset. Ids rather than
indices, because new users and products shift the indices; pairs rather than a time cut, because
timestamps tie (day resolution: a new interaction may sort before an old one); a multiset, so the
n-th occurrence of a repeated pair is new when fewer than n were trained.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from fusion.data.splits import PAIR_SHIFT, Split

Trained = dict[str, list[str]]  # query id -> product ids, one entry per trained occurrence


def query_type(split: Split) -> str:
    return "user" if split.task in ("recommend", "rank") else "product"


def trained_pairs(split: Split) -> Trained:
    """The split's training pairs by id: what a model fitted on it has seen."""
    queries = split.train_graph[query_type(split)].node_id
    products = split.train_graph["product"].node_id
    out: Trained = {}
    for q, p in split.train_edges.t().tolist():
        out.setdefault(queries[q], []).append(products[p])
    return out


def is_new(queries: Tensor, products: Tensor, trained: Trained, split: Split) -> Tensor:
    """Which (query, product) rows — in training order — are beyond what `trained` covers: the
    k-th occurrence of a pair is new when the record holds fewer than k of it."""
    keys = queries * PAIR_SHIFT + products
    seen_keys, seen_counts = _seen(trained, split)
    if not seen_keys.numel():
        return torch.ones_like(keys, dtype=torch.bool)
    pos = torch.searchsorted(seen_keys, keys).clamp(max=seen_keys.numel() - 1)
    seen = torch.where(seen_keys[pos] == keys, seen_counts[pos], 0)
    return occurrence(keys) >= seen


def occurrence(keys: Tensor) -> Tensor:
    """For each element, how many equal keys come before it (0 for the first)."""
    order = torch.argsort(keys, stable=True)
    _, counts = torch.unique_consecutive(keys[order], return_counts=True)
    starts = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    out = torch.empty_like(keys)
    out[order] = torch.arange(keys.numel()) - starts
    return out


class ReplaySampler:
    """The training rows of one epoch: every new row, plus a fresh random sample of `ratio` ×
    as many old ones (all of them when there are fewer). Redrawn each epoch, so a few warm
    epochs replay most of the old rows instead of one fixed subset again and again. A cold
    start (every row new) trains on every row."""

    def __init__(self, new: Tensor, ratio: float) -> None:
        self.fresh, self.old = new.nonzero().view(-1), (~new).nonzero().view(-1)
        self.replayed = min(self.old.numel(), round(ratio * self.fresh.numel()))

    @property
    def window(self) -> int:
        return self.fresh.numel()

    def __len__(self) -> int:
        return self.window + self.replayed

    def draw(self, gen: torch.Generator) -> Tensor:
        """This epoch's rows, shuffled."""
        old = self.old[torch.randperm(self.old.numel(), generator=gen)[: self.replayed]]
        rows = torch.cat([self.fresh, old])
        return rows[torch.randperm(rows.numel(), generator=gen)]


def trained_keys(trained: Trained, graph: HeteroData, query_type: str) -> Tensor:
    """The record's distinct pairs as sorted keys (`query * PAIR_SHIFT + product`) in `graph`'s
    index space (`fusion.data.splits.related_split` keeps them out of validation and test)."""
    return torch.unique(_keys(trained, graph, query_type))


def _seen(trained: Trained, split: Split) -> tuple[Tensor, Tensor]:
    """The record in the split's index space: sorted unique pair keys and their counts."""
    return torch.unique(_keys(trained, split.train_graph, query_type(split)), return_counts=True)


def _keys(trained: Trained, graph: HeteroData, query_type: str) -> Tensor:
    """One key per recorded pair occurrence; ids the graph no longer holds (removed products)
    are skipped."""
    q_index = {id_: i for i, id_ in enumerate(graph[query_type].node_id)}
    p_index = {id_: i for i, id_ in enumerate(graph["product"].node_id)}
    keys = [
        q_index[q] * PAIR_SHIFT + p_index[p]
        for q, products in trained.items()
        if q in q_index
        for p in products
        if p in p_index
    ]
    return torch.tensor(keys, dtype=torch.long)
