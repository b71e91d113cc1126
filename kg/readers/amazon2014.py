"""Amazon product metadata, 2014 layout: one Python-literal dict per line (single quotes, so
not JSON), `categories` as a list of root->leaf lists, `related` holding the product lists."""

from __future__ import annotations

import ast
from pathlib import Path

from kg.readers.base import ReadCatalogue, Record, read_records, resolve_log
from kg.readers.fields import (
    RowError,
    describe,
    join_path,
    opt_id_list,
    opt_price,
    opt_str,
    opt_text,
    req_id,
    str_list,
)
from kg.rejects import RejectLog
from kg.schema import Product, Rel

_RELATED = {
    "also_bought": Rel.ALSO_BOUGHT,
    "also_viewed": Rel.ALSO_VIEWED,
    "bought_together": Rel.BOUGHT_TOGETHER,
}


def _paths(obj: dict) -> list[str]:
    value = obj.get("categories") or []
    if not isinstance(value, list) or not all(isinstance(p, list) for p in value):
        raise RowError("categories: expected a list of root->leaf lists")
    paths = [join_path(str_list(p, "categories")) for p in value]
    return [p for p in paths if p]


def _record(obj: dict) -> Record:
    related = obj.get("related") or {}
    if not isinstance(related, dict):
        raise RowError(f"related: expected a dict, got {describe(related)}")
    product = Product(
        id=req_id(obj, "asin"),
        title=opt_str(obj, "title"),
        description=opt_text(obj, "description"),
        brand=opt_str(obj, "brand").strip() or None,
        categories=_paths(obj),
        price=opt_price(obj, "price"),
    )
    return product, {rel: opt_id_list(related, key) for key, rel in _RELATED.items()}


def read_amazon2014(path: str | Path, log: RejectLog | None = None) -> ReadCatalogue:
    """Products with all three product relations (targets may lie outside the catalogue)."""
    return read_records(path, resolve_log(log), ast.literal_eval, _record)
