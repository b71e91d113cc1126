"""Fixtures for the fusion tests: contract-conforming `HeteroData` (docs/design.md) built the
way users get it — Beauty files → `kg.readers` → `kg.cleaning` → `kg.export` — and a hand-made
tiny graph for exact checks."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import pytest
import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from kg.catalogue import Catalogue
from kg.cleaning import clean
from kg.export import to_heterodata
from kg.readers import read_beauty
from kg.rejects import RejectLog
from kg.stores import Snapshot

BEAUTY = Path(os.environ["KGREC_DATA"]) / "amazon-beauty-2014"


def _sorted_edges(src: list[int], dst: list[int], num_dst: int) -> tuple[Tensor, Tensor]:
    """`edge_index` with rows sorted by (src, dst) and the permutation that sorts them."""
    edge_index = torch.tensor([src, dst], dtype=torch.long).view(2, -1)
    perm = torch.argsort(edge_index[0] * num_dst + edge_index[1], stable=True)
    return edge_index[:, perm], perm


def _add(data: HeteroData, src_t: str, rel: str, dst_t: str, pairs: set | list, **attrs) -> None:
    """Add an edge type and its `rev_` twin (same attributes), both sorted by (src, dst)."""
    src, dst = (list(x) for x in zip(*pairs, strict=True)) if pairs else ([], [])
    fwd, perm = _sorted_edges(src, dst, data[dst_t].num_nodes)
    data[src_t, rel, dst_t].edge_index = fwd
    rev, rperm = _sorted_edges(dst, src, data[src_t].num_nodes)
    data[dst_t, f"rev_{rel}", src_t].edge_index = rev
    for key, value in attrs.items():
        data[src_t, rel, dst_t][key] = value[perm]
        data[dst_t, f"rev_{rel}", src_t][key] = value[rperm]


@cache
def load_beauty(max_users: int | None = None) -> HeteroData:
    """Beauty through kg, restricted to the first `max_users` sequences, the products they
    touch and the edges among those products."""
    full = read_beauty(BEAUTY, log=RejectLog())
    clean(full, external="drop")
    users = list(dict.fromkeys(i.user for i in full.interactions))[:max_users]
    keep_users = set(users)
    interactions = [i for i in full.interactions if i.user in keep_users]
    keep = {i.product for i in interactions}
    part = Catalogue(
        products={pid: p for pid, p in full.products.items() if pid in keep},
        categories=full.categories,
        edges=[e for e in full.edges if e.src in keep and e.dst in keep],
        interactions=interactions,
    )
    return to_heterodata(Snapshot.from_catalogue(part))


def _add_interactions(data: HeteroData, inter: list[tuple[int, int, int]]) -> None:
    """User→product `interacted` edges from (user, product, ts), unrated, of the first kind."""
    _add(
        data,
        "user",
        "interacted",
        "product",
        [(u, p) for u, p, _ in inter],
        ts=torch.tensor([t for *_, t in inter], dtype=torch.float),
        rating=torch.full((len(inter),), float("nan")),
        kind=torch.zeros(len(inter), dtype=torch.long),
    )


@pytest.fixture(scope="session")
def beauty() -> HeteroData:
    """The first 1,000 Beauty users, their products and the edges among those products."""
    return load_beauty(1000)


@pytest.fixture
def tiny() -> HeteroData:
    """Hand-made graph: 3 users, 6 products (product 5 is an out-of-catalogue stub)."""
    data = HeteroData()
    data["product"].num_nodes = 6
    data["product"].node_id = [f"p{i}" for i in range(6)]
    data["product"].in_catalogue = torch.tensor([True] * 5 + [False])
    data["product"].price = torch.full((6,), float("nan"))
    data["product"].text_fields = [
        {"title": f"p{i}", "description": "", "brand": None, "categories": []} for i in range(6)
    ]
    data["brand"].num_nodes, data["brand"].node_id = 1, ["b0"]
    data["category"].num_nodes, data["category"].node_id = 1, ["c0"]
    data["category"].name = ["c0"]
    data["user"].num_nodes, data["user"].node_id = 3, ["u0", "u1", "u2"]
    ab = [(0, 1), (1, 0), (0, 2), (2, 3), (3, 3), (0, 5), (4, 2), (1, 2), (3, 0), (2, 4)]
    _add(data, "product", "also_bought", "product", ab)
    _add(data, "product", "also_viewed", "product", [(0, 3), (3, 0)])
    _add(data, "product", "bought_together", "product", [(1, 2)])
    _add(data, "product", "made_by", "brand", [(0, 0), (1, 0)])
    _add(data, "product", "in_category", "category", [(p, 0) for p in range(5)])
    # (user, product, ts): u0 saw 1, 3, 2, 0 in time order; u1 saw 4, 2, 5; u2 only 0, 1.
    inter = [(0, 0, 3), (0, 1, 0), (0, 2, 2), (0, 3, 1), (1, 4, 0), (1, 2, 1), (1, 5, 2)]
    inter += [(2, 0, 0), (2, 1, 1)]
    _add_interactions(data, inter)
    return data


@pytest.fixture
def ring() -> HeteroData:
    """Sequential toy: 240 users walk 4–8 steps round a ring of 40 products (user u starts at
    product u mod 40), so the next product is always the last one plus one and popularity is flat.
    """
    products, users = 40, 240
    data = HeteroData()
    data["product"].num_nodes = products
    data["product"].node_id = [f"p{i}" for i in range(products)]
    data["product"].in_catalogue = torch.ones(products, dtype=torch.bool)
    data["user"].num_nodes, data["user"].node_id = users, [f"u{i}" for i in range(users)]
    inter = [(u, (u + t) % products, t) for u in range(users) for t in range(4 + u % 5)]
    _add_interactions(data, inter)
    return data
