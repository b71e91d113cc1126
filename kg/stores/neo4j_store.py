"""`Neo4jStore`: the store of record. Batched, idempotent `UNWIND ... MERGE` writes in managed
transactions; labels and relationship types come only from `kg.schema` enums.

Relationship rows are sent grouped by source node, (src, [dst, ...]), which halves the index
seeks and the parameter size. Every INTERACTED relationship is one event, identified by its
`key` property (a hash of all its fields, unique by constraint): events are MERGEd by key, so
exact duplicates are stored once and every other event is kept.

A relationship type with no relationships yet is written with CREATE instead of MERGE (no
existence check per row), its endpoints found by internal node id (read once per label) rather
than by key: still idempotent, because any later run, including one after a killed build, finds
the type non-empty and takes the MERGE path.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from itertools import starmap
from typing import Any, LiteralString, TypeVar, cast

import neo4j
import numpy as np
from neo4j import GraphDatabase
from neo4j.exceptions import AuthError, DriverError, Neo4jError, ServiceUnavailable

from kg.schema import KEY, PRODUCT_RELATIONS, REL_ENDPOINTS, Label, Product, Rel
from kg.stores.base import (
    EDGE_RELS,
    FLOAT_EVENT_PROPS,
    GraphColumns,
    InteractionRow,
    ProductRow,
    Progress,
    Snapshot,
    Store,
    StoreError,
    counts_dict,
)
from kg.stores.uri import redact, split_credentials

T = TypeVar("T")

BATCH_SIZE = 10_000  # node rows per transaction
REL_BATCH_SIZE = 20_000  # relationships per transaction (measured: 10k-50k within ~10%)

# Properties of an INTERACTED relationship, in the order of the rows sent (after the product).
EVENT_PROPS = ("rating", "ts", "kind", "price", "session", "key")
EVENT_KEY_CONSTRAINT = "kgrec_interacted_key"

# Node upserts, one per label; row layouts match Snapshot's rows.
_NODE_WRITES: dict[Label, str] = {
    Label.PRODUCT: "UNWIND $rows AS row MERGE (n:Product {id: row[0]}) "
    "SET n.title = row[1], n.description = row[2], n.price = row[3], n.in_catalogue = row[4]",
    Label.BRAND: "UNWIND $rows AS id MERGE (:Brand {id: id})",
    Label.CATEGORY: "UNWIND $rows AS row MERGE (n:Category {id: row[0]}) SET n.name = row[1]",
    Label.USER: "UNWIND $rows AS id MERGE (:User {id: id})",
}
_PRODUCT_REL_TYPES = "|".join(PRODUCT_RELATIONS)
_PRODUCT_ROWS = (
    "MATCH (n:Product) RETURN collect([n.id, n.title, n.description, n.price, n.in_catalogue])"
)
_CATEGORY_ROWS = "MATCH (n:Category) RETURN collect([n.id, n.name])"


def _q(text: str) -> LiteralString:
    # Every query is a constant or built from kg.schema enums only; data always goes in $params.
    return cast(LiteralString, text)


def rel_write_query(rel: Rel) -> LiteralString:
    """MERGE for flat (src, dst) rows, or (user, product, *EVENT_PROPS) rows for INTERACTED:
    the one-row-at-a-time reference."""
    src, dst = REL_ENDPOINTS[rel]
    query = f"UNWIND $rows AS row MATCH (a:{src} {{id: row[0]}}) MATCH (b:{dst} {{id: row[1]}}) "
    if rel != Rel.INTERACTED:
        return _q(query + f"MERGE (a)-[r:{rel}]->(b)")
    return _q(query + f"MERGE (a)-[r:{rel} {{key: row[7]}}]->(b) ON CREATE SET {_set_event(2)}")


def rel_batch_query(rel: Rel, fresh: bool) -> LiteralString:
    """Write grouped rows (src, [dst, ...]), or (user, [[product, *EVENT_PROPS], ...]) for
    INTERACTED. `fresh` (the type has no relationships yet): endpoints are internal node ids
    (`id(n)`, read just before; a seek by id costs less than an index lookup by key) and
    relationships are CREATEd; else endpoints are keys and relationships MERGEd."""
    src, dst = REL_ENDPOINTS[rel]
    if fresh:
        query = "UNWIND $rows AS row MATCH (a) WHERE id(a) = row[0] UNWIND row[1] AS x "
        if rel != Rel.INTERACTED:
            return _q(query + f"MATCH (b) WHERE id(b) = x CREATE (a)-[:{rel}]->(b)")
        query += "MATCH (b) WHERE id(b) = x[0] "
        return _q(query + f"CREATE (a)-[r:{rel}]->(b) SET {_set_event(1, 'x')}")
    query = f"UNWIND $rows AS row MATCH (a:{src} {{id: row[0]}}) UNWIND row[1] AS x "
    if rel != Rel.INTERACTED:
        return _q(query + f"MATCH (b:{dst} {{id: x}}) MERGE (a)-[:{rel}]->(b)")
    query += f"MATCH (b:{dst} {{id: x[0]}}) "
    # The key holds every field, so an event found by key already has these values.
    return _q(query + f"MERGE (a)-[r:{rel} {{key: x[6]}}]->(b) ON CREATE SET {_set_event(1, 'x')}")


def _set_event(first: int, row: str = "row") -> str:
    return ", ".join(f"r.{name} = {row}[{first + i}]" for i, name in enumerate(EVENT_PROPS))


def group_by_source(rows: Iterable[tuple[Any, Any, Any]]) -> list[tuple[Any, list[Any]]]:
    """(src, identity, target) rows → [(src, [target, ...])], one target per (src, identity):
    the last row of a repeated identity wins (CREATE, which has no existence check, must never
    see one twice). The identity is the destination id, or an event's key."""
    groups: dict[Any, dict[Any, Any]] = {}
    for src, identity, target in rows:
        groups.setdefault(src, {})[identity] = target
    return [(src, list(targets.values())) for src, targets in groups.items()]


