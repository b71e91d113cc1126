"""Explanation paths: rendering, ranking, and the same answers from Neo4j and the embedded store."""

from __future__ import annotations

import pytest
from tests.fusion.serving.test_recommender import beauty_slice, write_slice

from kg.paths import MAX_PATHS, Hop, Neo4jView, Node, Path, SnapshotView, text_paths
from kg.schema import Catalogue, Product, Rel
from kg.stores import EmbeddedStore, Neo4jStore


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return beauty_slice()


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> SnapshotView:
    store = EmbeddedStore(tmp_path_factory.mktemp("graph"))
    write_slice(store)
    return SnapshotView(store)


@pytest.fixture
def neo4j_view(neo4j_clean) -> Neo4jView:
    store = Neo4jStore(neo4j_clean.uri, neo4j_clean.user, neo4j_clean.password)
    write_slice(store)
    yield Neo4jView(store)
    store.close()


def test_paths_render_with_arrows_in_the_relationship_direction():
    path = Path(
        nodes=[
            Node(label="Product", id="P1"),
            Node(label="Brand", id="maybelline", name="Maybelline"),
            Node(label="Product", id="P2"),
        ],
        rels=[Hop(type="MADE_BY", forward=True), Hop(type="MADE_BY", forward=False)],
    )
    assert str(path) == 'P1 —MADE_BY→ Brand "Maybelline" ←MADE_BY— P2'
    assert Path.model_validate_json(path.model_dump_json()) == path


def test_a_direct_relation_comes_before_shared_brand_or_category(embedded, catalogue):
    edge = next(e for e in catalogue.edges if e.rel == Rel.BOUGHT_TOGETHER and e.src != e.dst)
    paths = embedded.explain([edge.src], [edge.dst])[edge.dst]
    assert 1 <= len(paths) <= MAX_PATHS
    first = paths[0]
    assert [n.id for n in first.nodes] == [edge.src, edge.dst]
    assert first.rels[0].type == Rel.BOUGHT_TOGETHER and first.rels[0].forward


def test_shared_brand_paths_go_through_the_brand(embedded, catalogue):
    by_brand: dict[str, list[str]] = {}
    for p in catalogue.products.values():
        if p.brand:
            by_brand.setdefault(p.brand, []).append(p.id)
    brand, (a, b, *_) = next((k, v) for k, v in by_brand.items() if len(v) > 2)
    paths = embedded.explain([a], [b])[b]
    made_by = [p for p in paths if p.rels[0].type == Rel.MADE_BY]
    assert made_by and made_by[0].nodes[1] == Node(label="Brand", id=brand, name=brand)
    assert str(made_by[0]) == f'{a} —MADE_BY→ Brand "{brand}" ←MADE_BY— {b}'


def test_user_paths_start_at_the_user(embedded, catalogue):
    user = sorted(catalogue.users)[0]
    items = embedded.user_items(user)
    assert items == [
        i.product for i in sorted(catalogue.interactions, key=lambda i: i.ts) if i.user == user
    ]
    others = [pid for pid in sorted(catalogue.products) if pid not in items][:20]
    paths = embedded.explain(items, others, user_id=user)
    assert any(paths.values())
    for result, found in paths.items():
        for path in found:
            assert path.nodes[0] == Node(label="User", id=user)
            assert path.nodes[1].id in items and path.nodes[-1].id == result
    assert embedded.user_items("nobody") is None


def test_search_hits_are_explained_by_the_brand_or_category_named_in_the_text():
    product = Product("P1", brand="NYX", categories=["Makeup", "Lips"])
    rendered = [str(p) for p in text_paths("nyx matte lipstick for lips", product)]
    assert rendered == ['P1 —MADE_BY→ Brand "NYX"', 'P1 —IN_CATEGORY→ Category "Lips"']
    assert text_paths("shampoo", product) == []


def test_neo4j_gives_the_same_explanations_as_the_embedded_store(neo4j_view, embedded, catalogue):
    ids = sorted(catalogue.products)
    for query in ids[:40:4]:
        results = ids[1::37]
        assert neo4j_view.explain([query], results) == embedded.explain([query], results)
    for user in sorted(catalogue.users)[:5]:
        items = embedded.user_items(user)
        assert neo4j_view.user_items(user) == items
        results = ids[::29]
        assert neo4j_view.explain(items, results, user) == embedded.explain(items, results, user)
    assert neo4j_view.user_items("nobody") is None
