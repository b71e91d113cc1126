"""The bulk path (`neo4j-admin database import` into an empty local Neo4j) writes the graph the
Bolt path writes: same nodes, properties, relationships, events and constraints, same export."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from torch_geometric.data import HeteroData

from kg import server
from kg.build import WRITE_BOLT, WRITE_BULK, build
from kg.catalogue import Catalogue
from kg.export import to_heterodata
from kg.schema import Product, Rel
from kg.stores import Neo4jStore, Snapshot, StoreError, open_store
from kg.stores.base import GraphColumns, InteractionRow, ProductRow
from kg.stores.neo4j_import import import_columns, local_empty_target

MAGAZINE = Path(os.environ["KGREC_DATA"]) / "amazon-magazine-2018"
META = MAGAZINE / "meta_Magazine_Subscriptions.json.gz"
RATINGS = MAGAZINE / "ratings.csv.gz"


def awkward_snapshot() -> Snapshot:
    """Values a CSV file can get wrong: quotes, commas, newlines, backslashes, empty strings
    beside missing values, non-ASCII, extreme floats; and relationships to missing nodes."""
    products = [
        ProductRow("p,1", 'say "hi", then\nleave \\ ok', "", None, True),
        ProductRow('p"2', "", "multi\r\nline; desc", 0.1 + 0.2, False),
        ProductRow("p3 ünï", "  spaced  ", "tab\there", 1e-300, True),
    ]
    events = [
        InteractionRow.of("u,1", "p,1", 5.0, 1.5e9, "rating", None, None),
        InteractionRow.of("u,1", "p,1", 4.0, None, "review", 12.25, ""),
        InteractionRow.of('u"2', 'p"2', None, 1.0, "view", None, "s;1"),
        InteractionRow.of('u"2', "nope", 1.0, 2.0, "view", None, None),  # no such product
    ]
    return Snapshot(
        products=products,
        brands=['b,"x"', "plain"],
        categories=[("c1", 'Beauty, "Skin"'), ("c2", "")],
        users=["u,1", 'u"2'],
        edges={
            Rel.MADE_BY: [("p,1", 'b,"x"'), ('p"2', "plain")],
            Rel.IN_CATEGORY: [("p,1", "c1"), ("p,1", "c2"), ("p3 ünï", "c2")],
            Rel.SUBCATEGORY_OF: [("c2", "c1")],
            Rel.ALSO_BOUGHT: [("p,1", 'p"2'), ('p"2', "p,1"), ("p,1", "missing")],
            Rel.ALSO_VIEWED: [("p3 ünï", "p,1")],
            Rel.BOUGHT_TOGETHER: [],
        },
        interactions=sorted(events, key=InteractionRow.sort_key),
    )


def _schema(store: Neo4jStore) -> list[tuple]:
    with store.session() as session:
        return sorted(
            tuple(row)
            for row in session.run(
                "SHOW CONSTRAINTS YIELD name, type, entityType, labelsOrTypes, properties"
            ).values()
        )


def _assert_same_data(a: HeteroData, b: HeteroData) -> None:
    assert a.node_types == b.node_types and sorted(a.edge_types) == sorted(b.edge_types)
    for nt in a.node_types:
        assert a[nt].node_id == b[nt].node_id
    assert a["product"].text_fields == b["product"].text_fields
    assert torch.equal(a["product"].in_catalogue, b["product"].in_catalogue)
    assert torch.equal(a["product"].price.nan_to_num(-1), b["product"].price.nan_to_num(-1))
    for et in a.edge_types:
        assert set(a[et].keys()) == set(b[et].keys()), et
        for name in a[et]:
            x, y = a[et][name], b[et][name]
            assert (
                torch.equal(x.nan_to_num(-1), y.nan_to_num(-1))
                if x.is_floating_point()
                else (torch.equal(x, y))
            ), (et, name)


def test_import_writes_what_bolt_writes(neo4j_clean) -> None:
    snap = awkward_snapshot()
    with open_store(neo4j_clean.uri) as store:
        target = local_empty_target(store)
        assert target is not None, "an empty local test server takes the bulk path"
    imported = import_columns(GraphColumns.from_snapshot(snap), target, None)
    assert imported == 2 + 3 + 1 + 2 + 1 + 3  # dangling ones left out
    with open_store(neo4j_clean.uri) as store:
        assert isinstance(store, Neo4jStore)
        store.ensure_constraints()
        imported, counts, schema = store.snapshot(), store.counts(), _schema(store)
        data = to_heterodata(store)
        assert local_empty_target(store) is None  # not empty any more: Bolt from now on
        store.clear()
        assert local_empty_target(store) is not None  # kgrec's own constraints do not count
        store.write_snapshot(snap)  # the Bolt path, into the same empty database
        assert store.snapshot() == imported
        assert store.counts() == counts and _schema(store) == schema
        _assert_same_data(to_heterodata(store), data)
        store.clear()
    products = {p.id: p for p in imported.products}
    assert products["p,1"].title == 'say "hi", then\nleave \\ ok'
    assert products["p,1"].description == "" and products["p,1"].price is None
    assert products['p"2'].description == "multi\r\nline; desc"
    assert [e.session for e in imported.interactions if e.user == "u,1"] == [None, ""]


def test_build_takes_the_bulk_path_once_and_reconciles(neo4j_clean, tmp_path: Path) -> None:
    ratings = tmp_path / "ratings.csv.gz"  # the header and 5,000 rows: the Bolt re-run is slow
    with gzip.open(RATINGS, "rt") as full, gzip.open(ratings, "wt") as part:
        part.writelines(line for _, line in zip(range(5001), full, strict=False))
    reference = build(META, ratings, store_uri=f"embedded:{tmp_path / 'ref'}",
                      rejects_path=tmp_path / "ref.jsonl")  # fmt: skip
    try:
        bulk = build(META, ratings, store_uri=neo4j_clean.uri, rejects_path=tmp_path / "r.jsonl",
                     bulk=True)  # fmt: skip
        assert bulk.write == WRITE_BULK
        for name in ("nodes", "relationships", "events", "rejected", "files"):
            assert getattr(bulk, name) == getattr(reference, name), name
        with (
            open_store(neo4j_clean.uri) as store,
            open_store(f"embedded:{tmp_path / 'ref'}") as ref,
        ):
            assert store.snapshot() == ref.snapshot()
        again = build(META, ratings, store_uri=neo4j_clean.uri, rejects_path=tmp_path / "r.jsonl")
        assert again.write == WRITE_BOLT  # not empty: upserts over the imported graph
        assert (again.nodes, again.relationships) == (reference.nodes, reference.relationships)
    finally:
        with open_store(neo4j_clean.uri) as store:
            store.clear()


def test_embedded_and_opted_out_builds_keep_their_path(neo4j_clean, tmp_path: Path) -> None:
    meta = Path(__file__).parent.parent / "fixtures" / "meta_2023.jsonl"
    embedded = build(meta, store_uri=f"embedded:{tmp_path / 'g'}", rejects_path=tmp_path / "r")
    assert embedded.write == "embedded"
    try:
        auto = build(meta, store_uri=neo4j_clean.uri, rejects_path=tmp_path / "r")  # small
        bolt = build(meta, store_uri=neo4j_clean.uri, rejects_path=tmp_path / "r", bulk=False)
        assert auto.write == bolt.write == WRITE_BOLT
        assert auto.relationships == bolt.relationships == embedded.relationships
    finally:
        with open_store(neo4j_clean.uri) as store:
            store.clear()


def test_a_cut_off_import_is_imported_over(neo4j_clean, tmp_path: Path) -> None:
    """A kill between the server's stop and the import's end leaves the marker: the next build
    imports over the partial database (with the server down), whatever the catalogue's size,
    and never while the cut-off import's processes still run."""
    meta = Path(__file__).parent.parent / "fixtures" / "meta_2023.jsonl"
    ref = f"embedded:{tmp_path / 'ref'}"
    build(meta, store_uri=ref, rejects_path=tmp_path / "r")
    with open_store(neo4j_clean.uri) as store:
        config = local_empty_target(store)
        assert config is not None
        store.write(Catalogue(products={"half": Product("half")}))  # what the kill left
    finished = subprocess.Popen(["true"])
    finished.wait()  # a process gone, as after a kill -9
    config.unfinished_import.write_text(json.dumps({"pids": [finished.pid]}))
    server.stop(config)
    try:
        with pytest.raises(StoreError, match="cut off"):
            build(meta, store_uri=neo4j_clean.uri, rejects_path=tmp_path / "r", bulk=False)
        again = build(meta, store_uri=neo4j_clean.uri, rejects_path=tmp_path / "r")  # small
        assert again.write == WRITE_BULK and not config.unfinished_import.exists()
        with open_store(neo4j_clean.uri) as store, open_store(ref) as reference:
            assert store.snapshot() == reference.snapshot()  # "half" is gone
        config.unfinished_import.write_text(json.dumps({"pids": [os.getpid()]}))
        with pytest.raises(StoreError, match="is running"):
            build(meta, store_uri=neo4j_clean.uri, rejects_path=tmp_path / "r")
        assert server.status(config).cut_off_import
    finally:
        config.unfinished_import.unlink(missing_ok=True)
        with open_store(neo4j_clean.uri) as store:
            store.clear()
