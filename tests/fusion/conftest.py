"""Fixtures for the fusion tests: a contract-conforming `HeteroData` (docs/design.md) built
straight from the Beauty files, so these tests do not depend on `kg.readers`/`kg.export`."""

from __future__ import annotations

import csv
import gzip
import html
import json
from functools import cache
from pathlib import Path

import pytest
import torch
from torch import Tensor
from torch_geometric.data import HeteroData

BEAUTY = Path("/work/shared/data/amazon-beauty-2014")
PP_FILES = {
    "also_bought": "also_bought_p_p.txt.gz",
    "also_viewed": "also_viewed_p_p.txt.gz",
    "bought_together": "bought_together_p_p.txt.gz",
}


def _lines(name: str) -> list[str]:
    with gzip.open(BEAUTY / name, "rt", encoding="utf-8") as f:
        return f.read().splitlines()


def _json(name: str) -> dict:
    with gzip.open(BEAUTY / name, "rt", encoding="utf-8") as f:
        return json.load(f)


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
    """Beauty as the HeteroData contract describes it, restricted to the first `max_users`
    sequences, the products they touch and the edges among those products."""
    asins = _lines("product.txt.gz")
    related = _lines("related_product.txt.gz")
    maps = _json("datamaps.json.gz")
    seqs = [line.split() for line in _lines("sequential_data.txt.gz")][:max_users]

    products = sorted({maps["id2item"][i] for s in seqs for i in s[1:]})
    users = sorted(maps["id2user"][s[0]] for s in seqs)
    pidx = {a: i for i, a in enumerate(products)}
    uidx = {u: i for i, u in enumerate(users)}

    title_int = _json("title_item_id_to_int.json.gz")
    with gzip.open(BEAUTY / "titles.csv.gz", "rt", encoding="utf-8") as f:
        names = {int(row["global_product_id"]): row["name"] for row in csv.DictReader(f)}
    brand_names = [html.unescape(b) for b in _lines("brand.txt.gz")]
    cat_names = _lines("category.txt.gz")
    brand_of = _lines("brand_p_b.txt.gz")
    cats_of = _lines("category_p_c.txt.gz")
    line_of = {a: p for p, a in enumerate(asins)}

    fields = []
    for a in products:
        p = line_of[a]
        fields.append(
            {
                "title": html.unescape(names.get(title_int[a], "")),
                "description": "",
                "brand": brand_names[int(brand_of[p])] if brand_of[p] else None,
                "categories": [cat_names[int(c)] for c in cats_of[p].split()],
            }
        )
    brands = sorted({f["brand"] for f in fields if f["brand"]})
    cats = sorted({c for f in fields for c in f["categories"]})

    data = HeteroData()
    n = len(products)
    data["product"].num_nodes = n
    data["product"].node_id = products
    data["product"].in_catalogue = torch.ones(n, dtype=torch.bool)
    data["product"].price = torch.full((n,), float("nan"))
    data["product"].text_fields = fields
    data["brand"].num_nodes, data["brand"].node_id = len(brands), brands
    data["category"].num_nodes, data["category"].node_id = len(cats), cats
    data["category"].name = cats
    data["user"].num_nodes, data["user"].node_id = len(users), users

    bidx = {b: i for i, b in enumerate(brands)}
    cidx = {c: i for i, c in enumerate(cats)}
    for rel, name in PP_FILES.items():
        targets = _lines(name)
        pairs = {
            (pidx[a], pidx[related[int(r)]])
            for a in products
            for r in targets[line_of[a]].split()
            if related[int(r)] in pidx
        }
        _add(data, "product", rel, "product", pairs)
    _add(
        data,
        "product",
        "made_by",
        "brand",
        [(i, bidx[f["brand"]]) for i, f in enumerate(fields) if f["brand"]],
    )
    _add(
        data,
        "product",
        "in_category",
        "category",
        [(i, cidx[c]) for i, f in enumerate(fields) for c in f["categories"]],
    )
    _add(data, "category", "subcategory_of", "category", [])  # Beauty categories are flat sets

    # No timestamps in Beauty: the position in the user's sequence is the time.
    inter = [
        (uidx[maps["id2user"][s[0]]], pidx[maps["id2item"][i]], t)
        for s in seqs
        for t, i in enumerate(s[1:])
    ]
    m = len(inter)
    _add(
        data,
        "user",
        "interacted",
        "product",
        [(u, p) for u, p, _ in inter],
        rating=torch.full((m,), float("nan")),
        ts=torch.tensor([t for *_, t in inter], dtype=torch.float),
        kind=torch.zeros(m, dtype=torch.long),
    )
    return data


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
    return data
