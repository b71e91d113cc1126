"""Catalogue readers: one module per source layout, each returning a raw `Catalogue`
(`ReadCatalogue`) and logging bad rows to a `RejectLog`. Clean the result with
`kg.cleaning.clean` before storing it."""

from kg.readers.amazon2014 import read_amazon2014
from kg.readers.amazon2018 import read_amazon2018
from kg.readers.amazon2023 import read_amazon2023
from kg.readers.auto import FORMATS, detect_format, read_catalogue
from kg.readers.base import ReadCatalogue
from kg.readers.beauty import read_beauty
from kg.readers.generic import DEFAULT_PRODUCT_COLUMNS, INTERACTION_KINDS, read_table_catalogue
from kg.readers.interactions import read_interactions
from kg.readers.rees46 import read_rees46

__all__ = [
    "DEFAULT_PRODUCT_COLUMNS",
    "FORMATS",
    "INTERACTION_KINDS",
    "ReadCatalogue",
    "detect_format",
    "read_amazon2014",
    "read_amazon2018",
    "read_amazon2023",
    "read_beauty",
    "read_catalogue",
    "read_interactions",
    "read_rees46",
    "read_table_catalogue",
]
