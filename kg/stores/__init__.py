"""Graph stores: `open_store(uri)` picks the backend from a URI."""

from __future__ import annotations

from kg import settings as env
from kg.stores.base import Progress, Snapshot, Store, StoreError
from kg.stores.embedded import EmbeddedStore
from kg.stores.neo4j_store import Neo4jStore
from kg.stores.uri import redact, split_credentials

__all__ = [
    "EmbeddedStore",
    "Neo4jStore",
    "Progress",
    "Snapshot",
    "Store",
    "StoreError",
    "open_store",
    "redact",
]

EMBEDDED_PREFIX = "embedded:"
NEO4J_SCHEMES = ("bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc")


def open_store(uri: str | None = None) -> Store:
    """`embedded:PATH` → EmbeddedStore; `bolt://…`/`neo4j://…` → Neo4jStore with credentials
    from the URI (`bolt://user:password@host:port`, never printed: see `redact`), else
    NEO4J_USER/NEO4J_PASSWORD, else the local server's; None → the local server, started if
    needed."""
    if uri is not None and uri.startswith(EMBEDDED_PREFIX):
        path = uri.removeprefix(EMBEDDED_PREFIX)
        if not path:
            raise StoreError("embedded store URI needs a directory: embedded:PATH")
        return EmbeddedStore(path)
    if uri is not None and uri.partition("://")[0] not in NEO4J_SCHEMES:
        raise StoreError(
            f"unknown store URI {redact(repr(uri))}: expected bolt://HOST:PORT, "
            "neo4j://HOST:PORT or embedded:PATH"
        )
    # Imported here: provisioning code is only needed when a server is involved.
    from kg import server

    try:
        if uri is None:
            settings = server.ensure_running()
            return Neo4jStore(settings.uri, settings.user, settings.password)
        _, user, password = split_credentials(uri)
        if password is None:
            password = env.neo4j_password()
            user = user or env.neo4j_user()
        if password is not None:
            return Neo4jStore(uri, user or server.USER, password)
        settings = server.connection_settings()
        return Neo4jStore(uri, user or settings.user, settings.password)
    except server.ServerError as exc:
        raise StoreError(redact(f"Neo4j at {uri or 'the local server'}: {exc}")) from exc
