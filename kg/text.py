"""Turning scraped HTML fragments into plain text.

Catalogue text is scraped from product pages: complete tags, tags cut off at either end
(`<span class="a-size-medium"` with no `>`, or the tail `Magazines" />`), script/style blocks
and HTML entities (`&amp;`, `&#39;`) all occur and none of it is wanted in a title. Neither are
control characters (NUL, other C0 controls, DEL) nor the bidi embedding/override/isolate
controls, which make a title display as something else than it is (`UNSAFE_CHARS`): they are
removed from text, and an id holding one is rejected by the readers.
"""

from __future__ import annotations

import html
import re

_BLOCK = re.compile(r"<(script|style)\b.*?(?:</\1\s*>|$)", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^<>]*>")
# A tag opened but never closed: runs to the end of the text.
_OPEN_TAIL = re.compile(r"<[a-zA-Z/!][^<>]*$")
# The end of a tag whose start was cut off: text up to a closing quote then `>` or `/>`.
_CLOSE_HEAD = re.compile(r'^[^<>"]*"\s*/?>')
_SPACE = re.compile(r"\s+")
# C0 controls and DEL, bidi embeddings/overrides U+202A-U+202E and isolates U+2066-U+2069.
UNSAFE_CHARS = re.compile("[\x00-\x1f\x7f\u202a-\u202e\u2066-\u2069]")
_MAX_UNESCAPE = 3


def strip_html(text: str) -> str:
    """Plain text of an HTML fragment: tags (whole or cut off) removed, entities decoded,
    `UNSAFE_CHARS` removed (the whitespace ones become spaces), whitespace collapsed. Tags are
    replaced by a space so words on either side stay apart."""
    if not text:
        return ""
    text = _BLOCK.sub(" ", text)
    text = _CLOSE_HEAD.sub(" ", text)
    text = _TAG.sub(" ", text)
    text = _OPEN_TAIL.sub(" ", text)
    # Entities are decoded after tags so an escaped `&lt;b&gt;` stays as visible text; some
    # sources escaped twice (`Kirk&amp;#39;s`), so decode until nothing changes.
    for _ in range(_MAX_UNESCAPE):
        decoded = html.unescape(text)
        if decoded == text:
            break
        text = decoded
    text = UNSAFE_CHARS.sub(_unsafe_replacement, text)  # after decoding: `&#x202E;` is one too
    return _SPACE.sub(" ", text).strip()


def _unsafe_replacement(match: re.Match[str]) -> str:
    return " " if match.group().isspace() else ""
