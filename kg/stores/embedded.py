"""`EmbeddedStore`: the graph in an SQLite database (`graph.sqlite`) in a directory; no server.

WAL journal, upserts by key, and one writer at a time: every write runs in a
`BEGIN IMMEDIATE` transaction, which SQLite grants to one connection at a time; another writer
waits up to `lock_timeout` seconds, then fails with a `StoreError` naming the store.
`transaction()` holds that lock across several calls (a whole build or update), so they commit
together or not at all: a process killed mid-write leaves the previous graph, which SQLite
restores from its journal on the next open. A directory holding the one-JSON-file format of
earlier versions (`graph.json.gz`) is migrated on first open; the file is kept, renamed
`graph.json.gz.migrated`.
"""

from __future__ import annotations

import gzip
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kg.schema import PRODUCT_RELATIONS, REL_ENDPOINTS, Label, Product, Rel
from kg.stores.base import (
    EDGE_RELS,
    InteractionRow,
    ProductRow,
    Progress,
    Snapshot,
    Store,
    StoreError,
    counts_dict,
)

DB_FILE = "graph.sqlite"
OLD_GRAPH_FILE = "graph.json.gz"  # the format before SQLite: one gzipped JSON snapshot
SCHEMA_VERSION = 1
LOCK_TIMEOUT = 120.0  # seconds a writer waits for another one to finish
_CHUNK = 500  # ids per `IN (...)` query

_TABLES: dict[Label, str] = {
    Label.PRODUCT: "product",
    Label.BRAND: "brand",
    Label.CATEGORY: "category",
    Label.USER: "user_",
}
_SCHEMA = """
CREATE TABLE IF NOT EXISTS product (
    id TEXT PRIMARY KEY, title TEXT NOT NULL, description TEXT NOT NULL, price REAL,
    in_catalogue INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS brand (id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS category (id TEXT PRIMARY KEY, name TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS user_ (id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS edge (
    rel TEXT NOT NULL, src TEXT NOT NULL, dst TEXT NOT NULL, PRIMARY KEY (rel, src, dst)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS edge_by_dst ON edge (rel, dst);
CREATE TABLE IF NOT EXISTS interaction (
    key TEXT PRIMARY KEY, user TEXT NOT NULL, product TEXT NOT NULL, rating REAL, ts REAL,
    kind TEXT NOT NULL, price REAL, session TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS interaction_by_product ON interaction (product);
"""
_EVENT_COLUMNS = "user, product, rating, ts, kind, price, session, key"


def _exists(label: Label, column: str = "?") -> str:
    return f"EXISTS (SELECT 1 FROM {_TABLES[label]} WHERE id = {column})"


