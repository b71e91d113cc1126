"""Store URIs and their secrets: a password given in a URI (`bolt://user:password@host:port`)
is split off for the driver, and every URI or message shown to a person goes through `redact`."""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

# scheme://user:password@ — the password runs to the last `@` of the authority.
_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/?#@\s]*):[^/?#\s]*@")


def redact(text: str) -> str:
    """`text` (a URI, or any message holding URIs) with each URI's password shown as ***."""
    return _PASSWORD.sub(r"\1:***@", text)


def split_credentials(uri: str) -> tuple[str, str | None, str | None]:
    """(the URI without user info, user, password); user and password are None if not given."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri, None, None
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    bare = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
    return bare, user, password
