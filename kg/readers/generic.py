"""Users' own exports: CSV (with a header line), JSON lines or Parquet, columns named by a
mapping (CLI: `--columns id=sku,title=name,…`).

Product mapping keys: `id` (required), `title`, `description`, `brand`, `category` (a
root->leaf path in one column, split by `category_sep`, or a JSON list), `price`.
Interaction mapping keys: `user`, `item` (required), `rating`, `ts` (unix seconds or an ISO
date-time), `kind` (a column; else every row gets the `kind` argument), `price` (paid or seen at
the event), `session`.
One file may carry both (an event log names the product on every row). Parquet rows are
numbered from 1 where text files have line numbers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

from kg.errors import InvalidArgumentError
from kg.readers.base import ReadCatalogue, RowSource, gc_paused, read_table, resolve_log
from kg.readers.fields import (
    RowError,
    join_path,
    opt_float,
    opt_price,
    opt_str,
    opt_text,
    opt_unix_time,
    req_id,
    str_list,
)
from kg.rejects import RejectLog
from kg.schema import Interaction, Product

INTERACTION_KINDS = frozenset({"rating", "review", "view", "cart", "purchase", "sequence"})
PRODUCT_KEYS = ("id", "title", "description", "brand", "category", "price")
INTERACTION_KEYS = ("user", "item", "rating", "ts", "kind")
DEFAULT_PRODUCT_COLUMNS = {k: k for k in PRODUCT_KEYS}
PARQUET_MAGIC = b"PAR1"
CATEGORY_SEP = ">"  # between the levels of a category path in one column


def parse_columns(text: str, keys: tuple[str, ...] = PRODUCT_KEYS) -> dict[str, str]:
    """`"id=sku,title=name"` → `{"id": "sku", "title": "name"}`; keys not given map to
    themselves; an unknown key or a malformed pair is an `InvalidArgumentError`."""
    columns = {k: k for k in keys}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        key, sep, column = (part.strip() for part in pair.partition("="))
        if not sep or not column:
            raise InvalidArgumentError(f"column mapping {pair!r}: expected KEY=COLUMN")
        if key not in keys:
            raise InvalidArgumentError(
                f"column mapping {pair!r}: unknown key {key!r} (known: {', '.join(keys)})"
            )
        columns[key] = column
    return columns


def is_parquet(path: str | Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == PARQUET_MAGIC
    except OSError:
        return False  # the reader reports it


def read_rows(path: str | Path, log: RejectLog) -> Iterator[tuple[int, dict]]:
    """(line or row number, row as a dict) from a CSV, JSON-lines or Parquet table."""
    if not is_parquet(path):
        yield from read_table(path, log)
        return
    import pyarrow.parquet as pq  # only Parquet input pays for pyarrow

    number = 0
    try:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=65_536):
            for row in batch.to_pylist():
                number += 1
                yield number, {k: _plain(v) for k, v in row.items()}
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        log.add(path, number, f"unreadable file: {exc}")


def _plain(value: object) -> object:
    """Parquet timestamps as unix seconds (naive ones taken as UTC), like the text formats."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return value


def _path(value: object, sep: str) -> str:
    if isinstance(value, str):
        return join_path(value.split(sep))
    return join_path(str_list(value, "category"))


def _product(row: dict, columns: Mapping[str, str], sep: str) -> Product:
    col = columns.get
    category = _path(row.get(col("category", "")), sep)
    return Product(
        id=req_id(row, columns["id"]),
        title=opt_str(row, col("title", "")),
        description=opt_text(row, col("description", "")),
        brand=opt_str(row, col("brand", "")).strip() or None,
        categories=[category] if category else [],
        price=opt_price(row, col("price", "")),
    )


def _interaction(row: dict, columns: Mapping[str, str], kind: str) -> Interaction:
    col = columns.get
    kind = opt_str(row, col("kind", "")) or kind
    if kind not in INTERACTION_KINDS:
        raise RowError(f"unknown interaction kind {kind!r} (known: {sorted(INTERACTION_KINDS)})")
    return Interaction(
        user=req_id(row, columns["user"]),
        product=req_id(row, columns["item"]),
        rating=opt_float(row.get(col("rating", "")), "rating"),
        ts=opt_unix_time(row.get(col("ts", "")), "ts"),
        kind=kind,
        price=opt_price(row, col("price", "")),
        session=opt_str(row, col("session", "")).strip() or None,
    )


@gc_paused
def read_table_catalogue(
    path: str | Path,
    products: Mapping[str, str] | None = None,
    interactions: Mapping[str, str] | None = None,
    log: RejectLog | None = None,
    *,
    category_sep: str = CATEGORY_SEP,
    kind: str = "rating",
) -> ReadCatalogue:
    """Products and/or interactions from one table; a row failing either part is rejected
    whole, so a product never appears without the event that named it or vice versa."""
    log = resolve_log(log)
    catalogue = ReadCatalogue()
    for lineno, row in read_rows(path, log):
        try:
            product = _product(row, products, category_sep) if products else None
            interaction = _interaction(row, interactions, kind) if interactions else None
        except RowError as exc:
            log.add(path, lineno, str(exc), str(row))
            continue
        if interaction is not None:
            # An event row: its product part merges quietly (prices move between events).
            catalogue.interactions.append(interaction)
            source = None
        else:
            source = RowSource(log, path, lineno, row)
        if product is not None:
            catalogue.add_product(product, source)
    return catalogue
