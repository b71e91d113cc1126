"""Which Product→Product relations a model sees: the crawled lists (also_bought, also_viewed,
bought_together), links derived from interactions (co_purchase, co_view), both, or neither.

Derived links are computed from the graph they are applied to. Applied to a split's training
graph (`fusion.data.graph.make_split`), that graph holds the training interactions only — the
held-out ones were removed by the split — so no held-out interaction creates a derived edge
(`tests/fusion/data/test_sideinfo.py::test_derived_links_never_see_held_out_interactions`).
Serving applies the same choice to the store's whole current graph: after training every
interaction is history.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from fusion.data.splits import INTERACTED, PAIR_SHIFT, PRODUCT_RELS, rev
from kg.errors import InvalidArgumentError, MissingDataError
from kg.export import INTERACTION_KINDS

log = logging.getLogger(__name__)

# Derived relation → the interaction kinds that count for it. co_purchase: every kind that is a
# purchase or stands for one (a rating, a review, a position in a purchase sequence).
DERIVED_KINDS: dict[str, tuple[str, ...]] = {
    "co_purchase": ("purchase", "rating", "review", "sequence"),
    "co_view": ("view",),
}
# A derived link's source keeps its most frequent partners only: a heavy user's hundreds of
# items would otherwise link everything to everything, and mean aggregation would blur.
MAX_DERIVED_NEIGHBOURS = 20


def with_side_information(
    graph: HeteroData,
    relations: Sequence[str] | None = None,
    derive: Sequence[str] = (),
    keep: Sequence[str] = (),
) -> HeteroData:
    """A copy of `graph` whose crawled Product→Product relations are `relations` (None: all of
    them; the others leave the graph with their `rev_` twins) plus the `derive`d ones, computed
    from `graph`'s own interactions. `keep`: relations that stay whatever `relations` says (the
    relation a related-items model learns). `graph` itself is not changed."""
    if relations is None and not derive:
        return graph
    out = copy.copy(graph)
    if relations is not None:
        chosen = set(relations) | set(keep)
        for rel in PRODUCT_RELS:
            if rel in chosen:
                continue
            for edge_type in (("product", rel, "product"), rev(("product", rel, "product"))):
                if edge_type in out.edge_types:
                    del out[edge_type]
    for name in derive:
        out["product", name, "product"].edge_index = derived_links(graph, name)
        log.info(f"derived {name}: {out['product', name, 'product'].num_edges:,} directed links")
    return out


def derived_links(
    graph: HeteroData, name: str, max_neighbours: int = MAX_DERIVED_NEIGHBOURS
) -> Tensor:
    """[2, E] symmetric links between distinct products that one user interacted with (kinds of
    `DERIVED_KINDS[name]`) in `graph`, each product keeping its `max_neighbours` partners shared
    by the most users (ties: lower index first), both directions of a kept link included."""
    if name not in DERIVED_KINDS:
        raise InvalidArgumentError(f"unknown derived relation {name!r}; known: {DERIVED_KINDS}")
    store = graph[INTERACTED] if INTERACTED in graph.edge_types else None
    if store is None or store.num_edges == 0:
        raise MissingDataError(f"deriving {name} needs interactions; the graph has none")
    codes = torch.tensor([INTERACTION_KINDS.index(k) for k in DERIVED_KINDS[name]])
    kinds = store.get("kind")
    counted = (
        torch.ones(store.num_edges, dtype=torch.bool) if kinds is None else torch.isin(kinds, codes)
    )
    if not bool(counted.any()):
        raise MissingDataError(
            f"deriving {name} needs {'/'.join(DERIVED_KINDS[name])} events; the graph has none"
        )
    users, items = store.edge_index[:, counted]
    pairs = torch.unique(users * PAIR_SHIFT + items)  # each (user, product) once, sorted
    users, items = pairs // PAIR_SHIFT, pairs % PAIR_SHIFT
    co = _co_occurrences(users, items)
    return _strongest(co, max_neighbours)


def _co_occurrences(users: Tensor, items: Tensor) -> Tensor:
    """Sorted keys `a * PAIR_SHIFT + b` of every ordered pair a != b of one user's products,
    once per user that has both (so a key's multiplicity = users sharing the pair)."""
    _, counts = torch.unique_consecutive(users, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    keys = []
    # Users grouped by list length: one [n_users, L, L] block per length, no Python per user.
    for length in counts.unique().tolist():
        if length < 2:
            continue
        rows = starts[counts == length].unsqueeze(1) + torch.arange(length)  # [U, L]
        block = items[rows]
        a, b = block.unsqueeze(2).expand(-1, -1, length), block.unsqueeze(1).expand(-1, length, -1)
        off_diagonal = ~torch.eye(length, dtype=torch.bool).expand_as(a)
        keys.append(a[off_diagonal] * PAIR_SHIFT + b[off_diagonal])
    return torch.cat(keys).sort().values if keys else torch.empty(0, dtype=torch.long)


def _strongest(keys: Tensor, max_neighbours: int) -> Tensor:
    """From repeated pair keys, each source's `max_neighbours` most repeated partners, made
    symmetric; [2, E] sorted by (source, target)."""
    if not keys.numel():
        return torch.empty(2, 0, dtype=torch.long)
    pair, count = torch.unique_consecutive(keys, return_counts=True)
    src, dst = pair // PAIR_SHIFT, pair % PAIR_SHIFT
    # Order by (src, count desc, dst): stable sorts from the least significant key.
    order = torch.argsort(-count, stable=True)
    order = order[torch.argsort(src[order], stable=True)]
    src, dst = src[order], dst[order]
    first = torch.searchsorted(src, src)  # the position where each source's run starts
    top = (torch.arange(src.numel()) - first) < max_neighbours
    both = torch.cat([src[top] * PAIR_SHIFT + dst[top], dst[top] * PAIR_SHIFT + src[top]])
    kept = torch.unique(both)
    return torch.stack([kept // PAIR_SHIFT, kept % PAIR_SHIFT])
