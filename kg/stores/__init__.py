"""Graph stores: `open_store(uri)` picks the backend from a URI."""

from __future__ import annotations

from kg.stores.base import Progress, Snapshot, Store, StoreError
from kg.stores.embedded import EmbeddedStore
from kg.stores.neo4j_store import Neo4jStore
from kgrec import settings as env

__all__ = [
    "EmbeddedStore",
    "Neo4jStore",
    "Progress",
    "Snapshot",
    "Store",
    "StoreError",
    "open_store",
]

EMBEDDED_PREFIX = "embedded:"
NEO4J_SCHEMES = ("bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc")


def open_store(uri: str | None = None) -> Store:
    """`embedded:PATH` → EmbeddedStore; `bolt://…`/`neo4j://…` → Neo4jStore with credentials
    from NEO4J_USER/NEO4J_PASSWORD or the local server's; None → the local server, started if
    needed."""
    if uri is not None and uri.startswith(EMBEDDED_PREFIX):
        path = uri.removeprefix(EMBEDDED_PREFIX)
        if not path:
            raise StoreError("embedded store URI needs a directory: embedded:PATH")
        return EmbeddedStore(path)
    if uri is not None and uri.partition("://")[0] not in NEO4J_SCHEMES:
        raise StoreError(
            f"unknown store URI {uri!r}: expected bolt://HOST:PORT, neo4j://HOST:PORT or "
            "embedded:PATH"
        )
    # Imported here: provisioning code is only needed when a server is involved.
    from kg import server

    try:
        if uri is None:
            settings = server.ensure_running()
            return Neo4jStore(settings.uri, settings.user, settings.password)
        password = env.neo4j_password()
        if password is not None:
            return Neo4jStore(uri, env.neo4j_user() or server.USER, password)
        settings = server.connection_settings()
        return Neo4jStore(uri, settings.user, settings.password)
    except server.ServerError as exc:
        raise StoreError(f"Neo4j at {uri or 'the local server'}: {exc}") from exc
