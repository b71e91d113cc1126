"""The gnn tests reuse the Beauty slice of the fusion tests (one loader for the whole suite)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from torch_geometric.data import HeteroData

_spec = importlib.util.spec_from_file_location(
    "fusion_fixtures", Path(__file__).parents[1] / "fusion" / "conftest.py"
)
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)


@pytest.fixture(scope="session")
def beauty() -> HeteroData:
    """The first 1,000 Beauty users, their products and the edges among those products."""
    return _fixtures.load_beauty(1000)
