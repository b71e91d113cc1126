from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from fusion.data.splits import (
    COLD_KEEPS,
    INTERACTED,
    PAIR_SHIFT,
    PRODUCT_RELS,
    Split,
    cold_start_split,
    recommend_split,
    related_split,
    rev,
)
from kg.build import build
from kg.export import to_heterodata
from kg.stores import open_store

REES46 = Path(os.environ["KGREC_DATA"]) / "rees46-2019-oct-sample" / "events-2019-10-01.csv.gz"


def _pairs(edge_index: Tensor) -> set[tuple[int, int]]:
    return set(map(tuple, edge_index.t().tolist()))


def _held_out(split: Split) -> set[tuple[int, int]]:
    """Every (query, target) pair evaluated at the validation or test stage."""
    return {
        (q, t)
        for stage in ("valid", "test")
        for q, targets in split.targets(stage).items()
        for t in targets.tolist()
    }


def _listed(d: dict[int, Tensor]) -> dict[int, list[int]]:
    return {k: v.tolist() for k, v in d.items()}


def test_recommend_leave_one_out_by_ts(tiny: HeteroData) -> None:
    split = recommend_split(tiny)
    # u0 saw 1, 3, 2, 0 (by ts); u1 saw 4, 2, 5; u2 has only 2 interactions: all training.
    assert _listed(split.test) == {0: [0], 1: [5]}
    assert _listed(split.valid) == {0: [2], 1: [2]}
    assert _listed(split.history("valid")) == {0: [1, 3], 1: [4], 2: [0, 1]}
    assert _listed(split.history("test")) == {0: [1, 3, 2], 1: [4, 2], 2: [0, 1]}
    assert _listed(split.exclusions("valid")) == {0: [1, 3], 1: [4]}
    assert _listed(split.exclusions("test")) == {0: [1, 2, 3], 1: [2, 4]}
    assert split.queries("test").tolist() == [0, 1]

    store = split.train_graph[INTERACTED]
    assert _pairs(store.edge_index) == {(0, 1), (0, 3), (1, 4), (2, 0), (2, 1)}
    assert _pairs(split.train_graph[rev(INTERACTED)].edge_index.flip(0)) == _pairs(store.edge_index)
    # Edge attributes are filtered with their edges: u0's training items kept their ts.
    ts = dict(zip(map(tuple, store.edge_index.t().tolist()), store.ts.tolist(), strict=True))
    assert (ts[0, 1], ts[0, 3]) == (0.0, 1.0)
    assert tiny[INTERACTED].num_edges == 9  # the input graph is untouched


def test_recommend_split_with_repeated_events(tiny: HeteroData) -> None:
    """A user who views, carts and buys the same items: each item is placed at its last event,
    and every event of a held-out pair leaves training, so no target is a training pair."""
    graph = copy.deepcopy(tiny)
    # u0: view 1 (t0), view 2 (t1), cart 1 (t2), view 3 (t3), view 2 (t4), buy 3 (t5), buy 3 (t6).
    events = [(0, 1, 0), (0, 2, 1), (0, 1, 2), (0, 3, 3), (0, 2, 4), (0, 3, 5), (0, 3, 6)]
    events += [(1, 4, 0), (1, 4, 1), (1, 0, 2)]  # u1: two items only, all training
    edges = torch.tensor([(u, p) for u, p, _ in events]).t()
    ts = torch.tensor([t for *_, t in events], dtype=torch.float)
    for edge_type, edge_index in ((INTERACTED, edges), (rev(INTERACTED), edges.flip(0))):
        del graph[edge_type]  # drops tiny's events and their attributes
        graph[edge_type].edge_index, graph[edge_type].ts = edge_index, ts
    split = recommend_split(graph)
    assert _listed(split.test) == {0: [3]} and _listed(split.valid) == {0: [2]}
    assert _listed(split.history("test")) == {0: [1, 2], 1: [4, 0]}
    assert _pairs(split.train_edges) == {(0, 1), (1, 4), (1, 0)}
    store = split.train_graph[INTERACTED]
    # Training keeps every event of the training pairs: both of u0's events on item 1.
    assert sorted(map(tuple, store.edge_index.t().tolist())) == [
        (0, 1), (0, 1), (1, 0), (1, 4), (1, 4)
    ]  # fmt: skip
    assert not _held_out(split) & _pairs(store.edge_index)


