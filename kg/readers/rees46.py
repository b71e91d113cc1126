"""REES46 e-commerce events CSV (`event_time,event_type,product_id,category_id,category_code,
brand,price,user_id,user_session`): products come from the events that name them (brand, price,
dotted `category_code` as the path), each event is an interaction of kind view/cart/purchase
with its price and session."""

from __future__ import annotations

from pathlib import Path

from kg.readers.base import ReadCatalogue
from kg.readers.generic import read_table_catalogue
from kg.rejects import RejectLog

PRODUCT_COLUMNS = {
    "id": "product_id",
    "brand": "brand",
    "category": "category_code",
    "price": "price",
}
EVENT_COLUMNS = {
    "user": "user_id",
    "item": "product_id",
    "ts": "event_time",
    "kind": "event_type",
    "price": "price",
    "session": "user_session",
}


def read_rees46(path: str | Path, log: RejectLog | None = None) -> ReadCatalogue:
    """Products (merged across their events) and interactions with ts in unix seconds. A row
    cut short (the published sample ends mid-row) is rejected with its field count."""
    return read_table_catalogue(path, PRODUCT_COLUMNS, EVENT_COLUMNS, log, category_sep=".")
