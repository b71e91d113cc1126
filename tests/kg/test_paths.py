"""Explanation paths: rendering, ranking, and the same answers from Neo4j and the embedded store."""

from __future__ import annotations

import pytest

from kg.catalogue import Catalogue
from kg.paths import (
    MAX_PATHS,
    Hop,
    KGView,
    Neo4jView,
    Node,
    Path,
    SnapshotView,
    explain_cypher,
    kg_view,
    text_paths,
)
from kg.schema import Category, Edge, Interaction, Product, Rel
from kg.stores import EmbeddedStore, Neo4jStore
from tests.fusion.serving.test_recommender import beauty_slice, write_slice


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


def _specificity_catalogue() -> Catalogue:
    """P1–P7: brand "tiny" on P1, P2; category "big" on P1–P5 (more than half of all products);
    category "mid" on P1, P3, P4; P5 —BOUGHT_TOGETHER→ P6; P1 and P3 —ALSO_BOUGHT→ P7; P6 and P7
    have no brand or category; shopper u1 had P4 and P6, u2 P4, P6 and P7."""
    titles = ["Purple yoga mat", "Cork block", "Foam roller", "Strap", "Ball", "Yoga strap, purple"]
    titles.append("Bag")
    products = {}
    for i, title in enumerate(titles, 1):
        cats = (["big"] if i <= 5 else []) + (["mid"] if i in (1, 3, 4) else [])
        products[f"P{i}"] = Product(
            f"P{i}", title=title, brand="tiny" if i <= 2 else None, categories=cats
        )
    return Catalogue(
        products=products,
        categories={c: Category(c, c) for c in ("big", "mid")},
        edges=[
            Edge(Rel.BOUGHT_TOGETHER, "P5", "P6"),
            Edge(Rel.ALSO_BOUGHT, "P1", "P7"),
            Edge(Rel.ALSO_BOUGHT, "P3", "P7"),
        ],
        interactions=[
            Interaction(user, product, ts=float(t))
            for t, (user, product) in enumerate(
                [("u1", "P4"), ("u1", "P6"), ("u2", "P4"), ("u2", "P6"), ("u2", "P7")]
            )
        ],
    )


def _store_for(request, tmp_path, catalogue: Catalogue):
    """`catalogue` written into the store kind named by the fixture's parameter."""
    if request.param == "embedded":
        store = EmbeddedStore(tmp_path / "graph")
    else:
        s = request.getfixturevalue("neo4j_clean")
        store = Neo4jStore(s.uri, s.user, s.password)
    store.write(catalogue)
    return store


@pytest.fixture(params=["embedded", "neo4j"])
def specific(request, tmp_path) -> tuple[KGView, Catalogue]:
    """The specificity catalogue in each kind of store, and the view over it."""
    catalogue = _specificity_catalogue()
    store = _store_for(request, tmp_path, catalogue)
    yield kg_view(store), catalogue
    store.close()


def test_the_most_specific_path_comes_first_and_a_node_most_products_share_explains_nothing(
    specific,
):
    view, catalogue = specific
    brand = view.explain(["P1"], ["P2"])["P2"]
    assert [str(p) for p in brand] == ['P1 —MADE_BY→ Brand "tiny" ←MADE_BY— P2']  # not "big"
    assert brand[0].size == 2
    both = view.explain(["P1"], ["P3"])["P3"]  # a product both were bought with, then "mid"
    assert [(p.nodes[1].id, p.size) for p in both] == [("P7", 2), ("mid", 3)]
    assert str(both[0]) == "P1 —ALSO_BOUGHT→ P7 ←ALSO_BOUGHT— P3"
    mid = view.explain(["P1"], ["P4"])["P4"]
    assert [(p.nodes[1].id, p.size) for p in mid] == [("mid", 3)]
    direct = view.explain(["P5"], ["P6"])["P6"]
    assert direct[0].size == 1 and direct[0].rels[0].type == Rel.BOUGHT_TOGETHER


@pytest.fixture(params=["embedded", "neo4j"])
def chained(request, tmp_path) -> KGView:
    """A —ALSO_BOUGHT→ B ←ALSO_VIEWED— C; A —BOUGHT_TOGETHER→ D —ALSO_VIEWED→ E —ALSO_BOUGHT→ F;
    G on its own."""
    links = [("ALSO_BOUGHT", "A", "B"), ("ALSO_VIEWED", "C", "B"), ("BOUGHT_TOGETHER", "A", "D")]
    links += [("ALSO_VIEWED", "D", "E"), ("ALSO_BOUGHT", "E", "F")]
    catalogue = Catalogue(
        products={p: Product(p, title=f"item {p}") for p in "ABCDEFG"},
        edges=[Edge(Rel(rel), src, dst) for rel, src, dst in links],
    )
    store = _store_for(request, tmp_path, catalogue)
    yield kg_view(store)
    store.close()


