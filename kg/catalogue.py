"""The in-memory catalogue readers fill, cleaning normalises and stores write: products and
categories as objects (one per node), product links and interaction events as columnar tables
(ids interned once, values in flat arrays), so tens of millions of links or events hold no
Python object per row."""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from kg.schema import Category, Edge, Interaction, Product, Rel

RELS: tuple[Rel, ...] = tuple(Rel)
_REL_CODE: dict[str, int] = {rel: code for code, rel in enumerate(RELS)}
NO_SESSION = -1  # the session code of an event without one


class Interner:
    """Strings ↔ dense int codes, in first-seen order."""

    __slots__ = ("index", "names")

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.names: list[str] = []

    def __len__(self) -> int:
        return len(self.names)

    def code(self, name: str) -> int:
        code = self.index.setdefault(name, len(self.names))
        if code == len(self.names):
            self.names.append(name)
        return code

    def codes(self, names: Iterable[str]) -> list[int]:
        return [self.code(name) for name in names]

    def remap(self, other: Interner) -> np.ndarray:
        """For each code of `other`, the code of the same string here (added if new)."""
        return np.array(self.codes(other.names), dtype=np.int32)


_DTYPES = {"b": np.int8, "i": np.int32}


def _ints(values: np.ndarray, typecode: str = "i") -> array:
    return array(typecode, np.ascontiguousarray(values, dtype=_DTYPES[typecode]).tobytes())


def _column(values: array, dtype: type) -> np.ndarray:
    return np.frombuffer(values, dtype=dtype).copy() if len(values) else np.empty(0, dtype)


def _float(value: float | None) -> float:
    # None is NaN (readers refuse non-finite numbers, so NaN means only "none"); -0.0 is 0.0,
    # as equality (and so duplicate detection) has always treated it.
    return math.nan if value is None else float(value) + 0.0


def _optional(value: float) -> float | None:
    return None if value != value else value


