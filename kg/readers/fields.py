"""Typed access to the fields of one input row. Each helper returns the value in the schema's
type or raises `RowError` naming the field, which the reader logs as a reject for that row."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

from kg.errors import KgrecError
from kg.schema import CATEGORY_PATH_SEP
from kg.text import UNSAFE_CHARS

_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


class RowError(KgrecError, ValueError):
    """A row that cannot be used; the reader logs it (file, line) and moves on."""


def describe(value: object) -> str:
    return type(value).__name__


def req_id(row: dict, *keys: str) -> str:
    """The first of `keys` present with a non-empty value, as a string."""
    for key in keys:
        if row.get(key) not in (None, ""):
            return id_value(row[key], key)
    raise RowError(f"missing {' / '.join(keys)}")


def id_value(value: object, what: str) -> str:
    """An id as given (outer whitespace trimmed). One holding a control or bidi character is
    rejected, not cleaned: a silently altered id would merge with or shadow another."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise RowError(f"{what}: expected a string id, got {describe(value)}")
    text = str(value).strip()
    if not text:
        raise RowError(f"missing {what}")
    if unsafe := UNSAFE_CHARS.search(text):
        raise RowError(f"{what}: id {text!r} holds control character U+{ord(unsafe.group()):04X}")
    return text


def opt_str(row: dict, key: str) -> str:
    value = row.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RowError(f"{key}: expected a string, got {describe(value)}")
    return value


def opt_text(row: dict, key: str) -> str:
    """A text field that some layouts give as a list of paragraphs."""
    value = row.get(key)
    if isinstance(value, list):
        if not all(isinstance(v, str) for v in value):
            raise RowError(f"{key}: expected a list of strings")
        return "\n".join(v for v in value if v.strip())
    return opt_str(row, key)


def str_list(value: object, what: str) -> list[str]:
    """A list of strings (blank ones dropped); None or "" is the empty list."""
    if value in (None, ""):
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RowError(f"{what}: expected a list of strings, got {describe(value)}")
    return [v for v in value if v.strip()]


def opt_str_list(row: dict, key: str) -> list[str]:
    return str_list(row.get(key), key)


def opt_id_list(row: dict, key: str) -> list[str]:
    """A list of product ids (related products), each checked as `id_value` does."""
    return [id_value(v, key) for v in opt_str_list(row, key)]


def opt_price(row: dict, key: str) -> float | None:
    """A number, or a string like "$12.99" / "1,299.00" (a range reads as its lower bound).
    A string that is no price at all becomes None: scraped page text in the price field is
    the norm in the 2018 layout, not a broken row."""
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise RowError(f"{key}: expected a price, got {describe(value)}")
    if not isinstance(value, str):
        return _finite(float(value), key, value)
    match = _NUMBER.match(value.strip().lstrip("$").replace(",", ""))
    return _finite(float(match.group()), key, value) if match else None


def opt_float(value: object, what: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise RowError(f"{what}: expected a number, got {describe(value)}")
    try:
        number = float(value)
    except ValueError:
        raise RowError(f"{what}: expected a number, got {value!r}") from None
    return _finite(number, what, value)


def _finite(number: float, what: str, value: object) -> float | None:
    # NaN is how tables (pandas, Parquet) write a missing number; an infinity is no value.
    if number != number:
        return None
    if math.isinf(number):
        raise RowError(f"{what}: expected a finite number, got {value!r}")
    return number


def opt_unix_time(value: object, what: str) -> float | None:
    """Unix seconds from a number or an ISO date-time ("2019-10-01 00:00:00 UTC" included);
    a date-time without a zone is taken as UTC."""
    if isinstance(value, str) and value.strip() and not _NUMBER.fullmatch(value.strip()):
        text = value.strip().removesuffix(" UTC").removesuffix("Z")
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise RowError(f"{what}: expected a time, got {value!r}") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    return opt_float(value, what)


def as_object(value: object) -> dict:
    """A decoded line that must be one JSON object / Python dict."""
    if not isinstance(value, dict):
        raise RowError(f"expected an object, got {describe(value)}")
    return value


def join_path(parts: list[str]) -> str:
    """A root->leaf category path as one category id."""
    return CATEGORY_PATH_SEP.join(p.strip() for p in parts if p.strip())
