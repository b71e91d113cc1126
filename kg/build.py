"""The build pipeline: read a catalogue → clean it → write it to a store → summarise."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kg.cleaning import CleaningReport, External, clean
from kg.readers import ReadCatalogue, read_catalogue
from kg.readers.generic import CATEGORY_SEP
from kg.rejects import BadInputError, RejectLog
from kg.schema import Catalogue
from kg.stores import Progress, open_store

DEFAULT_REJECTS = Path("kgrec-rejects.jsonl")


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
) -> BuildSummary:
    """Read, clean and write one catalogue; counts are the store's, after the write.

    Raises `BadInputError` (strict mode, or nothing readable), `StoreError` (store unusable).
    """
    start = time.perf_counter()
    log = RejectLog(strict=strict)
    cat = read_input(catalogue, interactions, fmt, log, rejects_path, progress, columns)
    parsed = len(cat.interactions)
    with stage(progress, "clean"):
        report = clean(cat, external)
    rejects = log.write(rejects_path)  # before the write, so a failed write still leaves them
    with open_store(store_uri) as store:
        with store.transaction():
            store.write(cat, progress)
        counts = store.counts()
        uri = store.uri
    return BuildSummary(
        store=uri,
        nodes=counts["nodes"],
        relationships=counts["relationships"],
        events=EventTally.count(parsed, cat, log, report.duplicate_interactions),
        rejected=len(log),
        rejects_path=str(rejects),
        cleaning=report,
        seconds=round(time.perf_counter() - start, 2),
        files={name: rows.to_json() for name, rows in log.files.items()},
    )


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


@contextmanager
def stage(progress: Progress | None, name: str) -> Iterator[None]:
    """Report a step without a measurable size (reading, cleaning) as one unit of work."""
    if progress:
        progress(name, 0, 1)
    yield
    if progress:
        progress(name, 1, 1)
