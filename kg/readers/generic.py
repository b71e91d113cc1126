"""Users' own exports: CSV (with a header line) or JSON lines, columns named by a mapping.

Product mapping keys: `id` (required), `title`, `description`, `brand`, `category` (a
root->leaf path in one column, split by `category_sep`, or a JSON list), `price`.
Interaction mapping keys: `user`, `item` (required), `rating`, `ts` (unix seconds or an ISO
date-time), `kind` (a column; else every row gets the `kind` argument), `price` (paid or seen at
the event), `session`.
One file may carry both (an event log names the product on every row).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from kg.readers.base import ReadCatalogue, gc_paused, read_table, resolve_log
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
DEFAULT_PRODUCT_COLUMNS = {
    k: k for k in ("id", "title", "description", "brand", "category", "price")
}


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
    category_sep: str = ">",
    kind: str = "rating",
) -> ReadCatalogue:
    """Products and/or interactions from one table; a row failing either part is rejected
    whole, so a product never appears without the event that named it or vice versa."""
    log = resolve_log(log)
    catalogue = ReadCatalogue()
    for lineno, row in read_table(path, log):
        try:
            product = _product(row, products, category_sep) if products else None
            interaction = _interaction(row, interactions, kind) if interactions else None
        except RowError as exc:
            log.add(path, lineno, str(exc), str(row))
            continue
        if product is not None:
            catalogue.add_product(product)
        if interaction is not None:
            catalogue.interactions.append(interaction)
    return catalogue
