"""The knowledge-graph schema: the fixed allow-list of labels and relationship types, and the
row types of the in-memory catalogue (`kg.catalogue`) that readers produce, cleaning normalises
and stores write.

Labels and relationship types used in Cypher come only from the constants here, never from data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple


class Label(StrEnum):
    PRODUCT = "Product"
    BRAND = "Brand"
    CATEGORY = "Category"
    USER = "User"


class Rel(StrEnum):
    MADE_BY = "MADE_BY"  # Product -> Brand
    IN_CATEGORY = "IN_CATEGORY"  # Product -> Category
    SUBCATEGORY_OF = "SUBCATEGORY_OF"  # Category -> Category (child -> parent)
    ALSO_BOUGHT = "ALSO_BOUGHT"  # Product -> Product
    ALSO_VIEWED = "ALSO_VIEWED"  # Product -> Product
    BOUGHT_TOGETHER = "BOUGHT_TOGETHER"  # Product -> Product
    INTERACTED = "INTERACTED"  # User -> Product {key, kind, ts, rating, price, session}: an event


PRODUCT_RELATIONS: tuple[Rel, ...] = (Rel.ALSO_BOUGHT, Rel.ALSO_VIEWED, Rel.BOUGHT_TOGETHER)

# (source label, relationship, target label) for every relationship type.
REL_ENDPOINTS: dict[Rel, tuple[Label, Label]] = {
    Rel.MADE_BY: (Label.PRODUCT, Label.BRAND),
    Rel.IN_CATEGORY: (Label.PRODUCT, Label.CATEGORY),
    Rel.SUBCATEGORY_OF: (Label.CATEGORY, Label.CATEGORY),
    Rel.ALSO_BOUGHT: (Label.PRODUCT, Label.PRODUCT),
    Rel.ALSO_VIEWED: (Label.PRODUCT, Label.PRODUCT),
    Rel.BOUGHT_TOGETHER: (Label.PRODUCT, Label.PRODUCT),
    Rel.INTERACTED: (Label.USER, Label.PRODUCT),
}

# Key property of every label (uniqueness constraints are created on these).
KEY = "id"

CATEGORY_PATH_SEP = " > "


@dataclass
class Product:
    """One product. `in_catalogue=False` marks a stub: a product referenced by a relation or an
    interaction but absent from the catalogue itself."""

    id: str
    title: str = ""
    description: str = ""
    brand: str | None = None
    # Category node ids (full root->leaf path joined by CATEGORY_PATH_SEP for hierarchies,
    # the bare name for sources that only have sets).
    categories: list[str] = field(default_factory=list)
    price: float | None = None
    in_catalogue: bool = True

    @property
    def display_title(self) -> str:
        """The title, or the start of the description where the source had no usable title."""
        return self.title or self.description[:80]


@dataclass
class Category:
    id: str  # full path (hierarchies) or name (sets)
    name: str  # leaf name
    parent: str | None = None  # id of the parent category


class Edge(NamedTuple):
    """One product link (a tuple: hashed and compared in C)."""

    rel: Rel
    src: str
    dst: str


@dataclass
class Interaction:
    user: str
    product: str
    rating: float | None = None
    ts: float | None = None  # unix seconds, or sequence position where the source has no time
    kind: str = "rating"  # rating | review | view | cart | purchase | sequence
    price: float | None = None  # the price paid or seen at the event, where the source has one
    session: str | None = None  # the source's session id, where it has one
