"""Make a raw catalogue (as readers return it) consistent before it is stored.

`clean` works in place and returns a `CleaningReport`; every row it drops or rewrites is
counted there, nothing goes silently. Steps, in order:
- text: titles, descriptions, brands and category names lose HTML tags and entities, whitespace
  is collapsed (a title that was only an HTML fragment becomes empty and is counted);
- categories: each root->leaf path becomes a chain of `Category` nodes (id = path joined by
  `CATEGORY_PATH_SEP`, name = leaf, parent = prefix path); categories a reader already defined
  (set-style sources such as Beauty) are kept as they are;
- edges: self-loops and repeated (rel, src, dst) edges are dropped;
- interactions: exact duplicates (every field equal: user, product, kind, ts, rating, price,
  session) are dropped, the first kept; any other repeat of a (user, product) pair is an event
  of its own and stays (a view, then a cart, then a purchase; a second, different rating);
- external references: an edge or interaction naming a product outside the catalogue either
  gets a stub `Product(id, in_catalogue=False)` (`external="stub"`) or is dropped ("drop").

Duplicate product rows are merged by the reader (a catalogue holds one product per id);
their count is carried over from `ReadCatalogue.duplicate_products`. Bad rows were already
rejected by the readers, so cleaning takes no `RejectLog`: its drops are counts, not rejects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kg.errors import InvalidArgumentError
from kg.readers.base import ReadCatalogue, gc_paused
from kg.schema import CATEGORY_PATH_SEP, Catalogue, Category, Edge, Interaction, Product
from kg.text import strip_html

External = Literal["stub", "drop"]


@dataclass
class CleaningReport:
    external: External  # what happened to references outside the catalogue
    duplicate_products: int = 0  # product rows merged into an id already read
    conflicting_products: int = 0  # of those, rows whose differing values were dropped
    texts_changed: int = 0  # products whose title/description/brand lost HTML or entities
    empty_titles: int = 0  # catalogue products without a title after cleaning
    categories: int = 0  # category nodes after building the hierarchy
    self_loops: int = 0  # product edges with src == dst, dropped
    duplicate_edges: int = 0  # repeated (rel, src, dst), dropped
    duplicate_interactions: int = 0  # exact duplicate events (all fields equal), dropped
    external_products: int = 0  # distinct referenced ids that are not catalogue products
    external_edges: int = 0  # edges touching one of them: kept via stubs, or dropped
    external_interactions: int = 0  # interactions naming one of them: kept, or dropped
    stubs_added: int = 0  # stub products added (0 with external="drop")


@gc_paused
def clean(catalogue: Catalogue, external: External = "stub") -> CleaningReport:
    """Clean `catalogue` in place (see the module docstring) and report what changed."""
    if external not in ("stub", "drop"):
        raise InvalidArgumentError(f"external must be 'stub' or 'drop', not {external!r}")
    report = CleaningReport(external)
    if isinstance(catalogue, ReadCatalogue):
        report.duplicate_products = catalogue.duplicate_products
        report.conflicting_products = catalogue.conflicting_products
    _clean_texts(catalogue, report)
    _build_hierarchy(catalogue)
    report.categories = len(catalogue.categories)
    catalogue.edges = _dedupe_edges(catalogue.edges, report)
    catalogue.interactions = _dedupe_interactions(catalogue.interactions, report)
    _resolve_external(catalogue, report)
    return report


def _clean_texts(catalogue: Catalogue, report: CleaningReport) -> None:
    for product in catalogue.products.values():
        before = (product.title, product.description, product.brand)
        product.title = strip_html(product.title)
        product.description = strip_html(product.description)
        product.brand = strip_html(product.brand or "") or None
        report.texts_changed += before != (product.title, product.description, product.brand)
        report.empty_titles += product.in_catalogue and not product.title


def _build_hierarchy(catalogue: Catalogue) -> None:
    categories = catalogue.categories
    defined = set(categories)  # set-style categories from the reader: ids are names
    cleaned: dict[str, str] = {}  # raw path -> category id, each raw path worked out once

    def node(raw: str) -> str:
        if raw in defined:
            return raw
        if raw not in cleaned:
            parts = [p for p in (strip_html(p) for p in raw.split(CATEGORY_PATH_SEP)) if p]
            for depth, name in enumerate(parts, 1):
                path = CATEGORY_PATH_SEP.join(parts[:depth])
                parent = CATEGORY_PATH_SEP.join(parts[: depth - 1]) or None
                categories.setdefault(path, Category(path, name, parent))
            cleaned[raw] = CATEGORY_PATH_SEP.join(parts)
        return cleaned[raw]

    for product in catalogue.products.values():
        ids = (node(raw) for raw in product.categories)
        product.categories = list(dict.fromkeys(c for c in ids if c))


def _dedupe_edges(edges: list[Edge], report: CleaningReport) -> list[Edge]:
    seen: set[tuple[str, str, str]] = set()
    kept = []
    for edge in edges:
        key = (edge.rel, edge.src, edge.dst)  # tuples hash in C, the dataclass in Python
        if edge.src == edge.dst:
            report.self_loops += 1
        elif key in seen:
            report.duplicate_edges += 1
        else:
            seen.add(key)
            kept.append(edge)
    return kept


def _dedupe_interactions(
    interactions: list[Interaction], report: CleaningReport
) -> list[Interaction]:
    seen: set[tuple] = set()
    kept = []
    for i in interactions:
        key = (i.user, i.product, i.kind, i.ts, i.rating, i.price, i.session)
        if key in seen:
            report.duplicate_interactions += 1
        else:
            seen.add(key)
            kept.append(i)
    return kept


def _resolve_external(catalogue: Catalogue, report: CleaningReport) -> None:
    products = catalogue.products
    inside = {pid for pid, p in products.items() if p.in_catalogue}
    edges = [e for e in catalogue.edges if e.src not in inside or e.dst not in inside]
    interactions = [i for i in catalogue.interactions if i.product not in inside]
    outside = {pid for e in edges for pid in (e.src, e.dst)} | {i.product for i in interactions}
    outside -= inside
    report.external_edges = len(edges)
    report.external_interactions = len(interactions)
    report.external_products = len(outside)
    if report.external == "drop":
        catalogue.edges = [e for e in catalogue.edges if e.src in inside and e.dst in inside]
        catalogue.interactions = [i for i in catalogue.interactions if i.product in inside]
        return
    new = outside - products.keys()  # stubs from an earlier clean are there already
    products.update((pid, Product(pid, in_catalogue=False)) for pid in new)
    report.stubs_added = len(new)
