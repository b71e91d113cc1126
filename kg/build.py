"""The build pipeline: read a catalogue → clean it → write it to a store → summarise."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

from kg.catalogue import Catalogue
from kg.cleaning import CleaningReport, External, clean
from kg.readers import ReadCatalogue, read_catalogue
from kg.readers.generic import CATEGORY_SEP
from kg.rejects import BadInputError, RejectLog
from kg.stores import NEO4J_SCHEMES, Neo4jStore, Progress, StoreError, open_store
from kg.stores.base import GraphColumns, stage
from kg.stores.uri import split_credentials

if TYPE_CHECKING:
    from kg.server_conf import ServerConfig

logger = logging.getLogger(__name__)

DEFAULT_REJECTS = Path("kgrec-rejects.jsonl")
WRITE_BULK = "neo4j-admin import"  # an empty local Neo4j, offline (kg.stores.neo4j_import)
WRITE_BOLT = "bolt transactions"
WRITE_EMBEDDED = "embedded"
# Below this the Bolt path is about as fast as the bulk path's fixed cost (a server restart).
BULK_MIN_RELATIONSHIPS = 1_000_000


@dataclass(frozen=True)
class TableColumns:
    """How to read the user's own tables (`kg.readers.generic`): column mappings for the
    catalogue and the interactions file, and the category path separator."""

    products: Mapping[str, str] | None = None
    interactions: Mapping[str, str] | None = None
    category_sep: str = CATEGORY_SEP


@dataclass
class EventTally:
    """Where every interaction row went: read = loaded + rejected + exact duplicates + dropped.

    `rejected` is every row the readers rejected (rows of product-only files included), so
    `read` counts the interactions parsed plus those rows.
    """

    read: int
    loaded: int  # distinct events written (each stored once, whether new or already there)
    rejected: int
    duplicates: int  # exact duplicates of an event read before (every field equal)
    dropped: int = 0  # naming an out-of-catalogue product (external="drop") or a removed one

    @classmethod
    def count(cls, parsed: int, cleaned: Catalogue, log: RejectLog, duplicates: int) -> EventTally:
        """`parsed` interactions went into cleaning, `cleaned` came out with its events."""
        loaded = len(cleaned.interactions)
        dropped = parsed - loaded - duplicates
        return cls(parsed + len(log), loaded, len(log), duplicates, dropped)

    def line(self) -> str:
        text = (
            f"interaction rows: read {self.read:,} = loaded {self.loaded:,} + rejected "
            f"{self.rejected:,} + exact duplicates {self.duplicates:,}"
        )
        return text + (f" + dropped {self.dropped:,}" if self.dropped else "")


@dataclass
class BuildSummary:
    store: str  # URI of the store written
    nodes: dict[str, int]
    relationships: dict[str, int]
    events: EventTally
    rejected: int
    rejects_path: str
    cleaning: CleaningReport
    seconds: float
    write: str = ""  # how the graph was written: WRITE_BULK, WRITE_BOLT or WRITE_EMBEDDED
    write_seconds: float = 0.0  # the write alone (for the bulk path: CSV, import, restart)
    # Per input file: rows_read = loaded + rejected + duplicates + conflicts (`FileRows`).
    files: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


def build(
    catalogue: str | Path,
    interactions: str | Path | None = None,
    fmt: str = "auto",
    store_uri: str | None = None,
    external: External = "stub",
    strict: bool = False,
    rejects_path: str | Path = DEFAULT_REJECTS,
    progress: Progress | None = None,
    columns: TableColumns | None = None,
    bulk: bool | None = None,
) -> BuildSummary:
    """Read, clean and write one catalogue; counts are the store's, after the write. `bulk`:
    whether an empty local Neo4j that kgrec manages is written by an offline import
    (`write_catalogue`); None: when the catalogue has BULK_MIN_RELATIONSHIPS or more.

    Raises `BadInputError` (strict mode, or nothing readable), `StoreError` (store unusable).
    """
    start = time.perf_counter()
    log = RejectLog(strict=strict)
    cat = read_input(catalogue, interactions, fmt, log, rejects_path, progress, columns)
    parsed = len(cat.interactions)
    with stage(progress, "clean"):
        report = clean(cat, external)
    rejects = log.write(rejects_path)  # before the write, so a failed write still leaves them
    write_start = time.perf_counter()
    write, counts, uri = write_catalogue(cat, store_uri, bulk, progress)
    write_seconds = time.perf_counter() - write_start
    return BuildSummary(
        store=uri,
        nodes=counts["nodes"],
        relationships=counts["relationships"],
        events=EventTally.count(parsed, cat, log, report.duplicate_interactions),
        rejected=len(log),
        rejects_path=str(rejects),
        cleaning=report,
        seconds=round(time.perf_counter() - start, 2),
        write=write,
        write_seconds=round(write_seconds, 2),
        files={name: rows.to_json() for name, rows in log.files.items()},
    )


def write_catalogue(
    cat: Catalogue, store_uri: str | None, bulk: bool | None, progress: Progress | None
) -> tuple[str, dict[str, dict[str, int]], str]:
    """Write `cat`; returns how (WRITE_*), the store's counts after the write, its URI. With
    `bulk` (None: for BULK_MIN_RELATIONSHIPS or more), an empty local Neo4j that kgrec manages
    gets `neo4j-admin database import` (the server restarted around it) and then the Bolt
    path's constraints; any other store the upserts of `Store.write`."""
    target = _cut_off_import(store_uri, bulk)
    if bulk is None:
        bulk = len(cat.edges) + len(cat.interactions) >= BULK_MIN_RELATIONSHIPS
    if target is None:
        with open_store(store_uri) as store:
            if bulk and isinstance(store, Neo4jStore):
                from kg.stores.neo4j_import import local_empty_target  # server code: only here

                target = local_empty_target(store)
            if target is None:
                with store.transaction():
                    store.write(cat, progress)
                write = WRITE_BOLT if isinstance(store, Neo4jStore) else WRITE_EMBEDDED
                return write, store.counts(), store.uri
    from kg.stores.neo4j_import import import_columns

    with stage(progress, "import: columns"):
        cols = GraphColumns.from_catalogue(cat)
    import_columns(cols, target, progress)
    with open_store(store_uri) as store:
        with stage(progress, "import: constraints"):
            cast(Neo4jStore, store).ensure_constraints()
        return WRITE_BULK, store.counts(), store.uri


