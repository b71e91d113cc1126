"""Leakage-free evaluation splits (docs/design.md, "fusion: splits, models, evaluation"; the
binding protocol is in the data README, "Evaluation protocols").

A split carries the training graph (held-out edges removed from message passing, `rev_` edges
too), the training pairs a scorer may fit on, and per stage the query → targets and
query → excluded-items maps that the metrics need. Nothing a scorer sees at fit time contains a
validation or test pair; `tests/fusion/test_splits.py::test_leakage` checks exactly that.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from kg.schema import PRODUCT_RELATIONS

Stage = Literal["valid", "test"]
Task = Literal["recommend", "related", "cold_start"]

INTERACTED = ("user", "interacted", "product")
PRODUCT_RELS: tuple[str, ...] = tuple(r.value.lower() for r in PRODUCT_RELATIONS)
# A cold product is served from text + brand/category alone, so it keeps these edges.
COLD_KEEPS = frozenset({"made_by", "in_category"})
PAIR_SHIFT = 1 << 32  # > any node count, so src * PAIR_SHIFT + dst identifies a pair


@dataclass
class Split:
    """One task's split. Queries are user indices (recommend) or product indices (related,
    cold start); targets and exclusions are product indices."""

    task: Task
    relation: str  # "interacted" or the Product→Product relation evaluated
    train_graph: HeteroData
    train_edges: Tensor  # [2, E] (query, product) pairs a scorer may fit on
    targets_by_stage: dict[str, dict[int, Tensor]]
    exclusions_by_stage: dict[str, dict[int, Tensor]]

    @property
    def num_products(self) -> int:
        return self.train_graph["product"].num_nodes

    @property
    def candidates(self) -> Tensor:
        """BoolTensor[num_products]: rankable products (stubs outside the catalogue are not)."""
        return self.train_graph["product"].in_catalogue

    @property
    def valid(self) -> dict[int, Tensor]:
        return self.targets_by_stage["valid"]

    @property
    def test(self) -> dict[int, Tensor]:
        return self.targets_by_stage["test"]

    def targets(self, stage: Stage) -> dict[int, Tensor]:
        return self.targets_by_stage[stage]

    def exclusions(self, stage: Stage, mask_history: bool = True) -> dict[int, Tensor]:
        """Per query, the product indices to mask before ranking (never one of its targets).
        Without `mask_history` only the query product itself (its own history stays rankable:
        the convention of evaluations that do not mask)."""
        if mask_history:
            return self.exclusions_by_stage[stage]
        return {q: _exclude(self._itself(q), t) for q, t in self.targets(stage).items()}

    def _itself(self, query: int) -> Tensor:
        return torch.tensor([query])

    def queries(self, stage: Stage) -> Tensor:
        """Sorted LongTensor of the queries that have targets at `stage`."""
        return torch.tensor(sorted(self.targets_by_stage[stage]), dtype=torch.long)

    def sample_queries(self, stage: Stage, limit: int, seed: int = 0) -> Tensor:
        """A fixed random subset of `stage`'s queries, sorted (all of them when fewer than
        `limit`): cheap per-epoch validation whose noise does not change between epochs."""
        queries = self.queries(stage)
        if queries.numel() <= limit:
            return queries
        perm = torch.randperm(queries.numel(), generator=torch.Generator().manual_seed(seed))
        return queries[perm[:limit]].sort().values


@dataclass
class RecSplit(Split):
    histories: dict[str, dict[int, Tensor]]

    def _itself(self, query: int) -> Tensor:
        return torch.empty(0, dtype=torch.long)  # a user is not a product

    def history(self, stage: Stage) -> dict[int, Tensor]:
        """Per user, the items seen before `stage`'s target, in time order: the training items,
        plus the validation item at test time."""
        return self.histories[stage]


@dataclass
class ColdSplit(Split):
    cold: Tensor  # sorted indices of the cold products (the same for every relation)


def rev(edge_type: tuple[str, str, str]) -> tuple[str, str, str]:
    src, rel, dst = edge_type
    return dst, f"rev_{rel}", src


def recommend_split(data: HeteroData) -> RecSplit:
    """Leave-one-out by `ts` over the items a user interacted with, each placed at its last
    event: the last item is the test target, the one before the validation target; users with
    fewer than 3 items keep everything in training. Every event of a held-out (user, item) pair
    leaves training (a view then a purchase of the test item is one target, never a training
    pair); the training graph keeps every event of the other pairs."""
    num_users = data["user"].num_nodes
    users, items = _by_user_and_time(data)
    counts = torch.bincount(users, minlength=num_users)
    from_end = torch.cumsum(counts, 0)[users] - torch.arange(users.numel())  # 1 = user's last
    eligible = counts[users] >= 3
    is_test, is_valid = eligible & (from_end == 1), eligible & (from_end == 2)
    train = ~(is_test | is_valid)

    held = torch.stack([users[~train], items[~train]])
    seen = {"valid": train, "test": train | is_valid}  # what a user has seen before the stage
    train_hist = _group(users[train], items[train], keep_order=True)
    valid, test = _group(users[is_valid], items[is_valid]), _group(users[is_test], items[is_test])
    histories = {
        "valid": train_hist,
        # Anyone with a validation item has >= 1 training item, hence a training history.
        "test": {u: torch.cat([h, valid.get(u, h[:0])]) for u, h in train_hist.items()},
    }
    return RecSplit(
        task="recommend",
        relation="interacted",
        train_graph=_drop_pairs(data, INTERACTED, held),
        train_edges=torch.stack([users[train], items[train]]),
        targets_by_stage={"valid": valid, "test": test},
        exclusions_by_stage={
            stage: _exclusions(users[seen[stage]], items[seen[stage]], targets)
            for stage, targets in (("valid", valid), ("test", test))
        },
        histories=histories,
    )


def user_histories(data: HeteroData) -> dict[int, Tensor]:
    """Every user's interacted products, each once, in the order of their last event (all of
    them: for serving, not training)."""
    return _group(*_by_user_and_time(data), keep_order=True)


def time_split(
    data: HeteroData,
    valid_from: float | None = None,
    test_from: float | None = None,
    frac: float = 0.1,
) -> RecSplit:
    """Global cut by timestamp, for data with real time: interactions before `valid_from`
    train, those in [`valid_from`, `test_from`) are validation targets, those from `test_from`
    test targets (default cuts: the last `frac` of the interactions is test, the `frac` before
    it validation). A query is a user with a history before the stage's window; users first
    seen later are cold and not queried, products first seen later are cold (rankable, with no
    training interactions). A stage's targets are the user's distinct products in its window;
    exclusions and histories are what the user had before it (at test: + the validation
    window), as in `recommend_split`. Training drops interactions by time, not by pair, so a
    product bought again later keeps its earlier purchase."""
    store = data[INTERACTED]
    missing = int(store.ts.isnan().sum())
    if missing:
        raise ValueError(f"a time split needs a timestamp on every interaction; {missing} lack one")
    order = _time_order(data)
    (users, items), ts = store.edge_index[:, order], store.ts[order]
    if valid_from is None or test_from is None:
        cuts = torch.quantile(ts.double(), torch.tensor([1 - 2 * frac, 1 - frac]).double())
        valid_from = cuts[0].item() if valid_from is None else valid_from
        test_from = cuts[1].item() if test_from is None else test_from
    if valid_from > test_from:
        raise ValueError(f"validation cut {valid_from} is after the test cut {test_from}")
    train = ts < valid_from
    window = {"valid": ~train & (ts < test_from), "test": ts >= test_from}
    seen = {"valid": train, "test": ts < test_from}
    histories = {s: _group(users[m], items[m], keep_order=True) for s, m in seen.items()}
    targets = {
        stage: {
            u: t.unique() for u, t in _group(users[w], items[w]).items() if u in histories[stage]
        }
        for stage, w in window.items()
    }
    graph = copy.copy(data)
    for edge_type in (INTERACTED, rev(INTERACTED)):
        if edge_type in graph.edge_types:
            _keep_edges(graph, edge_type, graph[edge_type].ts < valid_from)
    return RecSplit(
        task="recommend",
        relation="interacted",
        train_graph=graph,
        train_edges=torch.stack([users[train], items[train]]),
        targets_by_stage=targets,
        exclusions_by_stage={
            stage: _exclusions(users[seen[stage]], items[seen[stage]], targets[stage])
            for stage in ("valid", "test")
        },
        histories=histories,
    )


def _by_user_and_time(data: HeteroData) -> Tensor:
    """Distinct interacted (user, product) pairs ordered by (user, ts of the pair's last
    event); the stable sorts break ts ties by (user, product), deterministically."""
    store = data[INTERACTED]
    keys, inverse = torch.unique(
        store.edge_index[0] * PAIR_SHIFT + store.edge_index[1], return_inverse=True
    )
    last = torch.full((keys.numel(),), -torch.inf).scatter_reduce(
        0, inverse, store.ts, reduce="amax", include_self=False
    )
    pairs = torch.stack([keys // PAIR_SHIFT, keys % PAIR_SHIFT])
    order = torch.argsort(last, stable=True)
    order = order[torch.argsort(pairs[0, order], stable=True)]
    return pairs[:, order]


def _time_order(data: HeteroData) -> Tensor:
    """The order of the interaction events by (user, ts); the stable sorts break ts ties by
    edge order, deterministically."""
    store = data[INTERACTED]
    order = torch.argsort(store.ts, stable=True)
    return order[torch.argsort(store.edge_index[0, order], stable=True)]


def related_split(
    data: HeteroData,
    relation: str,
    seed: int = 0,
    frac: float = 0.1,
    trained: Tensor | None = None,
) -> Split:
    """Hold out `frac` of the relation's in-catalogue, non-self-loop directed edges as test and
    `frac` as validation (seeded permutation); the reverse of a held-out pair leaves training
    too. Exclusions: the source's training neighbours in the relation, and the source.

    `trained` (sorted pair keys, `src * PAIR_SHIFT + dst`): pairs a model was already trained
    on, e.g. before the graph grew and the permutation changed. Neither they nor their
    reverses are held out; the permutation skips them. For a model trained on this very split
    that changes nothing (everything it trained on comes after the held-out pairs), so
    rebuilding the split from a checkpoint's record gives the split it was trained on."""
    edge_type = ("product", relation, "product")
    edges = _eligible(data, relation)
    perm = torch.randperm(edges.size(1), generator=torch.Generator().manual_seed(seed))
    n = round(frac * edges.size(1))
    if trained is not None and trained.numel():
        seen = torch.stack([trained // PAIR_SHIFT, trained % PAIR_SHIFT])
        perm = perm[~(_isin_pairs(edges, seen) | _isin_pairs(edges.flip(0), seen))[perm]]
    test, valid = edges[:, perm[:n]], edges[:, perm[n : 2 * n]]
    held = torch.cat([test, valid], dim=1)
    hidden = torch.cat([held, held.flip(0)], dim=1)  # held-out pairs and their reverses
    train = edges[:, ~_isin_pairs(edges, hidden)]

    neighbours = _group(*train)
    targets = {"valid": _group(*valid), "test": _group(*test)}
    return Split(
        task="related",
        relation=relation,
        train_graph=_drop_pairs(data, edge_type, hidden),
        train_edges=train,
        targets_by_stage=targets,
        exclusions_by_stage={
            stage: {s: _exclude(_with_self(neighbours, s), t) for s, t in by_src.items()}
            for stage, by_src in targets.items()
        },
    )


def cold_start_split(
    data: HeteroData, relation: str, seed: int = 0, frac: float = 0.1
) -> ColdSplit:
    """`frac` of the products with any in-catalogue Product→Product edge (either direction, any
    relation) go cold: they lose every Product→Product edge and interaction in training but keep
    `made_by`/`in_category`. Test targets: a cold product's in-catalogue out-neighbours in
    `relation`. The cold set depends only on `data` and `seed`, so it is the same for every
    relation. There is no validation stage (its queries would have to go cold too)."""
    pp = {
        rel: _eligible(data, rel)
        for rel in PRODUCT_RELS
        if ("product", rel, "product") in data.edge_types
    }
    has_edge = torch.zeros(data["product"].num_nodes, dtype=torch.bool)
    for edges in pp.values():
        has_edge[edges.flatten()] = True
    pool = has_edge.nonzero().view(-1)
    perm = torch.randperm(pool.numel(), generator=torch.Generator().manual_seed(seed))
    cold = torch.zeros_like(has_edge)
    cold[pool[perm[: round(frac * pool.numel())]]] = True

    graph = copy.copy(data)
    for edge_type in graph.edge_types:
        src_t, rel, dst_t = edge_type
        if rel.removeprefix("rev_") in COLD_KEEPS:
            continue
        src, dst = graph[edge_type].edge_index
        touches = torch.zeros_like(src, dtype=torch.bool)
        if src_t == "product":
            touches |= cold[src]
        if dst_t == "product":
            touches |= cold[dst]
        _keep_edges(graph, edge_type, ~touches)

    edges = pp[relation]
    test = _group(*edges[:, cold[edges[0]]])
    return ColdSplit(
        task="cold_start",
        relation=relation,
        train_graph=graph,
        train_edges=edges[:, ~(cold[edges[0]] | cold[edges[1]])],
        targets_by_stage={"valid": {}, "test": test},
        exclusions_by_stage={
            "valid": {},
            "test": {s: _exclude(torch.tensor([s]), t) for s, t in test.items()},
        },
        cold=cold.nonzero().view(-1),
    )


def _eligible(data: HeteroData, relation: str) -> Tensor:
    """The relation's distinct directed edges between in-catalogue products, no self-loops."""
    src, dst = data["product", relation, "product"].edge_index
    in_cat = data["product"].in_catalogue
    keep = in_cat[src] & in_cat[dst] & (src != dst)
    keys = torch.unique(src[keep] * PAIR_SHIFT + dst[keep])  # sorted (src, dst), deduplicated
    return torch.stack([keys // PAIR_SHIFT, keys % PAIR_SHIFT])


def _isin_pairs(pairs: Tensor, other: Tensor) -> Tensor:
    """Which columns of `pairs` ([2, E]) occur among the columns of `other`."""
    keys = pairs[0] * PAIR_SHIFT + pairs[1]
    table = (other[0] * PAIR_SHIFT + other[1]).sort().values
    # searchsorted on the sorted table: much faster than torch.isin for int64 keys on CPU
    pos = torch.searchsorted(table, keys).clamp(max=max(table.numel() - 1, 0))
    return (table[pos] == keys) if table.numel() else torch.zeros_like(keys, dtype=torch.bool)


def _keep_edges(graph: HeteroData, edge_type: tuple[str, str, str], keep: Tensor) -> None:
    """Filter an edge type, attributes (`rating`, `ts`, …) included. Assigns new tensors, so a
    shallow `copy.copy` of the graph can be filtered without touching the original."""
    store = graph[edge_type]
    num_edges = store.num_edges
    for key, value in list(store.items()):
        if key == "edge_index":
            store[key] = value[:, keep]
        elif isinstance(value, Tensor) and value.size(0) == num_edges:
            store[key] = value[keep]


def _drop_pairs(data: HeteroData, edge_type: tuple[str, str, str], pairs: Tensor) -> HeteroData:
    """A copy of `data` without the given (src, dst) pairs in `edge_type` and their mirrors in
    its `rev_` type. Matching is by pair, so repeated interactions leave together."""
    graph = copy.copy(data)
    _keep_edges(graph, edge_type, ~_isin_pairs(graph[edge_type].edge_index, pairs))
    reverse = rev(edge_type)
    if reverse in graph.edge_types:
        _keep_edges(graph, reverse, ~_isin_pairs(graph[reverse].edge_index.flip(0), pairs))
    return graph


def _group(src: Tensor, dst: Tensor, keep_order: bool = False) -> dict[int, Tensor]:
    """{src: dst values}; sorted dst unless `keep_order` (then in the given order)."""
    order = torch.argsort(src, stable=True)
    src, dst = src[order], dst[order]
    keys, counts = torch.unique_consecutive(src, return_counts=True)
    return {
        k: d if keep_order else d.sort().values
        for k, d in zip(keys.tolist(), dst.split(counts.tolist()), strict=True)
    }


def _exclusions(queries: Tensor, items: Tensor, targets: dict[int, Tensor]) -> dict[int, Tensor]:
    """`_exclude` for every query with targets at once: its distinct `items` (paired with
    `queries`) that are not among its targets, sorted."""
    with_targets = torch.tensor(list(targets), dtype=torch.long)
    lengths = torch.tensor([t.numel() for t in targets.values()], dtype=torch.long)
    target_items = torch.cat([*targets.values(), torch.empty(0, dtype=torch.long)])
    target_keys = torch.repeat_interleave(with_targets, lengths) * PAIR_SHIFT + target_items
    keys = torch.unique(queries * PAIR_SHIFT + items)  # sorted by (query, item)
    keep = torch.isin(keys // PAIR_SHIFT, with_targets) & ~torch.isin(keys, target_keys)
    grouped = _group(keys[keep] // PAIR_SHIFT, keys[keep] % PAIR_SHIFT, keep_order=True)
    return {q: grouped.get(q, torch.empty(0, dtype=torch.long)) for q in targets}


def _with_self(neighbours: dict[int, Tensor], src: int) -> Tensor:
    return torch.cat([neighbours.get(src, torch.empty(0, dtype=torch.long)), torch.tensor([src])])


def _exclude(items: Tensor, targets: Tensor) -> Tensor:
    """Targets are never masked: a repeated item stays rankable as a target."""
    return torch.unique(items[~torch.isin(items, targets)])
