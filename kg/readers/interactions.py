"""User-item interactions: review JSON lines (2014/2018 `reviewerID, asin, overall,
unixReviewTime`; 2023 `user_id, parent_asin, rating, timestamp` in milliseconds) and ratings CSV
(`user,item,rating[,timestamp]`, by position, with or without a header line)."""

from __future__ import annotations

import json
from pathlib import Path

from kg.readers.base import (
    ReadCatalogue,
    first_lines,
    gc_paused,
    parse_lines,
    read_csv,
    resolve_log,
)
from kg.readers.fields import RowError, as_object, id_value, opt_float, req_id
from kg.rejects import RejectLog
from kg.schema import Interaction


def _review(line: str) -> Interaction:
    obj = as_object(json.loads(line))
    if "timestamp" in obj:  # 2023 layout: milliseconds
        ts = opt_float(obj["timestamp"], "timestamp")
        ts = None if ts is None else ts / 1000.0
    else:
        ts = opt_float(obj.get("unixReviewTime"), "unixReviewTime")
    rating = obj.get("overall", obj.get("rating"))
    return Interaction(
        user=req_id(obj, "reviewerID", "user_id"),
        # 2023 catalogues are keyed by parent_asin, so it wins over the variant's asin.
        product=req_id(obj, "parent_asin", "asin"),
        rating=opt_float(rating, "rating"),
        ts=ts,
        kind="review",
    )


def _rating_row(row: list[str]) -> Interaction:
    if not 3 <= len(row) <= 4:
        raise RowError(f"expected user,item,rating[,timestamp], got {len(row)} fields")
    return Interaction(
        user=id_value(row[0], "user"),
        product=id_value(row[1], "item"),
        rating=opt_float(row[2], "rating"),
        ts=opt_float(row[3], "timestamp") if len(row) == 4 else None,
    )


def _is_header(row: list[str]) -> bool:
    try:
        opt_float(row[2] if len(row) > 2 else "", "rating")
    except RowError:
        return True
    return False


@gc_paused
def read_interactions(path: str | Path, log: RejectLog | None = None) -> ReadCatalogue:
    """A catalogue holding only interactions (products are whatever the metadata says)."""
    log = resolve_log(log)
    catalogue = ReadCatalogue()
    head = first_lines(path, log, 1)
    if not head:
        return catalogue
    if head[0][1].lstrip().startswith("{"):
        catalogue.interactions.extend(i for _, _, i in parse_lines(path, log, _review))
        return catalogue
    for lineno, row in read_csv(path, log):
        if lineno == head[0][0] and _is_header(row):
            log.header(path)
            continue
        try:
            catalogue.interactions.append(_rating_row(row))
        except RowError as exc:
            log.add(path, lineno, str(exc), ",".join(row))
    return catalogue