def _cut_off_import(store_uri: str | None, bulk: bool | None) -> ServerConfig | None:
    """The local server when an offline import into it was cut off (a kill): its database may
    be partial, so the build imports over it whatever the catalogue's size — a transactional
    write over a half-written store could not be trusted. With `bulk=False` that is an error."""
    if store_uri is not None and store_uri.partition("://")[0] not in NEO4J_SCHEMES:
        return None  # an embedded store
    from kg.stores.neo4j_import import cut_off_target  # server code: only here

    target = cut_off_target(None if store_uri is None else split_credentials(store_uri)[0])
    if target is not None:
        if bulk is False:
            raise StoreError(
                f"the local Neo4j ({target.home}) holds an offline import that was cut off: "
                "build without --no-bulk to import over it"
            )
        logger.warning(
            "the local Neo4j holds an offline import that was cut off: importing over it"
        )
    return target


def read_input(
    catalogue: str | Path,
    interactions: str | Path | None,
    fmt: str,
    log: RejectLog,
    rejects_path: str | Path,
    progress: Progress | None = None,
    columns: TableColumns | None = None,
) -> ReadCatalogue:
    """Read a catalogue (+ interactions) as `build` and `update` do; raises `BadInputError`
    when a file is missing, when no product could be read, or at the first bad row in strict
    mode. The rejects are written to `rejects_path` then too, so every run leaves its rejects
    file."""
    for path in (catalogue, interactions):
        if path is not None and not Path(path).exists():
            raise BadInputError(f"{path}: no such file or directory")
    columns = columns or TableColumns()
    try:
        with stage(progress, "read"):
            cat = read_catalogue(
                catalogue,
                fmt,
                interactions,
                log,
                columns=columns.products,
                interaction_columns=columns.interactions,
                category_sep=columns.category_sep,
            )
        if not cat.products:  # e.g. an unreadable file, logged as a reject by the reader
            reason = f": {log.rejects[0]}" if len(log) else ""
            raise BadInputError(
                f"no products read from {catalogue}{reason} (rejects: {rejects_path})"
            )
    except BadInputError:
        log.write(rejects_path)
        raise
    return cat