def test_recommend_split_on_rees46_events(tmp_path: Path) -> None:
    """REES46 (views, carts, purchases of the same items, every event kept): no held-out pair
    is trained on, while the training graph keeps repeated events."""
    uri = f"embedded:{tmp_path / 'g'}"
    build(REES46, store_uri=uri, rejects_path=tmp_path / "r.jsonl")
    with open_store(uri) as store:
        data = to_heterodata(store)
    split = recommend_split(data)
    graph = split.train_graph[INTERACTED]
    held = _held_out(split)
    assert held and not held & (_pairs(graph.edge_index) | _pairs(split.train_edges))
    assert graph.num_edges > len(_pairs(graph.edge_index))  # repeats kept for training


def test_related_split_eligibility_and_reverse(tiny: HeteroData) -> None:
    # 8 eligible edges (no self-loop (3, 3), no edge to the stub 5): round(0.8) = 1 each.
    split = related_split(tiny, "also_bought", seed=0)
    assert sum(t.numel() for t in split.test.values()) == 1
    assert sum(t.numel() for t in split.valid.values()) == 1
    held = _held_out(split)
    removed = held | {(b, a) for a, b in held}
    eligible = {(0, 1), (1, 0), (0, 2), (2, 3), (4, 2), (1, 2), (3, 0), (2, 4)}
    assert _pairs(split.train_edges) == eligible - removed
    # The message-passing graph keeps the non-eligible edges (self-loop, stub) but loses the
    # held-out pairs in both directions.
    graph = _pairs(split.train_graph["product", "also_bought", "product"].edge_index)
    assert graph == (eligible | {(3, 3), (0, 5)}) - removed
    for stage in ("valid", "test"):
        for src, excluded in split.exclusions(stage).items():
            neighbours = {b for a, b in _pairs(split.train_edges) if a == src} | {src}
            assert set(excluded.tolist()) == neighbours - set(split.targets(stage)[src].tolist())


def test_related_split_sizes_and_seed(beauty: HeteroData) -> None:
    a, b = related_split(beauty, "also_bought"), related_split(beauty, "also_bought")
    other = related_split(beauty, "also_bought", seed=1)
    edges = beauty["product", "also_bought", "product"].edge_index
    n_eligible = int((edges[0] != edges[1]).sum())  # all in catalogue, no duplicates here
    assert sum(t.numel() for t in a.test.values()) == round(0.1 * n_eligible)
    assert sum(t.numel() for t in a.valid.values()) == round(0.1 * n_eligible)
    assert _listed(a.test) == _listed(b.test)
    assert _listed(a.test) != _listed(other.test)
    test = {(q, t) for q, ts in a.test.items() for t in ts.tolist()}
    assert not test & {(q, t) for q, ts in a.valid.items() for t in ts.tolist()}


def _keys(pairs: set[tuple[int, int]]) -> Tensor:
    return torch.tensor(sorted(a * PAIR_SHIFT + b for a, b in pairs), dtype=torch.long)


