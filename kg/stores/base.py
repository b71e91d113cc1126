"""The `Store` interface every graph backend implements, and `Snapshot`: the plain-data view of a
graph that stores write from and read back into (export and tests compare snapshots)."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from kg.catalogue import NO_SESSION, RELS, Catalogue
from kg.errors import KgrecError
from kg.schema import REL_ENDPOINTS, Label, Product, Rel

# Called as progress(step, done, total) while a write runs; step is a label or relationship name.
Progress = Callable[[str, int, int], None]


# Relationship types held as plain (src, dst) pairs; INTERACTED carries properties of its own.
EDGE_RELS: tuple[Rel, ...] = tuple(rel for rel in Rel if rel != Rel.INTERACTED)


class StoreError(KgrecError, RuntimeError):
    """A store cannot be opened or used (server down, bad URI, unreadable files)."""


class ProductRow(NamedTuple):
    id: str
    title: str
    description: str
    price: float | None
    in_catalogue: bool


class InteractionRow(NamedTuple):
    """One event. `key` identifies it by all its other fields (see `event_key`): stores upsert
    events by key, so an exact duplicate is stored once and any other repeat is kept."""

    user: str
    product: str
    rating: float | None
    ts: float | None
    kind: str
    price: float | None = None
    session: str | None = None
    key: str = ""

    @classmethod
    def of(
        cls,
        user: str,
        product: str,
        rating: float | None,
        ts: float | None,
        kind: str,
        price: float | None = None,
        session: str | None = None,
    ) -> InteractionRow:
        """A row with floats normalised and its key filled in."""
        fields = (user, product, _float(rating), _float(ts), kind, _float(price), session)
        return cls(*fields, event_key(*fields))

    def sort_key(self) -> tuple:
        """(user, product, ts with None last, key): a total order, events of a pair by time."""
        return (self.user, self.product, self.ts is None, self.ts or 0.0, self.key)


def event_key(
    user: str,
    product: str,
    rating: float | None,
    ts: float | None,
    kind: str,
    price: float | None,
    session: str | None,
) -> str:
    """128-bit hex digest of every field of an event. Callers pass floats as floats (5 and 5.0
    must give one key); the repr of a tuple of str/float/None is unambiguous and stable."""
    text = repr((user, product, rating, ts, kind, price, session))
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


@dataclass
class Snapshot:
    """A whole graph as sorted plain data: nodes by id, edges by (src, dst), interactions by
    `InteractionRow.sort_key` (one row per distinct event).

    `edges` holds every type in EDGE_RELS; INTERACTED rows are `interactions`.
    """

    products: list[ProductRow] = field(default_factory=list)
    brands: list[str] = field(default_factory=list)
    categories: list[tuple[str, str]] = field(default_factory=list)  # (id, name)
    users: list[str] = field(default_factory=list)
    edges: dict[Rel, list[tuple[str, str]]] = field(default_factory=dict)
    interactions: list[InteractionRow] = field(default_factory=list)

    @classmethod
    def from_catalogue(cls, catalogue: Catalogue) -> Snapshot:
        """What writing `catalogue` to an empty store holds, before dangling edges are skipped.

        Duplicate edges collapse; every interaction is kept, exact duplicates (all fields equal,
        hence the same key) once.
        """
        products = catalogue.products.values()
        edges: dict[Rel, set[tuple[str, str]]] = {rel: set() for rel in EDGE_RELS}
        for edge in catalogue.edges:
            edges[edge.rel].add((edge.src, edge.dst))
        for p in products:
            if p.brand:
                edges[Rel.MADE_BY].add((p.id, p.brand))
            edges[Rel.IN_CATEGORY].update((p.id, c) for c in p.categories)
        for c in catalogue.categories.values():
            if c.parent is not None:
                edges[Rel.SUBCATEGORY_OF].add((c.id, c.parent))
        interactions = unique_events(
            InteractionRow.of(i.user, i.product, i.rating, i.ts, i.kind, i.price, i.session)
            for i in catalogue.interactions
        )
        return cls(
            products=sorted(
                ProductRow(p.id, p.title, p.description, _float(p.price), p.in_catalogue)
                for p in products
            ),
            brands=sorted(catalogue.brands),
            categories=sorted((c.id, c.name) for c in catalogue.categories.values()),
            users=sorted(catalogue.users),
            edges={rel: sorted(pairs) for rel, pairs in edges.items()},
            interactions=sorted(interactions, key=InteractionRow.sort_key),
        )

    def counts(self) -> dict[str, dict[str, int]]:
        """Counts in the shape of `Store.counts()`."""
        nodes = {
            Label.PRODUCT: len(self.products),
            Label.BRAND: len(self.brands),
            Label.CATEGORY: len(self.categories),
            Label.USER: len(self.users),
        }
        rels = {rel: len(pairs) for rel, pairs in self.edges.items()}
        rels[Rel.INTERACTED] = len(self.interactions)
        return counts_dict(nodes, rels)


@dataclass
class GraphColumns:
    """A whole graph as columns, what export assembles `HeteroData` from: node ids per label in
    id order, product and category attributes in that order, and every relationship type
    (INTERACTED included) as two int64 arrays indexing those ids, in any order. `events` holds
    the INTERACTED attributes aligned with its arrays: "rating", "ts", "price" (float64, NaN
    for none), "kind", "session", "key" (lists)."""

    ids: dict[Label, list[str]]
    products: list[ProductRow]
    category_names: list[str]
    edges: dict[Rel, tuple[np.ndarray, np.ndarray]]
    events: dict[str, Any]

    @classmethod
    def from_snapshot(cls, snap: Snapshot) -> GraphColumns:
        """The snapshot as columns; relationships with an endpoint the snapshot lacks are left
        out, as stores skip them."""
        nodes = _NodeIndex(
            {
                Label.PRODUCT: [p.id for p in snap.products],
                Label.BRAND: list(snap.brands),
                Label.CATEGORY: [c for c, _ in snap.categories],
                Label.USER: list(snap.users),
            }
        )
        edges = {}
        for rel in EDGE_RELS:
            pairs = snap.edges.get(rel, [])
            src_label, dst_label = REL_ENDPOINTS[rel]
            src = nodes.of(src_label, [s for s, _ in pairs])
            dst = nodes.of(dst_label, [d for _, d in pairs])
            linked = (src >= 0) & (dst >= 0)
            edges[rel] = src[linked], dst[linked]
        users = nodes.of(Label.USER, [r.user for r in snap.interactions])
        items = nodes.of(Label.PRODUCT, [r.product for r in snap.interactions])
        linked = (users >= 0) & (items >= 0)
        rows = [row for row, keep in zip(snap.interactions, linked, strict=True) if keep]
        edges[Rel.INTERACTED] = users[linked], items[linked]
        floats = {name: _nan_floats([getattr(r, name) for r in rows]) for name in FLOAT_EVENT_PROPS}
        return cls(
            ids=nodes.ids,
            products=snap.products,
            category_names=[name for _, name in snap.categories],
            edges=edges,
            events={
                **floats,
                "kind": [r.kind for r in rows],
                "session": [r.session for r in rows],
                "key": [r.key for r in rows],
            },
        )

    @classmethod
    def from_catalogue(cls, cat: Catalogue) -> GraphColumns:
        """What writing `cat` into an empty store holds (`Snapshot.from_catalogue`, with the
        relationships to missing nodes skipped), built from its tables without a Python object
        per link or event: the bulk build's path."""
        products = sorted(
            ProductRow(p.id, p.title, p.description, _float(p.price), p.in_catalogue)
            for p in cat.products.values()
        )
        nodes = _NodeIndex(
            {
                Label.PRODUCT: [p.id for p in products],
                Label.BRAND: sorted(cat.brands),
                Label.CATEGORY: sorted(cat.categories),
                Label.USER: sorted(cat.users),
            }
        )
        parts: dict[Rel, list[tuple[np.ndarray, np.ndarray]]] = {rel: [] for rel in EDGE_RELS}
        rel_codes, src, dst = cat.edges.columns()
        names = cat.edges.ids.names
        for code in np.unique(rel_codes).tolist():
            rel, rows = RELS[code], rel_codes == code
            src_label, dst_label = REL_ENDPOINTS[rel]
            parts[rel].append(
                (nodes.of(src_label, names)[src[rows]], nodes.of(dst_label, names)[dst[rows]])
            )
        ordered = [cat.products[p.id] for p in products]
        brand = nodes.of(Label.BRAND, [p.brand or "" for p in ordered])
        parts[Rel.MADE_BY].append((np.flatnonzero(brand >= 0), brand[brand >= 0]))
        per_product = np.fromiter((len(p.categories) for p in ordered), np.int64, len(ordered))
        in_category = nodes.of(Label.CATEGORY, [c for p in ordered for c in p.categories])
        parts[Rel.IN_CATEGORY].append(
            (np.repeat(np.arange(len(ordered)), per_product), in_category)
        )
        children = [c for c in cat.categories.values() if c.parent is not None]
        parts[Rel.SUBCATEGORY_OF].append(
            (
                nodes.of(Label.CATEGORY, [c.id for c in children]),
                nodes.of(Label.CATEGORY, [c.parent or "" for c in children]),
            )
        )
        edges = {rel: _unique_pairs(pairs) for rel, pairs in parts.items()}
        edges[Rel.INTERACTED], events = _event_columns(cat, nodes)
        return cls(
            ids=nodes.ids,
            products=products,
            category_names=[cat.categories[c].name for c in nodes.ids[Label.CATEGORY]],
            edges=edges,
            events=events,
        )


