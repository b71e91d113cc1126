"""Export follows the HeteroData contract of docs/design.md, and both stores export the same
graph for the same catalogue."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch_geometric.data import HeteroData

from kg.catalogue import Catalogue
from kg.cleaning import External, clean
from kg.export import INTERACTION_KINDS, load_id_maps, save_id_maps, to_heterodata
from kg.readers import read_catalogue
from kg.rejects import RejectLog
from kg.stores import EmbeddedStore, Neo4jStore

DATA = Path(os.environ["KGREC_DATA"])
MAGAZINE = DATA / "amazon-magazine-2018"
BEAUTY = DATA / "amazon-beauty-2014"


def _catalogue(
    path: Path, interactions: Path | None = None, external: External = "stub"
) -> Catalogue:
    cat = read_catalogue(path, interactions=interactions, log=RejectLog())
    clean(cat, external)
    return cat


def _export_both(cat: Catalogue, settings, tmp_path: Path) -> tuple[HeteroData, HeteroData]:
    with Neo4jStore(settings.uri, settings.user, settings.password) as neo:
        try:
            neo.write(cat)
            from_neo4j = to_heterodata(neo)
        finally:
            neo.clear()  # in memory-bounded batches, for the next test's fixture
    with EmbeddedStore(tmp_path / "graph") as embedded:
        embedded.write(cat)
        from_embedded = to_heterodata(embedded)
    return from_neo4j, from_embedded


def _assert_same(a: HeteroData, b: HeteroData) -> None:
    assert a.node_types == b.node_types and a.edge_types == b.edge_types
    for key in (*a.node_types, *a.edge_types):
        assert sorted(a[key].keys()) == sorted(b[key].keys()), key
        for name in a[key]:
            x, y = a[key][name], b[key][name]
            if isinstance(x, torch.Tensor):
                assert torch.equal(x.nan_to_num(-1), y.nan_to_num(-1)), (key, name)
            else:
                assert x == y, (key, name)


def _assert_contract(data: HeteroData) -> None:
    for nt in ("product", "brand", "category", "user"):
        ids = data[nt].node_id
        assert ids == sorted(ids) and len(set(ids)) == data[nt].num_nodes == len(ids)
    product = data["product"]
    n = product.num_nodes
    assert product.in_catalogue.dtype == torch.bool and product.in_catalogue.shape == (n,)
    assert product.price.dtype == torch.float and product.price.shape == (n,)
    assert len(product.text_fields) == n
    assert set(product.text_fields[0]) == {"title", "description", "brand", "categories"}
    assert len(data["category"].name) == data["category"].num_nodes
    assert len(data.edge_types) == 14
    for src, rel, dst in data.edge_types:
        store = data[src, rel, dst]
        ei = store.edge_index
        assert ei.dtype == torch.long and ei.shape[0] == 2
        keys = ei[0] * data[dst].num_nodes + ei[1]
        if "interacted" in rel:  # one edge per event: a pair repeats when events do
            assert bool((keys[1:] >= keys[:-1]).all()), (src, rel, dst)
        else:
            assert bool((keys[1:] > keys[:-1]).all()), (src, rel, dst)  # sorted, no repeats
        assert ei.numel() == 0 or int(ei[0].max()) < data[src].num_nodes
        reverse = rel[4:] if rel.startswith("rev_") else f"rev_{rel}"
        back = data[dst, reverse, src].edge_index
        assert sorted(zip(*back.flip(0).tolist(), strict=True)) == list(
            zip(*ei.tolist(), strict=True)
        )
    inter = data["user", "interacted", "product"]
    assert inter.rating.dtype == torch.float and inter.ts.dtype == torch.float
    assert inter.kind.dtype == torch.long and inter.session.dtype == torch.long
    assert inter.price.dtype == torch.float and inter.price.shape == inter.ts.shape
    assert int(inter.kind.max()) < len(INTERACTION_KINDS)


def test_magazine_neo4j_equals_embedded(neo4j_clean, tmp_path: Path) -> None:
    cat = _catalogue(MAGAZINE / "meta_Magazine_Subscriptions.json.gz", MAGAZINE / "ratings.csv.gz")
    data, other = _export_both(cat, neo4j_clean, tmp_path)
    _assert_same(data, other)
    _assert_contract(data)
    inside = int(data["product"].in_catalogue.sum())
    assert inside == 2320
    prices = [cat.products[pid].price for pid in data["product"].node_id]
    assert data["product"].price.isnan().tolist() == [p is None for p in prices]
    assert data["user"].num_nodes == 72_098
    # Every rating is an event: 50 users rated an item twice, differently (README).
    inter = data["user", "interacted", "product"]
    pairs = inter.edge_index[0] * data["product"].num_nodes + inter.edge_index[1]
    assert inter.num_edges - pairs.unique().numel() == 50
    rev = data["product", "rev_interacted", "user"]
    assert rev.rating.shape == rev.kind.shape == (rev.edge_index.shape[1],)

    path = save_id_maps(data, tmp_path / "ids.json")
    assert load_id_maps(path) == {nt: data[nt].node_id for nt in data.node_types}


@pytest.mark.slow
def test_beauty_neo4j_equals_embedded(neo4j_clean, tmp_path: Path) -> None:
    # Dropping the ~150k out-of-catalogue stubs keeps it to the 12k-product graph.
    data, other = _export_both(_catalogue(BEAUTY, external="drop"), neo4j_clean, tmp_path)
    _assert_same(data, other)
    _assert_contract(data)
    assert int(data["product"].in_catalogue.sum()) == 12_101
    assert data["user", "interacted", "product"].num_edges == 198_502
    assert data["product", "bought_together", "product"].num_edges == 9_021
