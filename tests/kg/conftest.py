"""Fixtures shared by the kg tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kg.stores import open_store


@pytest.fixture(params=["embedded", "neo4j"])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URI for an empty store of each kind (the Neo4j one is cleared again afterwards)."""
    if request.param == "embedded":
        yield f"embedded:{tmp_path / 'graph'}"
        return
    settings = request.getfixturevalue("neo4j_clean")
    yield settings.uri
    with open_store(settings.uri) as store:
        store.clear()  # in memory-bounded batches, for the next test's fixture
