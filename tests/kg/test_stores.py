"""One contract suite, run against both stores: what is written is what is read back, writes
are idempotent upserts, every interaction event is kept (exact duplicates once), and only
allow-listed labels and relationship types reach Neo4j."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kg.catalogue import Catalogue
from kg.schema import Category, Edge, Interaction, Label, Product, Rel
from kg.stores import EmbeddedStore, Neo4jStore, Snapshot, Store, StoreError, open_store
from kg.stores.base import InteractionRow


def small_catalogue() -> Catalogue:
    cat = Catalogue()
    for p in (
        Product("p1", "Lipstick", "Red", "acme", ["Beauty > Lips"], 9.5),
        Product("p2", "Gloss", "", None, ["Beauty"]),
        Product("p3", "Mascara", "Black", "acme", ["Beauty", "Beauty > Lips"], 12.0),
        Product("s1", in_catalogue=False),
    ):
        cat.products[p.id] = p
    cat.categories = {
        "Beauty": Category("Beauty", "Beauty"),
        "Beauty > Lips": Category("Beauty > Lips", "Lips", parent="Beauty"),
    }
    cat.edges = [
        Edge(Rel.ALSO_BOUGHT, "p1", "p2"),
        Edge(Rel.ALSO_BOUGHT, "p1", "p2"),  # repeated: one relationship
        Edge(Rel.ALSO_BOUGHT, "p1", "p3"),
        Edge(Rel.ALSO_VIEWED, "p2", "s1"),
        Edge(Rel.BOUGHT_TOGETHER, "p3", "p1"),
    ]
    cat.interactions = [
        Interaction("u1", "p1", 5.0, 10.0),
        Interaction("u1", "p1", 4.0, 20.0),  # same pair, another event: kept
        Interaction("u1", "p1", 4.0, 20.0),  # exact duplicate: stored once
        Interaction("u2", "s1", None, 1, "view", 2.5, "sess-1"),
        Interaction("u2", "p3", 3.0, None, "review"),
    ]
    return cat


EXPECTED = {
    "nodes": {"Product": 4, "Brand": 1, "Category": 2, "User": 2},
    "relationships": {
        "MADE_BY": 2,
        "IN_CATEGORY": 4,
        "SUBCATEGORY_OF": 1,
        "ALSO_BOUGHT": 2,
        "ALSO_VIEWED": 1,
        "BOUGHT_TOGETHER": 1,
        "INTERACTED": 4,
    },
}


@pytest.fixture(params=["embedded", "neo4j"])
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[Store]:
    if request.param == "embedded":
        opened: Store = EmbeddedStore(tmp_path / "graph")
    else:
        settings = request.getfixturevalue("neo4j_clean")
        opened = Neo4jStore(settings.uri, settings.user, settings.password)
    with opened:
        yield opened


def test_write_reads_back(store: Store) -> None:
    cat = small_catalogue()
    store.write(cat)
    assert store.counts() == EXPECTED
    snap = store.snapshot()
    assert snap == Snapshot.from_catalogue(cat)
    assert [(r.rating, r.ts) for r in snap.interactions[:2]] == [(5.0, 10.0), (4.0, 20.0)]
    assert snap.interactions[3] == InteractionRow.of("u2", "s1", None, 1, "view", 2.5, "sess-1")
    assert snap.products[-1] == ("s1", "", "", None, False)


def test_rewrite_is_idempotent_and_upserts(store: Store) -> None:
    cat = small_catalogue()
    store.write(cat)
    store.write(cat)
    assert store.counts() == EXPECTED
    cat.products["p2"].title = "Lip gloss"
    cat.interactions.append(Interaction("u2", "p3", 1.0, 5.0, "rating"))  # a new event
    store.write(cat)
    counts = store.counts()
    assert counts["relationships"].pop("INTERACTED") == 5
    assert counts["relationships"] == {
        k: v for k, v in EXPECTED["relationships"].items() if k != "INTERACTED"
    }
    assert store.snapshot() == Snapshot.from_catalogue(cat)


def test_dangling_relationships_are_skipped(store: Store) -> None:
    cat = small_catalogue()
    cat.edges.append(Edge(Rel.ALSO_VIEWED, "p1", "nowhere"))
    cat.interactions.append(Interaction("u3", "nowhere"))
    store.write(cat)
    counts = store.counts()
    assert counts["relationships"] == EXPECTED["relationships"]
    assert counts["nodes"]["User"] == 3  # the user node exists, its interaction does not


def test_queries(store: Store) -> None:
    store.write(small_catalogue())
    assert store.neighbours("p1") == {
        "ALSO_BOUGHT": ["p2", "p3"],
        "ALSO_VIEWED": [],
        "BOUGHT_TOGETHER": [],
    }
    assert store.neighbours("missing") == {
        rel: [] for rel in ("ALSO_BOUGHT", "ALSO_VIEWED", "BOUGHT_TOGETHER")
    }
    found = store.get_products(["p3", "s1", "missing"])
    assert found == {
        "p3": Product("p3", "Mascara", "Black", "acme", ["Beauty", "Beauty > Lips"], 12.0),
        "s1": Product("s1", in_catalogue=False),
    }


def test_clear_and_progress(store: Store) -> None:
    steps: dict[str, tuple[int, int]] = {}
    store.write(small_catalogue(), lambda step, done, total: steps.update({step: (done, total)}))
    assert steps["INTERACTED"] == (4, 4) and steps["Product"] == (4, 4)
    store.clear()
    counts = store.counts()
    assert not any(counts["nodes"].values()) and not any(counts["relationships"].values())


def test_unlink_and_remove_products(store: Store) -> None:
    store.write(small_catalogue())
    store.unlink_products(["p3", "missing"], [Rel.MADE_BY, Rel.IN_CATEGORY])
    assert store.get_products(["p3"])["p3"] == Product("p3", "Mascara", "Black", None, [], 12.0)
    assert store.neighbours("p3")["BOUGHT_TOGETHER"] == ["p1"]  # other relations stay
    assert store.remove_products(["p1", "p3", "missing"]) == 2
    assert store.remove_products(["p1"]) == 0  # idempotent
    counts = store.counts()
    # Users, brands and categories stay; every relationship touching p1 or p3 is gone.
    assert counts["nodes"] == {"Product": 2, "Brand": 1, "Category": 2, "User": 2}
    assert counts["relationships"] == {
        "MADE_BY": 0,
        "IN_CATEGORY": 1,
        "SUBCATEGORY_OF": 1,
        "ALSO_BOUGHT": 0,
        "ALSO_VIEWED": 1,
        "BOUGHT_TOGETHER": 0,
        "INTERACTED": 1,
    }
    assert [row[:5] for row in store.snapshot().interactions] == [("u2", "s1", None, 1.0, "view")]


def test_embedded_persists(tmp_path) -> None:
    path = tmp_path / "graph"
    with EmbeddedStore(path) as first:
        first.write(small_catalogue())
    with open_store(f"embedded:{path}") as again:
        assert again.counts() == EXPECTED
        assert again.snapshot() == Snapshot.from_catalogue(small_catalogue())


def test_neo4j_uses_only_schema_labels_and_constraints(neo4j_clean) -> None:
    with Neo4jStore(neo4j_clean.uri, neo4j_clean.user, neo4j_clean.password) as store:
        store.write(small_catalogue())
        labels = {r[0] for r in store._read("CALL db.labels()")}
        types = {r[0] for r in store._read("CALL db.relationshipTypes()")}
        constraints = store._read(
            "SHOW CONSTRAINTS YIELD labelsOrTypes, properties, type "
            "RETURN type, labelsOrTypes[0], properties"
        )
    assert labels == {str(label) for label in Label}
    assert types == {str(rel) for rel in Rel}
    assert sorted(constraints) == sorted(
        [["UNIQUENESS", str(label), ["id"]] for label in Label]
        + [["RELATIONSHIP_UNIQUENESS", "INTERACTED", ["key"]]]
    )


@pytest.mark.parametrize("uri", ["http://localhost:7474", "embedded:", "bolt://127.0.0.1:1"])
def test_open_store_rejects_bad_uris(uri: str) -> None:
    with pytest.raises(StoreError, match="embedded:PATH|127.0.0.1:1"):
        open_store(uri)


def test_neo4j_events_without_keys_get_them(neo4j_clean) -> None:
    """Events stored by earlier versions (one per pair, no key) are keyed on the next write,
    so writing the same events again adds nothing."""
    with Neo4jStore(neo4j_clean.uri, neo4j_clean.user, neo4j_clean.password) as store:
        cat = small_catalogue()
        store.write(cat)
        store._read("MATCH ()-[r:INTERACTED]->() REMOVE r.key")
        store._read("DROP CONSTRAINT kgrec_interacted_key")
        store.write(cat)
        assert store.counts() == EXPECTED
        assert store.snapshot() == Snapshot.from_catalogue(cat)