class _NodeIndex:
    """Node ids per label in id order, and the index of any id among them (-1 if absent)."""

    def __init__(self, ids: dict[Label, list[str]]) -> None:
        self.ids = ids
        self._index = {
            label: {node: i for i, node in enumerate(nodes)} for label, nodes in ids.items()
        }

    def of(self, label: Label, names: list[str]) -> np.ndarray:
        index = self._index[label]
        return np.fromiter((index.get(name, -1) for name in names), np.int64, len(names))


def _unique_pairs(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (src, dst) pairs of `parts` with both ends present (>= 0)."""
    src = np.concatenate([s for s, _ in parts]) if parts else np.empty(0, np.int64)
    dst = np.concatenate([d for _, d in parts]) if parts else np.empty(0, np.int64)
    linked = (src >= 0) & (dst >= 0)
    src, dst = src[linked], dst[linked]
    key = src * (int(dst.max(initial=0)) + 1) + dst
    first = np.unique(key, return_index=True)[1]
    return src[first], dst[first]


def _event_columns(
    cat: Catalogue, nodes: _NodeIndex
) -> tuple[tuple[np.ndarray, np.ndarray], dict[str, Any]]:
    """(users, products) index arrays and `GraphColumns.events` of the catalogue's events:
    exact duplicates (one key) once, events naming a missing node left out."""
    table = cat.interactions
    columns = table.columns()
    users = nodes.of(Label.USER, table.ids["user"].names)[columns["user"]]
    items = nodes.of(Label.PRODUCT, table.ids["product"].names)[columns["product"]]
    keys = [event_key(*row) for row in table.rows()]
    first: dict[str, int] = {}
    for row, key in enumerate(keys):
        first.setdefault(key, row)
    keep = np.zeros(len(keys), dtype=bool)
    keep[list(first.values())] = True
    keep &= (users >= 0) & (items >= 0)
    rows = np.flatnonzero(keep)
    kinds, sessions = table.ids["kind"].names, table.ids["session"].names
    events = {name: columns[name][rows] for name in FLOAT_EVENT_PROPS}
    events["kind"] = [kinds[c] for c in columns["kind"][rows].tolist()]
    events["session"] = [
        None if c == NO_SESSION else sessions[c] for c in columns["session"][rows].tolist()
    ]
    events["key"] = [keys[r] for r in rows.tolist()]
    return (users[rows], items[rows]), events


FLOAT_EVENT_PROPS = ("rating", "ts", "price")


def _nan_floats(values: list[float | None]) -> np.ndarray:
    return np.array(values, dtype=np.float64).reshape(len(values))  # None → NaN


def counts_dict(nodes: dict[Label, int], rels: dict[Rel, int]) -> dict[str, dict[str, int]]:
    """The `Store.counts()` shape, with every label and relationship type present."""
    return {
        "nodes": {str(label): nodes.get(label, 0) for label in Label},
        "relationships": {str(rel): rels.get(rel, 0) for rel in Rel},
    }


def unique_events(rows: Iterable[InteractionRow]) -> list[InteractionRow]:
    """`rows` without exact duplicates (equal rows have equal keys), first occurrence kept."""
    return list(dict.fromkeys(rows))


def _float(value: float | None) -> float | None:
    # Neo4j keeps ints and floats apart; normalise so both stores read back the same values.
    return None if value is None else float(value)


class Store(ABC):
    """A product knowledge graph. Writes are upserts: writing the same catalogue twice leaves the
    same graph. Relationships whose endpoint nodes do not exist are skipped."""

    uri: str

    def write(self, catalogue: Catalogue, progress: Progress | None = None) -> None:
        self.write_snapshot(Snapshot.from_catalogue(catalogue), progress)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group the calls inside into one unit of work where the backend can: the embedded
        store commits them together under its one-writer lock. Neo4j commits batch by batch
        (its writes are idempotent upserts, so a re-run completes a killed one)."""
        yield

    @abstractmethod
    def write_snapshot(self, snap: Snapshot, progress: Progress | None = None) -> None:
        """Upsert every node, relationship and interaction of `snap`."""

    @abstractmethod
    def counts(self) -> dict[str, dict[str, int]]:
        """{"nodes": {label: n}, "relationships": {rel: n}} for every label and rel type."""

    @abstractmethod
    def snapshot(self) -> Snapshot: ...

    def columns(self) -> GraphColumns:
        """The graph as columns, for export (backends may stream them without a snapshot)."""
        return GraphColumns.from_snapshot(self.snapshot())

    @abstractmethod
    def neighbours(self, product_id: str) -> dict[str, list[str]]:
        """Outgoing product->product neighbours of one product: {rel: sorted ids} per relation."""

    @abstractmethod
    def get_products(self, ids: Iterable[str]) -> dict[str, Product]:
        """The products found among `ids`, with brand and (sorted) categories filled in."""

    @abstractmethod
    def unlink_products(self, ids: Iterable[str], rels: Iterable[Rel]) -> None:
        """Delete the outgoing `rels` relationships of these products (before re-linking them)."""

    @abstractmethod
    def remove_products(self, ids: Iterable[str]) -> int:
        """Delete these products and every relationship touching them; other nodes (users,
        brands, categories) stay. Unknown ids are ignored. Returns how many were deleted."""

    def remove_user(self, user_id: str) -> int | None:
        """Delete a user and every interaction of theirs (right to be forgotten). Returns how
        many interactions were deleted; None if the user is not in the store."""
        raise NotImplementedError(f"{type(self).__name__} cannot remove users")

    def version(self) -> str | None:
        """A marker that changes whenever the stored graph changes, whoever writes it (compare
        two to tell); None if the store cannot tell. Raises StoreError when unreachable."""
        return None

    @abstractmethod
    def clear(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def stage(progress: Progress | None, name: str) -> Iterator[None]:
    """Report a step without a measurable size (reading, cleaning) as one unit of work."""
    if progress:
        progress(name, 0, 1)
    yield
    if progress:
        progress(name, 1, 1)
