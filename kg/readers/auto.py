"""One entry point for every layout: detect it from the path (or take `fmt`), read products,
optionally add interactions from a second file."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

from kg.readers.amazon2014 import read_amazon2014
from kg.readers.amazon2018 import read_amazon2018
from kg.readers.amazon2023 import read_amazon2023
from kg.readers.base import ReadCatalogue, first_line, resolve_log
from kg.readers.beauty import beauty_file, read_beauty
from kg.readers.generic import (
    CATEGORY_SEP,
    DEFAULT_PRODUCT_COLUMNS,
    is_parquet,
    read_table_catalogue,
)
from kg.readers.interactions import read_interactions
from kg.readers.rees46 import read_rees46
from kg.rejects import RejectLog
from kgrec.errors import InvalidArgumentError

_READERS: dict[str, Callable[[Path, RejectLog], ReadCatalogue]] = {
    "amazon2014": read_amazon2014,
    "amazon2018": read_amazon2018,
    "amazon2023": read_amazon2023,
    "beauty": read_beauty,
    "rees46": read_rees46,
}
TABLE_FORMATS = ("csv", "jsonl", "parquet")  # users' own exports, read through a column mapping
FORMATS = (*_READERS, *TABLE_FORMATS)


def detect_format(
    path: str | Path, log: RejectLog | None = None, tables_only: bool = False
) -> str | None:
    """The layout of `path` from its shape and first line; None if it cannot be read.
    `tables_only`: one of `TABLE_FORMATS` (a column mapping says the file is the user's own)."""
    path = Path(path)
    if path.is_dir():
        return "beauty" if beauty_file(path, "product.txt").exists() else None
    if is_parquet(path):
        return "parquet"
    first = first_line(path, resolve_log(log))
    if first is None:
        return None
    line = first[1].lstrip()
    if tables_only:
        return "jsonl" if line.startswith("{") else "csv"
    if line.startswith("{'"):
        return "amazon2014"
    if line.startswith("{"):
        try:
            obj = json.loads(line)
        except ValueError:
            return "jsonl"  # a broken first line is the reader's to reject
        if isinstance(obj, dict) and "parent_asin" in obj:
            return "amazon2023"
        return "amazon2018" if isinstance(obj, dict) and "asin" in obj else "jsonl"
    return "rees46" if line.startswith("event_time,event_type,") else "csv"


def read_catalogue(
    path: str | Path,
    fmt: str = "auto",
    interactions: str | Path | None = None,
    log: RejectLog | None = None,
    *,
    columns: Mapping[str, str] | None = None,
    interaction_columns: Mapping[str, str] | None = None,
    category_sep: str = CATEGORY_SEP,
) -> ReadCatalogue:
    """Read a catalogue in any supported layout (`FORMATS`, or "auto" to detect it).

    `interactions` is a second file of interactions: review JSON lines / ratings CSV, or any
    table when `interaction_columns` maps its columns. `columns` and `category_sep` apply to
    the csv/jsonl/parquet product layouts (with `columns`, "auto" picks among those).
    Without a `log` the first bad row raises `BadInputError`.
    The result is raw: run `kg.cleaning.clean` on it before storing.
    """
    log = resolve_log(log)
    if fmt == "auto":
        fmt = detect_format(path, log, tables_only=columns is not None) or "unknown"
    if fmt in _READERS:
        catalogue = _READERS[fmt](Path(path), log)
    elif fmt in TABLE_FORMATS:
        products = columns or DEFAULT_PRODUCT_COLUMNS
        catalogue = read_table_catalogue(path, products, log=log, category_sep=category_sep)
    elif fmt == "unknown":
        return ReadCatalogue()  # unreadable: already logged by detection
    else:
        raise InvalidArgumentError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if interactions is not None:
        if interaction_columns:
            extra = read_table_catalogue(interactions, interactions=interaction_columns, log=log)
        else:
            extra = read_interactions(interactions, log)
        catalogue.interactions.extend(extra.interactions)
    return catalogue
