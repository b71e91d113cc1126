"""One entry point for every layout: detect it from the path's first lines (or take `fmt`),
read products, optionally add interactions from a second file."""

from __future__ import annotations

import ast
import json
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path

from kg.errors import InvalidArgumentError
from kg.readers.amazon2014 import read_amazon2014
from kg.readers.amazon2018 import read_amazon2018
from kg.readers.amazon2023 import read_amazon2023
from kg.readers.base import ReadCatalogue, first_lines, resolve_log
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
    """The layout of `path` from its shape and first lines; None if it cannot be read.
    `tables_only`: one of `TABLE_FORMATS` (a column mapping says the file is the user's own).

    A table is told by its header (the first line). Object-per-line files are told by a vote
    of their first `DETECT_LINES` lines, each parsed: the most common layout wins, a tie goes
    to the one seen first, and a line that parses as no object has no vote (so one broken
    line does not pick the layout; the reader rejects it)."""
    path = Path(path)
    if path.is_dir():
        return "beauty" if beauty_file(path, "product.txt").exists() else None
    if is_parquet(path):
        return "parquet"
    head = first_lines(path, resolve_log(log))
    if not head:
        return None
    first = head[0][1].lstrip()
    if tables_only:
        return "jsonl" if first.startswith("{") else "csv"
    if not first.startswith("{"):
        return "rees46" if first.startswith("event_time,event_type,") else "csv"
    votes = Counter(layout for _, line in head if (layout := _object_layout(line)))
    return votes.most_common(1)[0][0] if votes else "jsonl"


def _object_layout(line: str) -> str | None:
    """The layout one object line is in; None when it is no object as JSON or Python literal."""
    try:
        obj = json.loads(line)
    except ValueError:
        try:
            obj = ast.literal_eval(line)  # the 2014 layout: Python literals, single quotes
        except (ValueError, SyntaxError, RecursionError, MemoryError):
            return None
        return "amazon2014" if isinstance(obj, dict) else None
    if not isinstance(obj, dict):
        return None
    if "parent_asin" in obj:
        return "amazon2023"
    return "amazon2018" if "asin" in obj else "jsonl"


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