def rel_batches(groups: list[tuple[Any, list[Any]]], size: int) -> Iterable[tuple[list, int]]:
    """Consecutive groups holding about `size` relationships each, with their relationship count."""
    batch: list[tuple[Any, list[Any]]] = []
    count = 0
    for group in groups:
        batch.append(group)
        count += len(group[1])
        if count >= size:
            yield batch, count
            batch, count = [], 0
    if batch:
        yield batch, count


class Neo4jStore(Store):
    def __init__(
        self,
        uri: str,
        user: str,
        password: str,
        database: str | None = None,
        batch_size: int = BATCH_SIZE,
        rel_batch_size: int = REL_BATCH_SIZE,
    ) -> None:
        """Credentials in `uri` (`bolt://user:password@host:port`) win over `user`/`password`;
        `self.uri`, shown in summaries and errors, has the password masked."""
        self.uri = redact(uri)
        self.database = database
        self.batch_size = batch_size
        self.rel_batch_size = rel_batch_size
        bare, uri_user, uri_password = split_credentials(uri)
        self.address = bare  # the URI without credentials
        self._driver = GraphDatabase.driver(
            bare,
            auth=(uri_user or user, password if uri_password is None else uri_password),
            # Types absent from a partial graph (e.g. no SUBCATEGORY_OF) are expected, not warnings.
            notifications_disabled_classifications=[
                neo4j.NotificationDisabledClassification.UNRECOGNIZED
            ],
        )
        try:
            self._driver.verify_connectivity()
        except (ServiceUnavailable, AuthError, Neo4jError, OSError, ValueError) as exc:
            self._driver.close()
            raise StoreError(redact(f"cannot connect to Neo4j at {self.uri}: {exc}")) from exc

    def session(self) -> neo4j.Session:
        return self._driver.session(database=self.database)

    def _read(self, query: LiteralString, **params: Any) -> list[list[Any]]:
        with self.session() as session:
            return session.run(query, params).values()

    def ensure_constraints(self) -> None:
        """Uniqueness on every label's key and on the event key; must exist before any MERGE
        (each is also the index). Events of a store written before events had keys get theirs
        first."""
        with self.session() as session:
            for label in Label:
                session.run(
                    _q(
                        f"CREATE CONSTRAINT kgrec_{label.lower()}_{KEY} IF NOT EXISTS "
                        f"FOR (n:{label}) REQUIRE n.{KEY} IS UNIQUE"
                    )
                ).consume()
            keyed = session.run(
                _q("SHOW CONSTRAINTS YIELD name WHERE name = $name RETURN count(*)"),
                name=EVENT_KEY_CONSTRAINT,
            ).single(strict=True)[0]
            if not keyed:  # the constraint comes after the keys: without it, look for old events
                self._key_old_events(session)
            session.run(
                _q(
                    f"CREATE CONSTRAINT {EVENT_KEY_CONSTRAINT} IF NOT EXISTS "
                    f"FOR ()-[r:{Rel.INTERACTED}]-() REQUIRE r.key IS UNIQUE"
                )
            ).consume()

    def _key_old_events(self, session: neo4j.Session) -> None:
        """Give keys to events stored without one (one per (user, product), older versions)."""
        while rows := session.run(
            _q(
                f"MATCH (a:User)-[r:{Rel.INTERACTED}]->(b:Product) WHERE r.key IS NULL "
                "RETURN elementId(r), a.id, b.id, r.rating, r.ts, r.kind, r.price, r.session "
                f"LIMIT {self.rel_batch_size}"
            )
        ).values():
            keys = [[rid, InteractionRow.of(*fields).key] for rid, *fields in rows]
            session.execute_write(
                _run,
                _q(
                    "UNWIND $rows AS row MATCH ()-[r]->() WHERE elementId(r) = row[0] "
                    "SET r.key = row[1]"
                ),
                keys,
            )

    def write_snapshot(self, snap: Snapshot, progress: Progress | None = None) -> None:
        """Nodes first, then relationships (which MATCH their endpoints by key)."""
        self.ensure_constraints()
        steps: list[tuple[str, LiteralString, Sequence[Any]]] = [
            (Label.PRODUCT, _NODE_WRITES[Label.PRODUCT], _plain(snap.products)),
            (Label.BRAND, _NODE_WRITES[Label.BRAND], snap.brands),
            (Label.CATEGORY, _NODE_WRITES[Label.CATEGORY], snap.categories),
            (Label.USER, _NODE_WRITES[Label.USER], snap.users),
        ]
        rels: list[tuple[Rel, Iterable[tuple[Any, Any, Any]]]] = [
            (rel, ((s, d, d) for s, d in pairs)) for rel, pairs in snap.edges.items()
        ]
        events = ((r.user, r.key, [r.product, *r[2:]]) for r in snap.interactions)
        rels.append((Rel.INTERACTED, events))
        # id() is deprecated but stays the cheapest handle on a node (see rel_batch_query).
        with self._quiet_session() as session:
            for step, query, rows in steps:
                self._write_batches(session, str(step), query, rows, progress)
            handles: dict[Label, dict[str, int]] = {}
            for rel, rel_rows in rels:
                self._write_rels(session, rel, rel_rows, progress, handles)

    def _quiet_session(self) -> neo4j.Session:
        return self._driver.session(
            database=self.database,
            notifications_disabled_classifications=list(neo4j.NotificationDisabledClassification),
        )

    def _write_rels(
        self,
        session: neo4j.Session,
        rel: Rel,
        rows: Iterable[tuple[Any, Any, Any]],
        progress: Progress | None,
        handles: dict[Label, dict[str, int]],
    ) -> None:
        """`handles`: internal node ids by key per label, read once per build when needed."""
        # Decided once per type: the batches below make it non-empty.
        fresh = self._rel_count(session, rel) == 0
        if fresh:
            src, dst = (self._handles(session, label, handles) for label in REL_ENDPOINTS[rel])
            if rel == Rel.INTERACTED:
                rows = (
                    (src[a], key, [dst[event[0]], *event[1:]])
                    for a, key, event in rows
                    if a in src and event[0] in dst
                )
            else:
                rows = ((src[a], dst[b], dst[b]) for a, b, _ in rows if a in src and b in dst)
        groups = group_by_source(rows)
        total = sum(len(targets) for _, targets in groups)
        self._send(session, rel, fresh, rel_batches(groups, self.rel_batch_size), total, progress)

    def _send(
        self,
        session: neo4j.Session,
        rel: Rel,
        fresh: bool,
        batches: Iterable[tuple[list, int]],
        total: int,
        progress: Progress | None,
    ) -> None:
        if progress:
            progress(str(rel), 0, total)
        query = rel_batch_query(rel, fresh)
        done = 0
        for batch, count in batches:
            session.execute_write(_run, query, batch)
            done += count
            if progress:
                progress(str(rel), done, total)

    @staticmethod
    def _handles(
        session: neo4j.Session, label: Label, handles: dict[Label, dict[str, int]]
    ) -> dict[str, int]:
        if label not in handles:
            keys, found = session.run(
                _q(f"MATCH (n:{label}) RETURN collect(n.{KEY}), collect(id(n))")
            ).single(strict=True)
            handles[label] = dict(zip(keys, found, strict=True))
        return handles[label]

    @staticmethod
    def _rel_count(session: neo4j.Session, rel: Rel) -> int:
        # A count-store lookup: constant time whatever the graph size.
        return session.run(_q(f"MATCH ()-[r:{rel}]->() RETURN count(r)")).single(strict=True)[0]

    def _write_batches(
        self,
        session: neo4j.Session,
        step: str,
        query: LiteralString,
        rows: Sequence[Any],
        progress: Progress | None,
    ) -> None:
        total = len(rows)
        if progress:
            progress(step, 0, total)
        for start in range(0, total, self.batch_size):
            batch = rows[start : start + self.batch_size]
            # Managed transaction: each batch commits atomically, retried on transient errors.
            session.execute_write(_run, query, batch)
            if progress:
                progress(step, min(start + self.batch_size, total), total)

    def is_empty(self) -> bool:
        """No node at all, and no constraint or index but kgrec's own and the lookup ones."""
        with self.session() as session:
            if session.run("MATCH (n) RETURN n LIMIT 1").peek() is not None:
                return False
            names = session.run(
                "SHOW INDEXES YIELD name, type WHERE type <> 'LOOKUP' RETURN name"
            ).value("name")
        return all(name.startswith("kgrec_") for name in names)

    def counts(self) -> dict[str, dict[str, int]]:
        # Count-store lookups: constant time whatever the graph size.
        nodes = {
            label: self._read(_q(f"MATCH (n:{label}) RETURN count(n)"))[0][0] for label in Label
        }
        rels = {rel: self._read(_q(f"MATCH ()-[r:{rel}]->() RETURN count(r)"))[0][0] for rel in Rel}
        return counts_dict(nodes, rels)

    def snapshot(self) -> Snapshot:
        # A few big queries returning one list each: far cheaper than a Record per row. GC is
        # paused meanwhile: the ~1M tuples built here would otherwise be re-scanned by every
        # full collection, which doubled the time.
        with _gc_paused():
            return Snapshot(
                products=self._rows(ProductRow, _PRODUCT_ROWS),
                brands=sorted(self._collect("MATCH (n:Brand) RETURN collect(n.id)")),
                categories=sorted(map(tuple, self._collect(_CATEGORY_ROWS))),
                users=sorted(self._collect("MATCH (n:User) RETURN collect(n.id)")),
                edges={rel: self._pairs(rel) for rel in EDGE_RELS},
                interactions=sorted(
                    starmap(
                        InteractionRow,
                        self._collect(
                            "MATCH (a:User)-[r:INTERACTED]->(b:Product) RETURN collect([a.id, "
                            "b.id, r.rating, r.ts, r.kind, r.price, r.session, r.key])"
                        ),
                    ),
                    key=InteractionRow.sort_key,
                ),
            )

    def columns(self) -> GraphColumns:
        """The graph streamed as columns: no Python object per relationship is kept. Nodes are
        read with their internal ids, relationships as internal-id lists one chunk of source
        nodes at a time, turned into index arrays through a lookup table."""
        with _gc_paused(), self._quiet_session() as session:
            internal: dict[Label, np.ndarray] = {}
            ids: dict[Label, list[str]] = {}
            for label in Label:
                found, keys = session.run(
                    _q(f"MATCH (n:{label}) RETURN collect(id(n)), collect(n.{KEY})")
                ).single(strict=True)
                order = sorted(range(len(keys)), key=keys.__getitem__)
                ids[label] = [keys[i] for i in order]
                internal[label] = np.asarray(found, dtype=np.int64).reshape(-1)[order]
            top = max((int(a.max()) for a in internal.values() if a.size), default=0)
            index = np.full(top + 1, -1, dtype=np.int64)
            for nodes in internal.values():
                index[nodes] = np.arange(len(nodes))
            # Relationship types read in parallel sessions: the server's reads dominate, and
            # they run while this process decodes another type's answer.
            with ThreadPoolExecutor(EXPORT_SESSIONS) as pool:
                events_job = pool.submit(
                    self._in_session, self._event_columns, internal[Label.USER], index
                )
                edge_jobs = {
                    rel: pool.submit(
                        self._in_session,
                        self._edge_columns,
                        rel,
                        internal[REL_ENDPOINTS[rel][0]],
                        index,
                    )
                    for rel in EDGE_RELS
                }
                products = self._rows(ProductRow, _PRODUCT_ROWS)
                category_names = [name for _, name in sorted(self._collect(_CATEGORY_ROWS))]
                edges = {rel: job.result() for rel, job in edge_jobs.items()}
                users, items, events = events_job.result()
            edges[Rel.INTERACTED] = users, items
            return GraphColumns(
                ids=ids,
                products=products,
                category_names=category_names,
                edges=edges,
                events=events,
            )

    def _in_session(self, read: Callable[..., T], *args: Any) -> T:
        with self._quiet_session() as session:
            return read(session, *args)

    def _edge_columns(
        self, session: neo4j.Session, rel: Rel, sources: np.ndarray, index: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        # A type of up to SCAN_MAX relationships is read by one scan of the type (its lookup
        # index), far cheaper than expanding every source node; a larger one's collected
        # lists would not fit the server's heap, so it is read per chunk of source nodes.
        # No label checks: kgrec writes a type only between its two labels (REL_ENDPOINTS),
        # and a check reads every node record.
        if self._rel_count(session, rel) <= SCAN_MAX:
            query = _q(f"MATCH (a)-[:{rel}]->(b) RETURN collect(id(a)), collect(id(b))")
            chunks: Iterable[list[int] | None] = [None]
        else:
            query = _q(
                f"UNWIND $ids AS i MATCH (a) WHERE id(a) = i "
                f"MATCH (a)-[:{rel}]->(b) RETURN collect(i), collect(id(b))"
            )
            chunks = _chunks(sources)
        parts = [
            tuple(
                np.asarray(column, dtype=np.int64)
                for column in session.run(query, ids=chunk).single(strict=True)
            )
            for chunk in chunks
        ]
        return _joined(parts, 0, index), _joined(parts, 1, index)

    def _event_columns(
        self, session: neo4j.Session, users: np.ndarray, index: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        # One list per property, not one per event (3× faster to read and decode); collect()
        # drops nulls, so a missing number is NaN (0.0/0.0) and a missing session is flagged.
        query = _q(
            "UNWIND $ids AS i MATCH (a) WHERE id(a) = i "
            f"MATCH (a)-[r:{Rel.INTERACTED}]->(b) "
            "RETURN collect(i), collect(id(b)), "
            + ", ".join(f"collect(coalesce(r.{p}, 0.0/0.0))" for p in FLOAT_EVENT_PROPS)
            + ", collect(r.kind), collect(coalesce(r.session, '')), collect(r.session IS NULL), "
            "collect(r.key)"
        )
        parts = []
        events: dict[str, Any] = {name: [] for name in ("kind", "session", "key")}
        for chunk in _chunks(users):
            user, product, *floats, kind, session_id, no_session, key = session.run(
                query, ids=chunk
            ).single(strict=True)
            parts.append(
                (
                    np.array(user, dtype=np.int64),
                    np.array(product, dtype=np.int64),
                    *(np.array(v, dtype=np.float64) for v in floats),
                )
            )
            events["kind"].extend(kind)
            events["session"].extend(
                None if missing else s for s, missing in zip(session_id, no_session, strict=True)
            )
            events["key"].extend(key)
        for column, name in enumerate(FLOAT_EVENT_PROPS, start=2):
            events[name] = _joined(parts, column)
        return _joined(parts, 0, index), _joined(parts, 1, index), events

    def _rows(self, row_type: Callable[..., T], query: str) -> list[T]:
        # Rows as lists, not columns: collect() drops nulls, which would misalign columns.
        # Sorting plain tuples first is cheaper; keys (the first fields) are unique.
        return list(starmap(row_type, sorted(map(tuple, self._collect(query)))))

    def _columns(self, query: str) -> list[list[Any]]:
        return self._read(_q(query))[0]

    def _collect(self, query: str) -> list[Any]:
        return self._columns(query)[0]

    def _pairs(self, rel: Rel) -> list[tuple[str, str]]:
        # Two id columns (never null): fewer objects to decode than a list per pair.
        src, dst = REL_ENDPOINTS[rel]
        query = f"MATCH (a:{src})-[:{rel}]->(b:{dst}) RETURN collect(a.id), collect(b.id)"
        return sorted(zip(*self._columns(query), strict=True))

    def neighbours(self, product_id: str) -> dict[str, list[str]]:
        rows = self._read(
            _q(
                f"MATCH (:Product {{id: $id}})-[r:{_PRODUCT_REL_TYPES}]->(q:Product) "
                "RETURN type(r), q.id"
            ),
            id=product_id,
        )
        found: dict[str, list[str]] = {str(rel): [] for rel in PRODUCT_RELATIONS}
        for rel, other in rows:
            found[rel].append(other)
        return {rel: sorted(ids) for rel, ids in found.items()}

    def get_products(self, ids: Iterable[str]) -> dict[str, Product]:
        # Pattern comprehensions, not OPTIONAL MATCH + collect: rows stream out with no
        # aggregation held in the server's heap (a model load asks for every product).
        rows = self._read(
            _q(
                "UNWIND $ids AS id MATCH (p:Product {id: id}) "
                "RETURN p.id, p.title, p.description, p.price, p.in_catalogue, "
                "[(p)-[:MADE_BY]->(b:Brand) | b.id], [(p)-[:IN_CATEGORY]->(c:Category) | c.id]"
            ),
            ids=list(ids),
        )
        return {
            pid: Product(pid, title, desc, min(brands, default=None), sorted(set(cats)), price, inc)
            for pid, title, desc, price, inc, brands, cats in rows
        }

    def unlink_products(self, ids: Iterable[str], rels: Iterable[Rel]) -> None:
        rows = list(ids)
        with self.session() as session:
            for rel in rels:
                query = f"UNWIND $rows AS id MATCH (:Product {{id: id}})-[r:{rel}]->() DELETE r"
                self._write_batches(session, str(rel), _q(query), rows, None)

    def remove_products(self, ids: Iterable[str]) -> int:
        # Relationships first, in auto-committed batches as in clear(); DISTINCT because an edge
        # between two removed products is matched from both ends.
        params = {"ids": list(ids)}
        with self.session() as session:
            session.run(
                _q(
                    "UNWIND $ids AS id MATCH (:Product {id: id})-[r]-() WITH DISTINCT r "
                    "CALL (r) { DELETE r } IN TRANSACTIONS OF 10000 ROWS"
                ),
                params,
            ).consume()
            summary = session.run(
                _q(
                    "UNWIND $ids AS id MATCH (p:Product {id: id}) "
                    "CALL (p) { DETACH DELETE p } IN TRANSACTIONS OF 10000 ROWS"
                ),
                params,
            ).consume()
        return summary.counters.nodes_deleted

    def remove_user(self, user_id: str) -> int | None:
        query = (
            "MATCH (u:User {id: $id}) OPTIONAL MATCH (u)-[r:INTERACTED]->() "
            "WITH u, count(r) AS n DETACH DELETE u RETURN n"
        )
        with self.session() as session:
            rows = session.execute_write(lambda tx: tx.run(_q(query), id=user_id).values())
        return rows[0][0] if rows else None

    def version(self) -> str | None:
        # A read's bookmark names the last transaction committed to the database, by anyone.
        try:
            with self.session() as session:
                session.run("RETURN 1").consume()
                return ",".join(sorted(session.last_bookmarks().raw_values))
        except (DriverError, Neo4jError) as exc:
            raise StoreError(f"Neo4j at {self.uri} does not answer: {exc}") from exc

    def clear(self) -> None:
        # Relationships first, then nodes, in auto-committed batches: a DETACH DELETE of
        # high-degree nodes would pile every relationship into one transaction's state.
        batched = " IN TRANSACTIONS OF 10000 ROWS"
        with self.session() as session:
            for rel in Rel:
                session.run(
                    _q(f"MATCH ()-[r:{rel}]->() CALL (r) {{ DELETE r }}{batched}")
                ).consume()
            for label in Label:
                session.run(
                    _q(f"MATCH (n:{label}) CALL (n) {{ DETACH DELETE n }}{batched}")
                ).consume()

    def close(self) -> None:
        self._driver.close()


def _run(tx: neo4j.ManagedTransaction, query: LiteralString, rows: Sequence[Any]) -> None:
    tx.run(query, rows=rows).consume()


@contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


EXPORT_CHUNK = 20_000  # source nodes per export query
SCAN_MAX = 4_000_000  # relationships of a type read by one scan (two lists of ids in the heap)
EXPORT_SESSIONS = 2  # relationship types read at once


def _chunks(nodes: np.ndarray) -> Iterator[list[int]]:
    for start in range(0, len(nodes), EXPORT_CHUNK):
        yield nodes[start : start + EXPORT_CHUNK].tolist()


def _joined(parts: list[tuple], column: int, index: np.ndarray | None = None) -> np.ndarray:
    """Column `column` of every part as one array, through `index` (internal id → row) if
    given."""
    if not parts:
        return np.zeros(0, np.float64 if index is None else np.int64)
    joined = np.concatenate([p[column] for p in parts])
    return joined if index is None else index[joined]


def _plain(rows: Sequence[tuple]) -> list[tuple]:
    # The driver packs plain tuples only, not NamedTuple subclasses.
    return list(map(tuple, rows))
