"""Amazon product metadata, 2018 layout: one JSON object per line (`asin`, `description` as a
list, `category` as one root->leaf list, `also_buy`/`also_view`, `price` as text)."""

from __future__ import annotations

import json
from pathlib import Path

from kg.readers.base import ReadCatalogue, Record, read_records, resolve_log
from kg.readers.fields import (
    join_path,
    opt_id_list,
    opt_price,
    opt_str,
    opt_str_list,
    opt_text,
    req_id,
)
from kg.rejects import RejectLog
from kg.schema import Product, Rel


def _record(obj: dict) -> Record:
    path = join_path(opt_str_list(obj, "category"))
    product = Product(
        id=req_id(obj, "asin"),
        title=opt_str(obj, "title"),
        description=opt_text(obj, "description"),
        brand=opt_str(obj, "brand").strip() or None,
        categories=[path] if path else [],
        price=opt_price(obj, "price"),
    )
    relations = {
        Rel.ALSO_BOUGHT: opt_id_list(obj, "also_buy"),
        Rel.ALSO_VIEWED: opt_id_list(obj, "also_view"),
    }
    return product, relations


def read_amazon2018(path: str | Path, log: RejectLog | None = None) -> ReadCatalogue:
    """Products and also_bought/also_viewed edges (targets may lie outside the catalogue)."""
    return read_records(path, resolve_log(log), json.loads, _record)