class EmbeddedStore(Store):
    def __init__(self, path: str | Path, lock_timeout: float = LOCK_TIMEOUT) -> None:
        self.path = Path(path)
        self.uri = f"embedded:{self.path}"
        self._file = self.path / DB_FILE
        self._lock = threading.RLock()  # one connection, shared by a server's threads
        self._depth = 0  # nesting of transaction()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self._file, timeout=lock_timeout, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open embedded store {self._file}: {exc}") from exc
        try:
            self._setup()
        except BaseException:
            self._db.close()
            raise

    def _setup(self) -> None:
        with self._errors("open"):
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
        old = self.path / OLD_GRAPH_FILE
        if self._version() == SCHEMA_VERSION and not old.exists():
            return  # the usual case: no lock taken, so opening never waits for a writer
        with self.transaction(), self._errors("create"):
            if self._version() == 0:
                for statement in filter(str.strip, _SCHEMA.split(";")):  # executescript commits
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            if old.exists():
                self._write(_read_old_graph(old), None)
        if old.exists():  # committed: the old file is kept, out of the way
            old.replace(old.with_name(OLD_GRAPH_FILE + ".migrated"))
        for tmp in self.path.glob(".graph-*.tmp"):  # left by a killed write of the old format
            tmp.unlink(missing_ok=True)

    def _version(self) -> int:
        with self._errors("open"):
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"embedded store {self._file} has schema version {version}; this kgrec reads "
                f"up to {SCHEMA_VERSION}: upgrade kgrec"
            )
        return version

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise StoreError(
                    f"embedded store {self.path} is being written by another process "
                    f"(still busy after waiting): {exc}"
                ) from exc
            raise StoreError(f"cannot {doing} embedded store {self._file}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot {doing} embedded store {self._file}: {exc}") from exc

    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[None]:
        """Hold the store's one write lock (`write`; else a consistent read view) until the
        outermost `transaction()` ends; everything inside commits then or not at all."""
        with self._lock:
            if self._depth == 0:
                with self._errors("lock"):
                    self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                if self._depth == 0:
                    self._db.rollback()
                raise
            self._depth -= 1
            if self._depth == 0:
                with self._errors("write"):
                    self._db.execute("COMMIT")

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        with self._lock, self._errors("read"):
            return self._db.execute(sql, tuple(params)).fetchall()

    def write_snapshot(self, snap: Snapshot, progress: Progress | None = None) -> None:
        with self.transaction():
            self._write(snap, progress)

    def _write(self, snap: Snapshot, progress: Progress | None) -> None:
        # Same outcome as the Neo4j MERGE writes: nodes upserted by id, edges added once,
        # events once per key; a relationship whose endpoint node is missing is skipped.
        db = self._db
        steps: list[tuple[str, str, Iterable[tuple]]] = [
            (
                Label.PRODUCT,
                "INSERT INTO product VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                "title = excluded.title, description = excluded.description, "
                "price = excluded.price, in_catalogue = excluded.in_catalogue",
                snap.products,
            ),
            (Label.BRAND, "INSERT OR IGNORE INTO brand VALUES (?)", _singles(snap.brands)),
            (
                Label.CATEGORY,
                "INSERT INTO category VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET "
                "name = excluded.name",
                snap.categories,
            ),
            (Label.USER, "INSERT OR IGNORE INTO user_ VALUES (?)", _singles(snap.users)),
        ]
        for rel, pairs in snap.edges.items():
            src, dst = REL_ENDPOINTS[rel]
            sql = (
                "INSERT OR IGNORE INTO edge SELECT ?1, ?2, ?3 "
                f"WHERE {_exists(src, '?2')} AND {_exists(dst, '?3')}"
            )
            steps.append((rel, sql, _tagged(rel.value, pairs)))
        steps.append(
            (
                Rel.INTERACTED,
                f"INSERT OR IGNORE INTO interaction ({_EVENT_COLUMNS}) "
                "SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8 "
                f"WHERE {_exists(Label.USER, '?1')} AND {_exists(Label.PRODUCT, '?2')}",
                snap.interactions,
            )
        )
        sizes = dict(_step_sizes(snap))
        with self._errors("write"):
            for step, sql, rows in steps:
                db.executemany(sql, rows)
                if progress:
                    progress(str(step), sizes[str(step)], sizes[str(step)])

    def counts(self) -> dict[str, dict[str, int]]:
        nodes = {
            label: self._query(f"SELECT count(*) FROM {table}")[0][0]
            for label, table in _TABLES.items()
        }
        rels: dict[Rel, int] = {
            Rel(rel): n for rel, n in self._query("SELECT rel, count(*) FROM edge GROUP BY rel")
        }
        rels[Rel.INTERACTED] = self._query("SELECT count(*) FROM interaction")[0][0]
        return counts_dict(nodes, rels)

    def snapshot(self) -> Snapshot:
        with self.transaction(write=False):  # one consistent view
            return Snapshot(
                products=[
                    ProductRow(pid, title, desc, price, bool(inc))
                    for pid, title, desc, price, inc in self._query(
                        "SELECT * FROM product ORDER BY id"
                    )
                ],
                brands=[b for (b,) in self._query("SELECT id FROM brand ORDER BY id")],
                categories=self._query("SELECT id, name FROM category ORDER BY id"),
                users=[u for (u,) in self._query("SELECT id FROM user_ ORDER BY id")],
                edges={
                    rel: self._query(
                        "SELECT src, dst FROM edge WHERE rel = ? ORDER BY src, dst", (rel.value,)
                    )
                    for rel in EDGE_RELS
                },
                interactions=sorted(
                    (
                        InteractionRow(*row)
                        for row in self._query(f"SELECT {_EVENT_COLUMNS} FROM interaction")
                    ),
                    key=InteractionRow.sort_key,
                ),
            )

    def neighbours(self, product_id: str) -> dict[str, list[str]]:
        return {
            str(rel): [
                d
                for (d,) in self._query(
                    "SELECT dst FROM edge WHERE rel = ? AND src = ? ORDER BY dst",
                    (rel.value, product_id),
                )
            ]
            for rel in PRODUCT_RELATIONS
        }

    def get_products(self, ids: Iterable[str]) -> dict[str, Product]:
        found: dict[str, Product] = {}
        wanted = list(dict.fromkeys(ids))
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            marks = ", ".join("?" * len(chunk))
            for pid, title, description, price, in_catalogue in self._query(
                f"SELECT * FROM product WHERE id IN ({marks})", chunk
            ):
                found[pid] = Product(pid, title, description, None, [], price, bool(in_catalogue))
            for rel, pid, dst in self._query(
                f"SELECT rel, src, dst FROM edge WHERE rel IN (?, ?) AND src IN ({marks}) "
                "ORDER BY dst",
                (Rel.MADE_BY.value, Rel.IN_CATEGORY.value, *chunk),
            ):
                product = found[pid]
                if rel == Rel.IN_CATEGORY:
                    product.categories.append(dst)
                elif product.brand is None:  # rows come by dst: the first brand is the smallest
                    product.brand = dst
        return found

    def unlink_products(self, ids: Iterable[str], rels: Iterable[Rel]) -> None:
        ids = list(ids)
        with self.transaction(), self._errors("write"):
            for rel in rels:
                self._db.executemany(
                    "DELETE FROM edge WHERE rel = ? AND src = ?", ((rel.value, i) for i in ids)
                )

    def remove_products(self, ids: Iterable[str]) -> int:
        ids = list(dict.fromkeys(ids))
        with self.transaction(), self._errors("write"):
            db = self._db
            for rel in EDGE_RELS:
                for side, label in zip(("src", "dst"), REL_ENDPOINTS[rel], strict=True):
                    if label == Label.PRODUCT:
                        db.executemany(
                            f"DELETE FROM edge WHERE rel = ? AND {side} = ?",
                            ((rel.value, i) for i in ids),
                        )
            db.executemany("DELETE FROM interaction WHERE product = ?", _singles(ids))
            before = db.total_changes
            db.executemany("DELETE FROM product WHERE id = ?", _singles(ids))
            return db.total_changes - before

    def remove_user(self, user_id: str) -> int | None:
        # Deleted rows must not linger either: secure_delete zeroes their bytes in the database
        # file, and the write-ahead log (which holds the old pages) is checkpointed and emptied.
        with self.transaction(), self._errors("write"):
            self._db.execute("PRAGMA secure_delete = ON")
            if not self._db.execute("SELECT 1 FROM user_ WHERE id = ?", (user_id,)).fetchone():
                return None
            removed = self._db.execute("DELETE FROM interaction WHERE user = ?", (user_id,))
            self._db.execute("DELETE FROM user_ WHERE id = ?", (user_id,))
        with self._lock, self._errors("write"):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.execute("VACUUM")  # free pages may still hold the rows' old copies
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (self.path / (OLD_GRAPH_FILE + ".migrated")).unlink(missing_ok=True)  # pre-SQLite copy
        return removed.rowcount

    def version(self) -> str | None:
        # A commit appends to the write-ahead log and a checkpoint rewrites the database file,
        # so the two files' times and sizes together change with every write, whoever makes it.
        parts = []
        for file in (self._file, self._file.with_name(self._file.name + "-wal")):
            try:
                info = file.stat()
            except FileNotFoundError:
                parts.append("-")
                continue
            except OSError as exc:
                raise StoreError(f"cannot read embedded store {file}: {exc}") from exc
            parts.append(f"{info.st_ino}:{info.st_mtime_ns}:{info.st_size}")
        return "/".join(parts)

    def clear(self) -> None:
        with self.transaction(), self._errors("write"):
            for table in (*_TABLES.values(), "edge", "interaction"):
                self._db.execute(f"DELETE FROM {table}")

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _tagged(tag: str, pairs: Iterable[tuple[str, str]]) -> Iterator[tuple[str, str, str]]:
    return ((tag, s, d) for s, d in pairs)


def _singles(values: Iterable[str]) -> Iterator[tuple[str]]:
    return ((v,) for v in values)


def _read_old_graph(file: Path) -> Snapshot:
    """The snapshot in an old-format store file (events without price, session or key)."""
    try:
        with gzip.open(file, "rt", encoding="utf-8") as f:
            raw = json.load(f)
        return Snapshot(
            products=[ProductRow(*row) for row in raw["products"]],
            brands=raw["brands"],
            categories=[tuple(row) for row in raw["categories"]],
            users=raw["users"],
            edges={Rel(rel): [tuple(p) for p in pairs] for rel, pairs in raw["edges"].items()},
            interactions=[InteractionRow.of(*row) for row in raw["interactions"]],
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StoreError(
            f"cannot migrate the old-format embedded store {file}: {exc}; move the file away "
            "and rebuild the store"
        ) from exc


def _step_sizes(snap: Snapshot) -> list[tuple[str, int]]:
    counts = snap.counts()
    return [*counts["nodes"].items(), *counts["relationships"].items()]
