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

import numpy as np

from kg.catalogue import Catalogue, EdgeTable, EventTable
from kg.errors import InvalidArgumentError
from kg.readers.base import ReadCatalogue, gc_paused
from kg.schema import CATEGORY_PATH_SEP, Category, Product
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


def _dedupe_edges(edges: EdgeTable, report: CleaningReport) -> EdgeTable:
    rel, src, dst = edges.columns()
    loops = src == dst
    report.self_loops += int(loops.sum())
    rows = np.flatnonzero(~loops)
    ids = max(len(edges.ids), 1)
    key = (rel[rows].astype(np.int64) * ids + src[rows]) * ids + dst[rows]
    first = rows[np.unique(key, return_index=True)[1]]  # first occurrence of each (rel, src, dst)
    report.duplicate_edges += len(rows) - len(first)
    keep = np.zeros(len(edges), dtype=bool)
    keep[first] = True
    return edges.select(keep)


def _dedupe_interactions(events: EventTable, report: CleaningReport) -> EventTable:
    columns = events.columns()
    # Every field as an int64 key (floats by their bits: NaN is one value, "none"); a stable
    # sort puts equal rows together in their order, so each group's first row is kept.
    keys = [columns[name].astype(np.int64) for name in ("user", "product", "kind", "session")]
    keys += [columns[name].view(np.int64) for name in ("rating", "ts", "price")]
    order = np.lexsort(keys[::-1])
    ordered = [key[order] for key in keys]
    repeat = np.zeros(len(order), dtype=bool)  # equal, field by field, to the row before
    repeat[1:] = np.logical_and.reduce([key[1:] == key[:-1] for key in ordered])
    keep = np.ones(len(events), dtype=bool)
    keep[order[repeat]] = False
    report.duplicate_interactions += int(repeat.sum())
    return events.select(keep)


def _inside(ids: list[str], inside: set[str]) -> np.ndarray:
    return np.fromiter((name in inside for name in ids), dtype=bool, count=len(ids))


def _resolve_external(catalogue: Catalogue, report: CleaningReport) -> None:
    products = catalogue.products
    inside = {pid for pid, p in products.items() if p.in_catalogue}
    edges, events = catalogue.edges, catalogue.interactions
    _, src, dst = edges.columns()
    linked = _inside(edges.ids.names, inside)
    edges_in = linked[src] & linked[dst]
    bought = events.columns()["product"]
    named = _inside(events.ids["product"].names, inside)
    events_in = named[bought]
    ends = np.concatenate([src, dst])
    outside = {edges.ids.names[c] for c in np.unique(ends[~linked[ends]])}
    outside |= {events.ids["product"].names[c] for c in np.unique(bought[~events_in])}
    report.external_edges = int((~edges_in).sum())
    report.external_interactions = int((~events_in).sum())
    report.external_products = len(outside)
    if report.external == "drop":
        catalogue.edges = edges.select(edges_in)
        catalogue.interactions = events.select(events_in)
        return
    new = outside - products.keys()  # stubs from an earlier clean are there already
    products.update((pid, Product(pid, in_catalogue=False)) for pid in new)
    report.stubs_added = len(new)
