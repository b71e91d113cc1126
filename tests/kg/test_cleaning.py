"""Cleaning: HTML stripping, category hierarchy, edge/interaction de-duplication and external
references, on small hand-made catalogues and on the two shipped datasets."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from kg.catalogue import Catalogue
from kg.cleaning import CleaningReport, clean
from kg.readers import read_amazon2018, read_catalogue
from kg.rejects import RejectLog
from kg.schema import Edge, Interaction, Product, Rel
from kg.text import strip_html

DATA = Path(os.environ["KGREC_DATA"])
MAGAZINE = DATA / "amazon-magazine-2018"
FIXTURES = Path(__file__).parent.parent / "fixtures"


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        ('<span class="a-size-medium a-color-secondary"', ""),  # tag cut off at the end
        (' Magazines" />', ""),  # tag cut off at the start
        ("\n\n\n<script", ""),
        ("<script>var x = 1;</script>Hello", "Hello"),
        ("Disney &amp; Me", "Disney & Me"),
        ("Kirk&amp;#39;s Soap", "Kirk's Soap"),  # escaped twice in the source
        ("line<br/>break  and <i>italics</i>", "line break and italics"),
        ("&lt;b&gt; is shown", "<b> is shown"),
        ("3 > 2", "3 > 2"),
        # Control and bidi characters: removed, the whitespace ones become spaces.
        ("Safe\u202egnp.exe", "Safegnp.exe"),
        ("a\x00b\x1b[31m", "ab[31m"),
        ("left\u2066right\u2069 \x7f", "leftright"),
        ("one\rtwo\x0bthree\tfour", "one two three four"),
        ("&#x202E;hidden&#0;", "hidden\ufffd"),  # an entity for one is removed too
    ],
)
def test_strip_html(raw, text):
    assert strip_html(raw) == text


def small_catalogue() -> Catalogue:
    products = {
        "a": Product("a", title="<b>A</b> &amp; co", categories=["Home &amp; Garden > Tools"]),
        "b": Product("b", title="B", categories=["Home & Garden > Tools", "Home & Garden"]),
    }
    edges = [
        Edge(Rel.ALSO_BOUGHT, "a", "b"),
        Edge(Rel.ALSO_BOUGHT, "a", "b"),  # repeat
        Edge(Rel.ALSO_VIEWED, "a", "b"),  # other relation: kept
        Edge(Rel.ALSO_BOUGHT, "b", "a"),  # reverse direction: kept
        Edge(Rel.ALSO_BOUGHT, "a", "a"),  # self-loop
        Edge(Rel.ALSO_VIEWED, "b", "x"),  # outside the catalogue
    ]
    interactions = [
        Interaction("u1", "a", 5.0),
        Interaction("u1", "a", 1.0),  # another rating of the same item: an event, kept
        Interaction("u1", "a", 5.0),  # exact repeat of the first: dropped
        Interaction("u1", "a", None, 10.0, "view"),
        Interaction("u1", "a", None, 20.0, "view"),  # another view later: kept
        Interaction("u2", "y", 4.0),  # outside the catalogue
    ]
    return Catalogue(products=products, edges=edges, interactions=interactions)


def test_clean_small_catalogue_with_stubs():
    catalogue = small_catalogue()
    report = clean(catalogue)
    assert report == CleaningReport(
        external="stub",
        texts_changed=1,
        categories=2,
        self_loops=1,
        duplicate_edges=1,
        duplicate_interactions=1,
        external_products=2,
        external_edges=1,
        external_interactions=1,
        stubs_added=2,
    )
    assert catalogue.products["a"].title == "A & co"
    # `&amp;` and `&` spellings meet in one node; every prefix is a node.
    tools = "Home & Garden > Tools"
    assert catalogue.products["a"].categories == [tools]
    assert catalogue.products["b"].categories == [tools, "Home & Garden"]
    assert catalogue.categories[tools].name == "Tools"
    assert catalogue.categories[tools].parent == "Home & Garden"
    assert catalogue.categories["Home & Garden"].parent is None
    assert len(catalogue.edges) == 4
    assert [i.rating for i in catalogue.interactions if i.kind == "rating"] == [5.0, 1.0, 4.0]
    assert not catalogue.products["x"].in_catalogue and not catalogue.products["y"].in_catalogue


def test_clean_drop_mode_and_idempotence():
    catalogue = small_catalogue()
    report = clean(catalogue, external="drop")
    assert (report.external_edges, report.external_interactions, report.stubs_added) == (1, 1, 0)
    assert set(catalogue.products) == {"a", "b"}
    assert all(e.dst in {"a", "b"} for e in catalogue.edges)
    assert len(catalogue.interactions) == 4
    again = clean(catalogue, external="drop")
    assert again == CleaningReport(external="drop", categories=2)

    with pytest.raises(ValueError, match="external"):
        clean(catalogue, external="keep")  # type: ignore[arg-type]


def test_clean_counts_reader_merges():
    catalogue = read_amazon2018(FIXTURES / "meta_2018_bad.jsonl", RejectLog())
    report = clean(catalogue, external="drop")
    assert report.duplicate_products == 1
    assert report.empty_titles == 4  # the four real lines' titles are HTML fragments only
    # Line 1 links to itself and is repeated on line 8, whose other 6 edges are repeats.
    assert report.self_loops == 2 and report.duplicate_edges == 6
    assert catalogue.products["B0GOOD0001"].title == "Good & Proper Magazine"


def test_titles_lose_control_characters_and_count_as_changed():
    catalogue = Catalogue(
        products={
            "a": Product("a", title="Nice\u202e\x00 Soap", brand="Ac\u2067me"),
            "b": Product("b", title="Plain"),
        }
    )
    report = clean(catalogue)
    assert catalogue.products["a"].title == "Nice Soap"
    assert catalogue.products["a"].brand == "Acme"
    assert report.texts_changed == 1


@pytest.fixture(scope="module")
def magazine():
    catalogue = read_catalogue(
        MAGAZINE / "meta_Magazine_Subscriptions.json.gz",
        interactions=MAGAZINE / "ratings.csv.gz",
        log=RejectLog(strict=True),
    )
    return catalogue, clean(catalogue, external="drop")


def test_magazine_cleaned(magazine):
    catalogue, report = magazine
    assert report.duplicate_products == 1065
    assert len(catalogue.products) == 2320
    # Broken HTML-fragment titles are emptied; most of those products keep a description.
    empty = [p for p in catalogue.products.values() if not p.title]
    assert report.empty_titles == len(empty) == 2173
    assert sum(1 for p in empty if p.description) == 1932
    assert not any("<" in p.title or "&amp;" in p.title for p in catalogue.products.values())
    # README pairs: in-catalogue, directed, distinct, no self-loops.
    edges = Counter(e.rel for e in catalogue.edges)
    assert edges == {Rel.ALSO_BOUGHT: 6449, Rel.ALSO_VIEWED: 8649}
    assert report.self_loops == 0
    # README: 16,614 referenced ids, 15,884 outside; ratings add 108 more items not in the
    # metadata (2,428 rated, 2,320 described), one of which is also a related-product target.
    assert report.external_products == 15_884 + 107
    # README: 50 repeated (user, item) pairs, each with another rating: events, not duplicates.
    assert report.duplicate_interactions == 0
    assert len(catalogue.interactions) + report.external_interactions == 88_368
    # Unescaping merges `&amp;`/`&` spellings: raw 947 brands and 312 category paths
    # (227 names) become 942 brands and 190 nodes (178 names).
    assert len(catalogue.brands) == 942
    assert report.categories == len(catalogue.categories) == 190
    assert len({c.name for c in catalogue.categories.values()}) == 178
    for category in catalogue.categories.values():
        assert category.parent is None or category.parent in catalogue.categories
        assert category.id.endswith(category.name)


def test_beauty_cleaned():
    catalogue = read_catalogue(DATA / "amazon-beauty-2014", log=RejectLog(strict=True))
    report = clean(catalogue, external="stub")
    products = catalogue.products
    inside = Counter(e.rel for e in catalogue.edges if products[e.dst].in_catalogue)
    # README: 239,345 also_bought edges land in the catalogue; one of them is a self-loop.
    assert report.self_loops == 1 and report.duplicate_edges == 0
    assert inside == {Rel.ALSO_BOUGHT: 239_344, Rel.ALSO_VIEWED: 155_350, Rel.BOUGHT_TOGETHER: 9021}
    assert report.external_edges == 891_182 - 239_345
    assert report.stubs_added == report.external_products
    assert sum(p.in_catalogue for p in products.values()) == 12_101
    assert report.empty_titles == 7
    assert report.duplicate_interactions == report.external_interactions == 0
    assert len(catalogue.interactions) == 198_502
    texts = [p.title for p in products.values()] + list(catalogue.brands)
    assert not any("&#39;" in t or "&amp;" in t for t in texts)
