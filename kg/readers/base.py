"""What every reader shares: transparent `.gz` opening, line/CSV/table iteration that decodes
each line on its own (a line that is not UTF-8 is one reject, the rest of the file still loads),
turns bad rows and unreadable files into rejects and counts the rows read per file, and the
catalogue readers fill (which merges a product read twice and reports the values that merge
drops)."""

from __future__ import annotations

import csv
import functools
import gc
import gzip
import io
import json
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field, fields
from itertools import islice
from pathlib import Path
from typing import IO, Any, NamedTuple, TypeVar

from kg.catalogue import Catalogue
from kg.readers.fields import as_object
from kg.rejects import RejectLog
from kg.schema import Product, Rel

_GZIP_MAGIC = b"\x1f\x8b"
_BOM = "\ufeff"
DETECT_LINES = 20  # lines looked at to tell layouts apart
F = TypeVar("F", bound=Callable[..., Any])


class RowSource(NamedTuple):
    """Where a product row came from, for the rejects file when it repeats an id."""

    log: RejectLog
    file: str | Path
    line: int
    raw: object  # the line or the row; made text only when it is written


@dataclass
class ReadCatalogue(Catalogue):
    """A catalogue as read: products seen again under an id already read are merged on the
    spot (a dict holds one product per id) and counted here, for the cleaning report.

    The first row read wins: a later row only fills fields the first left empty, and their
    categories are united. A later row whose non-empty value differs from the kept one is a
    conflict: counted and logged with both places. Rows given without a `RowSource` (the
    product part of an event row, whose price may move between events) merge uncounted as
    conflicts."""

    duplicate_products: int = 0
    conflicting_products: int = 0
    origins: dict[str, tuple[str, int]] = field(default_factory=dict, repr=False)

    def add_product(self, product: Product, source: RowSource | None = None) -> None:
        known = self.products.get(product.id)
        if known is None:
            self.products[product.id] = product
            if source is not None:
                self.origins[product.id] = (str(source.file), source.line)
            return
        self.duplicate_products += 1
        if source is not None:
            lost = conflicting_fields(known, product)
            self.conflicting_products += bool(lost)
            _report_duplicate(source, known, lost, self.origins.get(product.id))
        merge_product(known, product)

    def add_edges(self, rel: Rel, src: str, targets: list[str]) -> None:
        self.edges.add(rel, src, targets)


def conflicting_fields(known: Product, other: Product) -> dict[str, tuple[Any, Any]]:
    """{field: (kept, dropped)} where both products have a value and they differ (categories
    are united, so they never conflict)."""
    return {
        f.name: (kept, dropped)
        for f in fields(Product)
        if f.name not in ("categories", "in_catalogue")
        and (kept := getattr(known, f.name)) not in ("", None)
        and (dropped := getattr(other, f.name)) not in ("", None)
        and kept != dropped
    }


def _report_duplicate(
    source: RowSource,
    known: Product,
    lost: dict[str, tuple[Any, Any]],
    origin: tuple[str, int] | None,
) -> None:
    if not lost:
        source.log.duplicate(source.file)
        return
    kept = f"{origin[0]}:{origin[1]}" if origin else "an earlier row"
    values = "; ".join(f"{name}: kept {a!r}, dropped {b!r}" for name, (a, b) in lost.items())
    reason = f"product {known.id!r} read again with other values; the first row ({kept}) wins"
    source.log.conflict(
        source.file, source.line, f"{reason}: {values}"[:2000], str(source.raw), kept
    )


def merge_product(known: Product, other: Product) -> None:
    """Fill `known`'s empty fields from `other`; categories are united in order."""
    for f in fields(Product):
        if f.name == "categories":
            known.categories.extend(c for c in other.categories if c not in known.categories)
        elif getattr(known, f.name) in ("", None):
            setattr(known, f.name, getattr(other, f.name))
    known.in_catalogue = known.in_catalogue or other.in_catalogue


