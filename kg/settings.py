"""Environment settings: the KGREC_* and NEO4J_* variables kgrec reads are read here, at call
time (so a changed environment is seen); README "Configuration" lists them. One exception:
KGREC_CHECKPOINT is the default of the CLI's --checkpoint option, read by the CLI parser."""

from __future__ import annotations

import os
from pathlib import Path

from kg.errors import ConfigError


def _path(var: str, default: Path) -> Path:
    value = os.environ.get(var)
    return Path(value).expanduser() if value else default


def cache_dir() -> Path:
    """KGREC_CACHE: jar and text-vector caches (default ~/.cache/kgrec)."""
    return _path("KGREC_CACHE", Path.home() / ".cache" / "kgrec")


def text_vector_cache() -> Path:
    """Where product text vectors are cached: $KGREC_CACHE/text_vectors."""
    return cache_dir() / "text_vectors"


def neo4j_home() -> Path:
    """KGREC_NEO4J_HOME, else $KGREC_HOME/neo4j (default ~/.local/share/kgrec/neo4j)."""
    kgrec_home = _path("KGREC_HOME", Path.home() / ".local" / "share" / "kgrec")
    return _path("KGREC_NEO4J_HOME", kgrec_home / "neo4j")


def neo4j_port(which: str, default: int) -> int:
    """KGREC_NEO4J_BOLT_PORT / KGREC_NEO4J_HTTP_PORT (`which` = "bolt" or "http")."""
    var = f"KGREC_NEO4J_{which.upper()}_PORT"
    value = os.environ.get(var)
    if not value:
        return default
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ConfigError(f"{var}={value!r} is not a TCP port")
    return int(value)


def neo4j_memory(which: str, default: str) -> str:
    """KGREC_NEO4J_HEAP / KGREC_NEO4J_PAGECACHE (`which` = "heap" or "pagecache")."""
    return os.environ.get(f"KGREC_NEO4J_{which.upper()}") or default


def neo4j_uri() -> str | None:
    """NEO4J_URI: an existing server to use instead of the local one."""
    return os.environ.get("NEO4J_URI") or None


def neo4j_user() -> str | None:
    return os.environ.get("NEO4J_USER") or None


def neo4j_password() -> str | None:
    """NEO4J_PASSWORD (None when unset; an empty value is a value)."""
    return os.environ.get("NEO4J_PASSWORD")


def debug() -> bool:
    """KGREC_DEBUG=1: tracebacks instead of one-line errors."""
    return bool(os.environ.get("KGREC_DEBUG"))
