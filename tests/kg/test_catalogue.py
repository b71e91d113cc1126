"""The catalogue's columnar tables hold exactly the rows put in, and the bulk build's columns
(`GraphColumns.from_catalogue`) are the graph a snapshot of the same catalogue describes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from kg.catalogue import Catalogue, EdgeTable, EventTable
from kg.cleaning import clean
from kg.readers import read_catalogue, read_rees46
from kg.rejects import RejectLog
from kg.schema import Edge, Interaction, Product, Rel
from kg.stores import Snapshot
from kg.stores.base import GraphColumns

DATA = Path(os.environ["KGREC_DATA"])
MAGAZINE = DATA / "amazon-magazine-2018"
REES46 = DATA / "rees46-2019-oct-sample" / "events-2019-10-01.csv.gz"

EDGES = [
    Edge(Rel.ALSO_BOUGHT, "a", "b"),
    Edge(Rel.ALSO_VIEWED, "b", "a"),
    Edge(Rel.ALSO_BOUGHT, "a", "c"),
]
EVENTS = [
    Interaction("u1", "a", 5.0, 1.5e9),
    Interaction("u2", "b", None, None, "view", 9.99, "s1"),
    Interaction("u1", "b", None, 3.0, "purchase", 0.5, ""),  # an empty session is a session
]


def test_tables_give_back_the_rows_put_in() -> None:
    edges, events = EdgeTable(EDGES), EventTable(EVENTS)
    assert list(edges) == EDGES and edges[2] == EDGES[2] and len(edges) == 3
    assert list(events) == EVENTS and events[1] == EVENTS[1] and len(events) == 3
    more = EdgeTable([Edge(Rel.BOUGHT_TOGETHER, "c", "a")])
    more.extend(edges)  # another table's ids are interned again
    assert list(more) == [Edge(Rel.BOUGHT_TOGETHER, "c", "a"), *EDGES]
    again = EventTable(EVENTS[:1])
    again.extend(events)
    assert list(again) == [EVENTS[0], *EVENTS]
    keep = np.array([True, False, True])
    assert list(edges.select(keep)) == [EDGES[0], EDGES[2]]
    assert list(events.select(keep)) == [EVENTS[0], EVENTS[2]]
    assert events.user_ids() == {"u1", "u2"}
    sequence = EventTable()
    sequence.add_sequence("u9", ["c", "a"], "sequence")
    assert list(sequence) == [Interaction("u9", "c", None, 0.0, "sequence"),
                              Interaction("u9", "a", None, 1.0, "sequence")]  # fmt: skip


def test_catalogue_turns_lists_into_tables() -> None:
    cat = Catalogue(edges=EDGES, interactions=EVENTS)
    assert isinstance(cat.edges, EdgeTable) and isinstance(cat.interactions, EventTable)
    cat.edges = [e for e in cat.edges if e.src == "a"]
    assert isinstance(cat.edges, EdgeTable) and len(cat.edges) == 2
    assert cat.users == {"u1", "u2"}
    assert cat == Catalogue(edges=list(cat.edges), interactions=EVENTS)


def test_duplicate_events_are_equal_field_by_field() -> None:
    # -0.0 == 0.0 and "none" == "none", as tuples compare; a different session is another event
    cat = Catalogue(
        interactions=[
            Interaction("u", "a", 4.0, -0.0),
            Interaction("u", "a", 4.0, 0.0),
            Interaction("u", "a", 4.0, 0.0, session="s"),
            Interaction("u", "a", None, None),
            Interaction("u", "a", None, None),
        ]
    )
    cat.products = {"a": Product("a")}
    report = clean(cat)
    assert report.duplicate_interactions == 2
    assert [(i.ts, i.session) for i in cat.interactions] == [(0.0, None), (0.0, "s"), (None, None)]


def _same_columns(a: GraphColumns, b: GraphColumns) -> None:
    assert a.ids == b.ids and a.products == b.products and a.category_names == b.category_names
    for rel in Rel:
        assert sorted(zip(*a.edges[rel], strict=True)) == sorted(zip(*b.edges[rel], strict=True)), (
            rel
        )

    def events(cols: GraphColumns) -> list[tuple]:
        users, items = cols.edges[Rel.INTERACTED]
        floats = [
            np.nan_to_num(cols.events[p], nan=-1.0).tolist() for p in ("rating", "ts", "price")
        ]
        return sorted(
            zip(users.tolist(), items.tolist(), *floats, cols.events["kind"],
                [s or "" for s in cols.events["session"]], cols.events["key"], strict=True)
        )  # fmt: skip

    assert events(a) == events(b)


def test_columns_from_catalogue_match_the_snapshot() -> None:
    def magazine() -> Catalogue:
        meta, ratings = (
            MAGAZINE / "meta_Magazine_Subscriptions.json.gz",
            MAGAZINE / "ratings.csv.gz",
        )
        return read_catalogue(meta, "auto", ratings, RejectLog())

    rees = read_rees46(REES46, RejectLog())
    for cat, external in ((rees, "stub"), (magazine(), "stub"), (magazine(), "drop")):
        clean(cat, external)
        direct = GraphColumns.from_catalogue(cat)
        _same_columns(direct, GraphColumns.from_snapshot(Snapshot.from_catalogue(cat)))
        assert len(direct.edges[Rel.INTERACTED][0]) == len(cat.interactions)