def gc_paused(func: F) -> F:
    """Run `func` with the cyclic garbage collector off. Readers and cleaning create millions
    of small objects without cycles; each allocation burst would make the collector rescan all
    of them again and again (doubling the Beauty load time)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return func(*args, **kwargs)
        finally:
            if was_enabled:
                gc.enable()

    return wrapper  # type: ignore[return-value]


def resolve_log(log: RejectLog | None) -> RejectLog:
    """No log given means nobody collects rejects, so the first bad row must raise."""
    return RejectLog(strict=True) if log is None else log


def open_binary(path: str | Path) -> IO[bytes]:
    """Open a file for reading bytes, gunzipping it if it is gzip-compressed (whatever its name)."""
    with open(path, "rb") as raw:
        magic = raw.read(2)
    return gzip.open(path, "rb") if magic == _GZIP_MAGIC else open(path, "rb")  # noqa: SIM115


def open_text(path: str | Path) -> IO[str]:
    """Open a UTF-8 text file read as a whole (a JSON document, an id list), gunzipping it if
    needed; line-by-line readers use `read_lines`, which survives a bad byte."""
    return io.TextIOWrapper(open_binary(path), encoding="utf-8", newline="")


def _decoded_lines(path: str | Path, log: RejectLog) -> Iterator[tuple[int, str]]:
    """(line number from 1, text without its newline) for every non-blank line. Lines are split
    on \\n and decoded one by one: a line that is not UTF-8 is a row read and rejected (its bytes
    shown as a Python bytes literal), the next line is read as usual. A file that cannot be
    opened or read to its end is a file error after the lines read before it."""
    lineno = 0
    try:
        with open_binary(path) as stream:
            for lineno, raw in enumerate(stream, 1):
                try:
                    line = raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError as exc:
                    log.rows(path).rows_read += 1
                    where = f"byte {raw[exc.start]:#04x} at position {exc.start + 1}"
                    log.add(path, lineno, f"not UTF-8 text: {where}", repr(raw.rstrip(b"\r\n")))
                    continue
                if lineno == 1:
                    line = line.removeprefix(_BOM)
                if line.strip():
                    yield lineno, line
    except (OSError, EOFError) as exc:
        log.file_error(path, lineno, f"unreadable file: {exc}")


def read_lines(path: str | Path, log: RejectLog) -> Iterator[tuple[int, str]]:
    """(line number from 1, line without its newline) for every non-blank line, each counted as
    a row read of `path`; see `_decoded_lines` for bad bytes and unreadable files."""
    rows = log.rows(path)
    for lineno, line in _decoded_lines(path, log):
        rows.rows_read += 1
        yield lineno, line


def first_lines(
    path: str | Path, log: RejectLog, count: int = DETECT_LINES
) -> list[tuple[int, str]]:
    """The first `count` readable non-blank lines, to tell layouts apart (not counted as rows:
    the reader reads them again). When there is none — an empty or unreadable file, or only
    undecodable lines — what went wrong is logged here, so callers stop rather than log it
    again."""
    scratch = RejectLog()
    with closing(_decoded_lines(path, scratch)) as lines:
        head = list(islice(lines, count))
    if not head:
        log.absorb(scratch)
    return head


def parse_lines(
    path: str | Path, log: RejectLog, parse: Callable[[str], Any]
) -> Iterator[tuple[int, str, Any]]:
    """(line number, line, parse(line)) for each line `parse` accepts; lines where it raises
    `RowError` or a decoding error (JSON, Python literal) are logged as rejects."""
    for lineno, line in read_lines(path, log):
        try:
            yield lineno, line, parse(line)
        except (ValueError, SyntaxError, RecursionError) as exc:
            log.add(path, lineno, str(exc) or type(exc).__name__, line)


def read_csv(path: str | Path, log: RejectLog) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) per CSV record, each counted as a row read; a record the csv
    module cannot parse is a reject. The line number is that of the record's last physical
    line. A caller that finds the first record is a header says so with `log.header`."""
    rows = log.rows(path)
    lineno = 0

    def text() -> Iterator[str]:
        nonlocal lineno
        for lineno, line in _decoded_lines(path, log):  # noqa: B007 - read by the loop below
            yield line

    reader = csv.reader(text())
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            rows.rows_read += 1
            log.add(path, lineno, f"bad CSV record: {exc}")
            continue
        rows.rows_read += 1
        yield lineno, row


def read_table(path: str | Path, log: RejectLog) -> Iterator[tuple[int, dict]]:
    """(line number, row as a dict) from a CSV with a header line or from JSON lines (told
    apart by the first character). CSV rows of the wrong width are rejects: a cut-off last
    line is the usual cause."""
    head = first_lines(path, log, 1)
    if not head:
        return
    if head[0][1].lstrip().startswith("{"):
        parse = lambda line: as_object(json.loads(line))  # noqa: E731
        yield from ((lineno, row) for lineno, _, row in parse_lines(path, log, parse))
        return
    rows = read_csv(path, log)
    first = next(rows, None)
    if first is None:
        return
    log.header(path)
    header = first[1]
    for lineno, row in rows:
        if len(row) != len(header):
            log.add(
                path,
                lineno,
                f"truncated or malformed row: expected {len(header)} fields "
                f"({','.join(header)}), got {len(row)}",
                ",".join(row),
            )
            continue
        yield lineno, dict(zip(header, row, strict=True))


Record = tuple[Product, dict[Rel, list[str]]]


@gc_paused
def read_records(
    path: str | Path, log: RejectLog, decode: Callable[[str], Any], record: Callable[[dict], Record]
) -> ReadCatalogue:
    """The loop of every one-object-per-line metadata layout: decode each line, map the
    object to a product and its related-product lists with `record`, reject what fails."""

    def parse(line: str) -> Record:
        return record(as_object(decode(line)))

    catalogue = ReadCatalogue()
    for lineno, line, (product, relations) in parse_lines(path, log, parse):
        catalogue.add_product(product, RowSource(log, path, lineno, line))
        for rel, targets in relations.items():
            catalogue.add_edges(rel, product.id, targets)
    return catalogue
