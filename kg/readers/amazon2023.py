"""Amazon product metadata, 2023 layout: JSON lines keyed by `parent_asin`, `store` as brand,
`categories` as one root->leaf list, numeric `price`, optional `bought_together`."""

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
    path = join_path(opt_str_list(obj, "categories"))
    product = Product(
        id=req_id(obj, "parent_asin"),
        title=opt_str(obj, "title"),
        description=opt_text(obj, "description"),
        brand=opt_str(obj, "store").strip() or None,
        categories=[path] if path else [],
        price=opt_price(obj, "price"),
    )
    return product, {Rel.BOUGHT_TOGETHER: opt_id_list(obj, "bought_together")}


def read_amazon2023(path: str | Path, log: RejectLog | None = None) -> ReadCatalogue:
    """Products and bought_together edges where the file has them."""
    return read_records(path, resolve_log(log), json.loads, _record)
