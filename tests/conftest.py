"""Shared fixtures. Neo4j tests run against a dedicated, disposable server, never a user's own.

`neo4j_settings` starts, with the same `kg.server.ensure_running` users run, a test instance in
${KGREC_TEST_HOME:-/tmp/kgrec-test}/neo4j on 127.0.0.1 on two free ports (the ones its last run used
when they are still free or it is still running), unless
KGREC_TEST_NEO4J_URI (+ KGREC_TEST_NEO4J_USER, KGREC_TEST_NEO4J_PASSWORD) names a disposable
server. The jars come from the usual cache (${KGREC_CACHE:-~/.cache/kgrec}).

The test instance is left running when the session ends so that re-runs start fast; stop it with
`kgrec neo4j stop --home /tmp/kgrec-test/neo4j`. If it cannot start, Neo4j tests error with the
reason: they are never skipped.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import neo4j
import pytest

from kg import server

TEST_HOME = Path(os.environ.get("KGREC_TEST_HOME") or "/tmp/kgrec-test") / "neo4j"

# The shipped data sits beside the repository (../shared/data); KGREC_DATA overrides it.
# Test modules read it from the environment, which is set here before they are imported.
os.environ.setdefault("KGREC_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))


def pytest_sessionstart(session: pytest.Session) -> None:
    """Tests read slices of the real data: without it they would fail one by one, obscurely."""
    data = Path(os.environ["KGREC_DATA"])
    if not (data / "amazon-beauty-2014").is_dir():
        pytest.exit(f"the shared data is not at {data}: set KGREC_DATA to its directory", 1)


# Point kgrec's defaults at the test server before any test runs, so that code which falls back
# to connection_settings()/ensure_running() can never reach a user's own database.
for _var in ("NEO4J_URI", "NEO4J_USER", "NEO4J_PASSWORD"):
    os.environ.pop(_var, None)
    if os.environ.get(f"KGREC_TEST_{_var}"):
        os.environ[_var] = os.environ[f"KGREC_TEST_{_var}"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _test_ports() -> tuple[int, int]:
    """The test server's ports: those of its last run when it still runs or they are free (so
    a re-run reuses the server), else two free ones — never a fixed port another program holds."""
    unset = server.ServerConfig(home=TEST_HOME.absolute(), bolt_port=0, http_port=0)
    last = server.configured(unset)
    if last.bolt_port and (server.status(last).running or server.ports_free(last)):
        return last.bolt_port, last.http_port
    bolt = _free_port()
    http = _free_port()
    while http == bolt:
        http = _free_port()
    return bolt, http


_BOLT, _HTTP = _test_ports()
os.environ.update(
    KGREC_NEO4J_HOME=str(TEST_HOME),
    KGREC_NEO4J_BOLT_PORT=str(_BOLT),
    KGREC_NEO4J_HTTP_PORT=str(_HTTP),
    KGREC_NEO4J_HEAP="512m",
    KGREC_NEO4J_PAGECACHE="256m",
)


@pytest.fixture(scope="session")
def neo4j_settings() -> server.Neo4jSettings:
    """A running Neo4j for the whole session (the test instance, or KGREC_TEST_NEO4J_URI)."""
    try:
        # Generous: the first run downloads Neo4j, and CI machines are slow and shared.
        return server.ensure_running(timeout=600)
    except server.ServerError as error:
        pytest.fail(f"the test Neo4j server is not available: {error}", pytrace=False)


@pytest.fixture
def neo4j_clean(neo4j_settings: server.Neo4jSettings) -> server.Neo4jSettings:
    """The session server with an empty database: no nodes, no constraints, no user indexes."""
    auth = (neo4j_settings.user, neo4j_settings.password)
    with (
        neo4j.GraphDatabase.driver(neo4j_settings.uri, auth=auth) as driver,
        driver.session() as session,
    ):
        # Relationships first, in auto-commit batches: a DETACH DELETE of high-degree nodes
        # piles all their relationships into one transaction and exhausts the small heap.
        for query in (
            "MATCH ()-[r]->() CALL (r) { DELETE r } IN TRANSACTIONS OF 10000 ROWS",
            "MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS",
        ):
            session.run(query).consume()
        # Constraints first: they own their backing indexes.
        for show, drop in (
            ("SHOW CONSTRAINTS YIELD name", "CONSTRAINT"),
            ("SHOW INDEXES YIELD name, type WHERE type <> 'LOOKUP' RETURN name", "INDEX"),
        ):
            for name in session.run(show).value("name"):
                session.run(f"DROP {drop} {_quote(name)} IF EXISTS").consume()
    return neo4j_settings


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"