def test_chains_of_links_explain_what_no_shared_node_does(chained):
    found = chained.explain(["A"], ["C", "F", "G"])
    assert [str(p) for p in found["C"]] == ["A —ALSO_BOUGHT→ B ←ALSO_VIEWED— C"]
    assert [str(p) for p in found["F"]] == ["A —BOUGHT_TOGETHER→ D —ALSO_VIEWED→ E —ALSO_BOUGHT→ F"]
    assert found["C"][0].size == 2 and found["F"][0].size == 2 and found["G"] == []
    assert chained.explain(["A"], ["E"])["E"][0].nodes[1].id == "D"  # shorter first


def test_a_shopper_who_had_both_explains_without_their_id(specific):
    view, _ = specific
    (path,) = view.explain(["P4"], ["P6"])["P6"]  # u1 and u2 had both: the smaller basket
    assert str(path) == 'P4 ←INTERACTED— User "a shopper with both" —INTERACTED→ P6'
    assert path.size == 2 and "u1" not in path.model_dump_json()
    (path,) = view.explain(["P4"], ["P7"])["P7"]
    assert path.nodes[1].name == "a shopper with 3 products" and path.size == 3


def test_titles_replace_ids_and_text_reasons_fill_what_the_graph_cannot_explain(specific):
    view, catalogue = specific
    products = catalogue.products
    assert view.explain(["P1"], ["P6"])["P6"] == []  # no link, no shared brand or category
    (reason,) = view.explain(["P1"], ["P6"], products=products)["P6"]
    assert reason.kind == "text" and reason.size is None
    assert str(reason) == '"Purple yoga mat" —MENTIONS→ Words "purple, yoga" ←MENTIONS— ' + (
        '"Yoga strap, purple"'
    )
    titled = view.explain(["P1"], ["P2"], products=products)["P2"][0]
    assert str(titled) == '"Purple yoga mat" —MADE_BY→ Brand "tiny" ←MADE_BY— "Cork block"'
    assert titled.model_dump()["edges"] == [
        {"source": "P1", "target": "tiny", "type": "MADE_BY"},
        {"source": "P2", "target": "tiny", "type": "MADE_BY"},
    ]
    assert view.explain(["P4"], ["P2"], products=products)["P2"] == []  # nothing shared at all
    via = view.explain(["P1"], ["P3"], products=products)["P3"][0].nodes[1]
    assert str(via) == '"Bag"'  # a product in the middle is named by its title too


def test_the_printed_cypher_finds_the_same_graph_paths(neo4j_clean):
    store = Neo4jStore(neo4j_clean.uri, neo4j_clean.user, neo4j_clean.password)
    catalogue = _specificity_catalogue()
    catalogue.products["it's"] = Product("it's", title="quote", brand="tiny")  # quoting
    store.write(catalogue)
    with store.session() as session:

        def shared(a: str, b: str) -> set[str]:
            rows = session.run(explain_cypher(a, b)).value("p")
            return {n["id"] for path in rows for n in path.nodes} - {a, b}

        assert shared("P1", "P2") == {"tiny", "big"}  # every path; ranking happens in kgrec
        assert shared("P1", "P3") == {"P7", "big", "mid"}
        assert shared("P1", "it's") == {"tiny"}
        assert shared("P5", "P6") == set()  # a direct link has no node in between
        assert len(session.run(explain_cypher("P5", "P6")).value("p")) == 1
    store.close()


def test_cli_explain_prints_paths_and_cypher(tmp_path):
    from typer.testing import CliRunner

    from fusion.cli import app

    EmbeddedStore(tmp_path / "graph").write(_specificity_catalogue())
    store = ["--store", f"embedded:{tmp_path}/graph"]
    result = CliRunner().invoke(app, ["explain", "P1", "P2", *store])
    assert result.exit_code == 0, result.output
    assert '"Purple yoga mat" —MADE_BY→ Brand "tiny" ←MADE_BY— "Cork block"' in result.output
    assert "MATCH p = (a)-[:MADE_BY]->(:Brand)<-[:MADE_BY]-(b)" in result.output
    missing = CliRunner().invoke(app, ["explain", "P1", "nope", *store])
    assert missing.exit_code == 1 and "unknown product 'nope'" in missing.output
