"""Product fields → one clean text for the encoder."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from text_encoder.errors import TextEncoderError

_TAG = re.compile(r"<[^>]+>")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SPACE = re.compile(r"\s+")


class UnreadableTextError(TextEncoderError, ValueError):
    """A text value is not a string (or UTF-8 bytes) that can be encoded."""


@dataclass(frozen=True)
class TextTemplate:
    """Which fields make a product's text, in which order, with which labels.

    Description goes last by default: texts longer than the model's token limit are cut at
    the end, so the title, brand and category survive truncation.
    """

    fields: tuple[str, ...] = ("title", "brand", "categories", "description")
    labels: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({"brand": "Brand: ", "categories": "Category: "})
    )
    separator: str = ". "
    path_separator: str = " > "  # between levels of one category path
    # Rough pre-cut so huge descriptions are not tokenised in full; the tokenizer makes the
    # exact cut at the model's token limit.
    max_chars: int = 4000


DEFAULT_TEMPLATE = TextTemplate()
DESCRIPTIVE_FIELDS = ("title", "description")


def ensure_text(value: object, where: str) -> str:
    """`value` as a str the tokenizer can take, or `UnreadableTextError` naming `where`."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UnreadableTextError(f"{where}: bytes are not valid UTF-8 ({exc})") from exc
    if not isinstance(value, str):
        raise UnreadableTextError(f"{where}: expected text, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates from a bad decode upstream
        raise UnreadableTextError(f"{where}: text is not valid Unicode ({exc})") from exc
    return value


def clean_text(text: str) -> str:
    """Strip HTML tags and entities, control characters and repeated whitespace."""
    text = _TAG.sub(" ", html.unescape(text))
    return _SPACE.sub(" ", _CONTROL.sub(" ", text)).strip()


def render_product_text(fields: Mapping[str, object], template: TextTemplate | None = None) -> str:
    """One product's text, e.g. "Gel 1oz. Brand: Xtreme. Category: Beauty > Hair. Holds…".

    Missing or empty fields are skipped, so a product without title or description still
    gets a text from its brand and categories (or "" when it has nothing at all).
    """
    template = template or DEFAULT_TEMPLATE
    if not isinstance(fields, Mapping):
        raise UnreadableTextError(
            f"product text fields must be a mapping, got {type(fields).__name__}"
        )
    parts = []
    for name in template.fields:
        value = _field_text(fields.get(name), name, template.path_separator)
        if value:
            parts.append(template.labels.get(name, "") + value)
    return template.separator.join(parts)[: template.max_chars]


def has_descriptive_text(fields: Mapping[str, object]) -> bool:
    """Whether a product has its own title or description (not just brand/category)."""
    return any(_field_text(fields.get(name), name, " ") for name in DESCRIPTIVE_FIELDS)


def _field_text(value: object, name: str, path_separator: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):  # missing, incl. pandas
        return ""
    if isinstance(value, list | tuple):
        # Categories: names or paths (lists of levels); keep each distinct one once, in order.
        items = [
            path_separator.join(
                filter(None, (_field_text(level, name, path_separator) for level in item))
            )
            if isinstance(item, list | tuple)
            else _field_text(item, name, path_separator)
            for item in value
        ]
        return "; ".join(dict.fromkeys(item for item in items if item))
    return clean_text(ensure_text(value, f"field {name!r}"))