class EdgeTable:
    """Links (rel, src, dst) as three int columns over one table of ids. Iterating yields
    `Edge`s; `columns()` gives the arrays, `select(mask)` a filtered table over the same ids."""

    def __init__(self, edges: Iterable[Edge] = ()) -> None:
        self.ids = Interner()
        self._rel, self._src, self._dst = array("b"), array("i"), array("i")
        self.extend(edges)

    def add(self, rel: Rel, src: str, targets: Iterable[str]) -> None:
        """Links from `src` to each of `targets`."""
        self.add_codes(rel, self.ids.code(src), self.ids.codes(targets))

    def add_codes(self, rel: Rel, src: int, dst: Sequence[int] | np.ndarray) -> None:
        """Links from id code `src` to id codes `dst` (codes of `self.ids`)."""
        count = len(dst)
        self._rel.extend(array("b", [_REL_CODE[rel]]) * count)
        self._src.extend(array("i", [src]) * count)
        if isinstance(dst, np.ndarray):
            self._dst.extend(_ints(dst))
        else:
            self._dst.extend(dst)

    def append(self, edge: Edge) -> None:
        self.add_codes(edge.rel, self.ids.code(edge.src), [self.ids.code(edge.dst)])

    def extend(self, edges: Iterable[Edge]) -> None:
        if isinstance(edges, EdgeTable):
            remap = self.ids.remap(edges.ids)
            rel, src, dst = edges.columns()
            self._rel.extend(_ints(rel, "b"))
            self._src.extend(_ints(remap[src]))
            self._dst.extend(_ints(remap[dst]))
            return
        for edge in edges:
            self.append(edge)

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(relation codes into RELS int8, src id codes int32, dst id codes int32), copies."""
        return (
            _column(self._rel, np.int8),
            _column(self._src, np.int32),
            _column(self._dst, np.int32),
        )

    def select(self, keep: np.ndarray) -> EdgeTable:
        """The links where the boolean mask `keep` holds, in order, over the same ids."""
        table = EdgeTable()
        table.ids = self.ids
        rel, src, dst = self.columns()
        table._rel, table._src, table._dst = (
            _ints(rel[keep], "b"),
            _ints(src[keep]),
            _ints(dst[keep]),
        )
        return table

    def __len__(self) -> int:
        return len(self._rel)

    def __iter__(self) -> Iterator[Edge]:
        names = self.ids.names
        for rel, src, dst in zip(self._rel, self._src, self._dst, strict=True):
            yield Edge(RELS[rel], names[src], names[dst])

    def __getitem__(self, i: int) -> Edge:
        names = self.ids.names
        return Edge(RELS[self._rel[i]], names[self._src[i]], names[self._dst[i]])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EdgeTable | list | tuple):
            return NotImplemented
        return list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"EdgeTable({len(self)} links over {len(self.ids)} ids)"


# Event columns: interned strings (int32 codes) and floats (NaN = none).
_CODED = ("user", "product", "kind", "session")
_FLOATS = ("rating", "ts", "price")


class EventTable:
    """Interaction events as columns: user, product, kind and session as codes of their own
    `Interner`s (session NO_SESSION when absent), rating, ts and price as floats (NaN when
    absent). Iterating yields `Interaction`s; `columns()` gives the arrays."""

    def __init__(self, events: Iterable[Interaction] = ()) -> None:
        self.ids = {name: Interner() for name in _CODED}
        self._codes = {name: array("i") for name in _CODED}
        self._floats = {name: array("d") for name in _FLOATS}
        self.extend(events)

    def add(
        self,
        user: str,
        product: str,
        rating: float | None = None,
        ts: float | None = None,
        kind: str = "rating",
        price: float | None = None,
        session: str | None = None,
    ) -> None:
        """One event (the fields of `Interaction`)."""
        codes, ids, floats = self._codes, self.ids, self._floats
        codes["user"].append(ids["user"].code(user))
        codes["product"].append(ids["product"].code(product))
        codes["kind"].append(ids["kind"].code(kind))
        codes["session"].append(NO_SESSION if session is None else ids["session"].code(session))
        floats["rating"].append(_float(rating))
        floats["ts"].append(_float(ts))
        floats["price"].append(_float(price))

    def add_sequence(self, user: str, products: Sequence[str], kind: str) -> None:
        """One user's events in order: ts = position from 0; no rating, price or session."""
        count = len(products)
        codes = self._codes
        codes["user"].extend(array("i", [self.ids["user"].code(user)]) * count)
        codes["product"].extend(self.ids["product"].codes(products))
        codes["kind"].extend(array("i", [self.ids["kind"].code(kind)]) * count)
        codes["session"].extend(array("i", [NO_SESSION]) * count)
        self._floats["ts"].extend(array("d", range(count)))
        for name in ("rating", "price"):
            self._floats[name].extend(array("d", [math.nan]) * count)

    def append(self, e: Interaction) -> None:
        self.add(e.user, e.product, e.rating, e.ts, e.kind, e.price, e.session)

    def extend(self, events: Iterable[Interaction]) -> None:
        if isinstance(events, EventTable):
            columns = events.columns()
            for name in _CODED:
                codes = columns[name]
                if name == "session":  # NO_SESSION stays itself through the remap
                    remap = np.append(self.ids[name].remap(events.ids[name]), NO_SESSION)
                else:
                    remap = self.ids[name].remap(events.ids[name])
                self._codes[name].extend(_ints(remap[codes]))
            for name in _FLOATS:
                self._floats[name].extend(array("d", columns[name].tobytes()))
            return
        for event in events:
            self.append(event)

    def columns(self) -> dict[str, np.ndarray]:
        """{"user", "product", "kind", "session": int32 codes; "rating", "ts", "price": float64}
        (copies)."""
        codes = {name: _column(values, np.int32) for name, values in self._codes.items()}
        return codes | {name: _column(values, np.float64) for name, values in self._floats.items()}

    def select(self, keep: np.ndarray) -> EventTable:
        """The events where the boolean mask `keep` holds, in order, over the same ids."""
        table = EventTable()
        table.ids = self.ids
        columns = self.columns()
        table._codes = {name: _ints(columns[name][keep]) for name in _CODED}
        table._floats = {name: array("d", columns[name][keep].tobytes()) for name in _FLOATS}
        return table

    def user_ids(self) -> set[str]:
        """The distinct users of the events."""
        names = self.ids["user"].names
        return {names[code] for code in np.unique(_column(self._codes["user"], np.int32))}

    def __len__(self) -> int:
        return len(self._codes["user"])

    def rows(self) -> Iterator[tuple]:
        """Each event's fields as a plain tuple in `Interaction`'s field order (None for
        absent values), without building an object per event."""
        names = {name: ids.names for name, ids in self.ids.items()}
        codes, floats = self._codes, self._floats
        sessions = names["session"]
        return zip(
            [names["user"][c] for c in codes["user"]],
            [names["product"][c] for c in codes["product"]],
            [_optional(v) for v in floats["rating"]],
            [_optional(v) for v in floats["ts"]],
            [names["kind"][c] for c in codes["kind"]],
            [_optional(v) for v in floats["price"]],
            [None if c == NO_SESSION else sessions[c] for c in codes["session"]],
            strict=True,
        )

    def __iter__(self) -> Iterator[Interaction]:
        return (Interaction(*row) for row in self.rows())

    def __getitem__(self, i: int) -> Interaction:
        codes, floats, ids = self._codes, self._floats, self.ids
        session = codes["session"][i]
        return Interaction(
            user=ids["user"].names[codes["user"][i]],
            product=ids["product"].names[codes["product"][i]],
            rating=_optional(floats["rating"][i]),
            ts=_optional(floats["ts"][i]),
            kind=ids["kind"].names[codes["kind"][i]],
            price=_optional(floats["price"][i]),
            session=None if session == NO_SESSION else ids["session"].names[session],
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EventTable | list | tuple):
            return NotImplemented
        return list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"EventTable({len(self)} events)"


@dataclass
class Catalogue:
    """Everything a build writes. Readers fill it; `kg.cleaning` makes it consistent.

    `edges` and `interactions` are tables; a list of `Edge`s / `Interaction`s assigned to them
    (updates, filters, tests) becomes one."""

    products: dict[str, Product] = field(default_factory=dict)
    categories: dict[str, Category] = field(default_factory=dict)
    edges: EdgeTable = field(default_factory=EdgeTable)
    interactions: EventTable = field(default_factory=EventTable)

    def __setattr__(self, name: str, value: object) -> None:
        if name == "edges" and not isinstance(value, EdgeTable):
            value = EdgeTable(value)  # type: ignore[arg-type]
        elif name == "interactions" and not isinstance(value, EventTable):
            value = EventTable(value)  # type: ignore[arg-type]
        super().__setattr__(name, value)

    @property
    def brands(self) -> set[str]:
        return {p.brand for p in self.products.values() if p.brand}

    @property
    def users(self) -> set[str]:
        return self.interactions.user_ids()