def test_related_split_never_holds_out_what_a_model_trained_on(beauty: HeteroData) -> None:
    plain = related_split(beauty, "also_viewed")
    # Its own training pairs change nothing: a checkpoint's split is rebuilt exactly.
    again = related_split(beauty, "also_viewed", trained=_keys(_pairs(plain.train_edges)))
    assert _held_out(again) == _held_out(plain)
    assert _pairs(again.train_edges) == _pairs(plain.train_edges)
    # A model trained before the permutation changed (e.g. the graph grew) saw pairs that are
    # held out now: they and their reverses stay in training, the rest fills the quota.
    held = sorted(_held_out(plain))
    seen = set(held[::3]) | set(sorted(_pairs(plain.train_edges))[::2])
    warm = related_split(beauty, "also_viewed", trained=_keys(seen))
    assert not _held_out(warm) & (seen | {(b, a) for a, b in seen})
    for stage in ("valid", "test"):
        sizes = [sum(t.numel() for t in s.targets(stage).values()) for s in (plain, warm)]
        assert sizes[0] == sizes[1]
    rebuilt = related_split(beauty, "also_viewed", trained=_keys(_pairs(warm.train_edges)))
    assert _held_out(rebuilt) == _held_out(warm)


def test_cold_start(beauty: HeteroData) -> None:
    splits = {rel: cold_start_split(beauty, rel) for rel in PRODUCT_RELS}
    cold_ids = splits["also_bought"].cold
    has_edge = torch.zeros(beauty["product"].num_nodes, dtype=torch.bool)
    for rel in PRODUCT_RELS:
        edges = beauty["product", rel, "product"].edge_index
        has_edge[edges[:, edges[0] != edges[1]].flatten()] = True
    assert cold_ids.numel() == round(0.1 * int(has_edge.sum()))
    assert has_edge[cold_ids].all()
    cold = torch.zeros_like(has_edge)
    cold[cold_ids] = True

    for rel, split in splits.items():
        assert torch.equal(split.cold, cold_ids)  # the same cold products for every relation
        assert split.valid == {}
        full = _pairs(beauty["product", rel, "product"].edge_index)
        assert set(split.test) == {a for a, b in full if cold[a] and a != b}
        for q, targets in split.test.items():
            assert set(targets.tolist()) == {b for a, b in full if a == q and b != q}
    # Every product edge and interaction of a cold product goes; brand/category edges stay.
    graph = splits["also_bought"].train_graph
    for edge_type in graph.edge_types:
        src_t, name, dst_t = edge_type
        full = beauty[edge_type].edge_index
        touches = torch.zeros(full.size(1), dtype=torch.bool)
        for side, node_type in ((0, src_t), (1, dst_t)):
            if node_type == "product":
                touches |= cold[full[side]]
        kept = full if name.removeprefix("rev_") in COLD_KEEPS else full[:, ~touches]
        assert torch.equal(graph[edge_type].edge_index, kept), edge_type


LEAKAGE_CASES = (
    [("recommend", None)]
    + [("related", rel) for rel in PRODUCT_RELS]
    + [("cold_start", rel) for rel in PRODUCT_RELS]
)


@pytest.mark.parametrize(("task", "relation"), LEAKAGE_CASES)
def test_leakage(beauty: HeteroData, task: str, relation: str | None) -> None:
    """No validation or test pair is visible to training: neither among the pairs a scorer fits
    on nor in the message-passing graph (forward or `rev_` edges). For related items the reverse
    pair is hidden too; for cold start nothing but brand/category touches a cold product."""
    if task == "recommend":
        split = recommend_split(beauty)
    elif task == "related":
        split = related_split(beauty, relation)
    else:
        split = cold_start_split(beauty, relation)
    edge_type = INTERACTED if task == "recommend" else ("product", relation, "product")
    held = _held_out(split)
    assert held, "nothing held out"
    if task == "related":
        held |= {(b, a) for a, b in held}
    graph = split.train_graph

    assert not held & _pairs(split.train_edges)
    assert not held & _pairs(graph[edge_type].edge_index)
    assert not held & _pairs(graph[rev(edge_type)].edge_index.flip(0))
    if task == "cold_start":
        cold = split.cold
        for et in graph.edge_types:
            if et[1].removeprefix("rev_") in COLD_KEEPS:
                continue
            for side, node_type in ((0, et[0]), (1, et[2])):
                if node_type == "product":
                    assert not torch.isin(graph[et].edge_index[side], cold).any(), et
        assert not torch.isin(split.train_edges.flatten(), cold).any()
