"""Reasons beyond graph links: rare shared words and the nearest shared category ancestor,
sized over the catalogue and ranked among the graph paths."""

from __future__ import annotations

from kg.catalogue import Catalogue
from kg.paths import kg_view
from kg.reasons import ReasonIndex, ancestors
from kg.schema import Product
from kg.stores import EmbeddedStore

ARTS = "Magazines > Trade > Arts"


def _catalogue() -> dict[str, Product]:
    """Six products of brand "Big" (every one: explains nothing); "crochet" in two titles,
    "monthly" in five; categories under "Magazines > Trade > Arts" for two of them."""
    titles = ["Crochet monthly", "Crochet world monthly", "Golf monthly", "Tennis monthly"]
    titles += ["Cars monthly", "Boats"]
    cats = [[f"{ARTS} > Photo"], [f"{ARTS} > Music"], ["Magazines > Sport"], ["Magazines > Sport"]]
    cats += [["Magazines > Motor"], ["Magazines > Motor"]]
    return {
        f"P{i}": Product(f"P{i}", title=t, brand="Big", categories=c)
        for i, (t, c) in enumerate(zip(titles, cats, strict=True))
    } | {"stub": Product("stub", in_catalogue=False)}


def test_ancestors_run_from_the_leaf_to_the_root():
    assert ancestors("A > B > C") == ["A > B > C", "A > B", "A"]


def test_the_rarest_shared_word_and_the_smallest_shared_ancestor_size_the_reasons():
    products = _catalogue()
    index = ReasonIndex(products.values())
    assert index.total == 6  # stubs have nothing to share
    shared = index.shared_words(products["P0"], products["P1"])
    assert shared.words == ["crochet"] and shared.size == 2  # "monthly" is in 5 of 6: dropped
    assert index.shared_words(products["P2"], products["P5"]) is None
    assert index.shared_ancestor(products["P0"], products["P1"]) == (2, ARTS)
    assert index.shared_ancestor(products["P2"], products["P3"]) is None  # same category
    assert index.shared_ancestor(products["P0"], products["P2"]) is None  # only the root


def test_sized_reasons_rank_among_graph_paths_and_unsized_ones_only_fill_gaps(tmp_path):
    products = _catalogue()
    store = EmbeddedStore(tmp_path / "graph")
    store.write(Catalogue(products=products))
    view = kg_view(store)
    ranked = view.explain(["P0"], ["P1"], products=products, reasons=ReasonIndex(products.values()))
    assert [(p.kind, p.size) for p in ranked["P1"]] == [("text", 2), ("category", 2)]
    assert str(ranked["P1"][1]) == (
        '"Crochet monthly" —UNDER→ Category "Arts" ←UNDER— "Crochet world monthly"'
    )
    (gap,) = view.explain(["P0"], ["P1"], products=products)["P1"]  # no catalogue counts
    assert gap.kind == "text" and gap.size is None
