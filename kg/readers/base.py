"""What every reader shares: transparent `.gz` opening, line/CSV/table iteration that turns
bad rows and unreadable files into rejects, and the catalogue readers fill (which merges a
product read twice)."""

from __future__ import annotations

import csv
import functools
import gc
import gzip
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import IO, Any, TypeVar

from kg.readers.fields import as_object
from kg.rejects import RejectLog
from kg.schema import Catalogue, Edge, Product, Rel

_GZIP_MAGIC = b"\x1f\x8b"
F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class ReadCatalogue(Catalogue):
    """A catalogue as read: products seen again under an id already read are merged on the
    spot (a dict holds one product per id) and counted here, for the cleaning report."""

    duplicate_products: int = 0

    def add_product(self, product: Product) -> None:
        known = self.products.get(product.id)
        if known is None:
            self.products[product.id] = product
            return
        self.duplicate_products += 1
        merge_product(known, product)

    def add_edges(self, rel: Rel, src: str, targets: list[str]) -> None:
        self.edges.extend(Edge(rel, src, dst) for dst in targets)


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


def open_text(path: str | Path) -> IO[str]:
    """Open a text file, gunzipping it if it is gzip-compressed (whatever its name)."""
    with open(path, "rb") as raw:
        magic = raw.read(2)
    if magic == _GZIP_MAGIC:
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def read_lines(path: str | Path, log: RejectLog) -> Iterator[tuple[int, str]]:
    """(line number from 1, line without its newline) for every non-blank line. A file that
    cannot be opened or decoded becomes one reject; the lines read before that still count."""
    lineno = 0
    try:
        with open_text(path) as stream:
            for lineno, line in enumerate(stream, 1):
                line = line.rstrip("\r\n")
                if line.strip():
                    yield lineno, line
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        log.add(path, lineno, f"unreadable file: {exc}")


def first_line(path: str | Path, log: RejectLog) -> tuple[int, str] | None:
    """The first non-blank line, to tell layouts apart; None for an empty or unreadable file
    (logged once here, so callers stop rather than log it again)."""
    lines = read_lines(path, log)
    first = next(lines, None)
    lines.close()
    return first


def parse_lines(
    path: str | Path, log: RejectLog, parse: Callable[[str], Any]
) -> Iterator[tuple[int, Any]]:
    """(line number, parse(line)) for each line `parse` accepts; lines where it raises
    `RowError` or a decoding error (JSON, Python literal) are logged as rejects."""
    for lineno, line in read_lines(path, log):
        try:
            yield lineno, parse(line)
        except (ValueError, SyntaxError, RecursionError) as exc:
            log.add(path, lineno, str(exc) or type(exc).__name__, line)


def read_csv(path: str | Path, log: RejectLog) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) per CSV record; a record the csv module cannot parse is a reject.
    The line number is that of the record's last physical line."""
    lineno = 0

    def text() -> Iterator[str]:
        nonlocal lineno
        for lineno, line in read_lines(path, log):  # noqa: B007 - read by the loop below
            yield line

    reader = csv.reader(text())
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            log.add(path, lineno, f"bad CSV record: {exc}")
            continue
        yield lineno, row


def read_table(path: str | Path, log: RejectLog) -> Iterator[tuple[int, dict]]:
    """(line number, row as a dict) from a CSV with a header line or from JSON lines (told
    apart by the first character). CSV rows of the wrong width are rejects: a cut-off last
    line is the usual cause."""
    first = first_line(path, log)
    if first is None:
        return
    if first[1].lstrip().startswith("{"):
        yield from parse_lines(path, log, lambda line: as_object(json.loads(line)))
        return
    rows = read_csv(path, log)
    _, header = next(rows, (0, []))
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
    for _, (product, relations) in parse_lines(path, log, parse):
        catalogue.add_product(product)
        for rel, targets in relations.items():
            catalogue.add_edges(rel, product.id, targets)
    return catalogue
