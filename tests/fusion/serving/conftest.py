"""A real recommendation checkpoint, trained once per session on a small Beauty slice in an
embedded store, for the tests that need the whole chain (forget, a `kgrec serve` process)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from fusion.cli import app
from kg.stores import EmbeddedStore
from tests.fusion.serving.test_recommender import beauty_slice

USERS = 60  # Beauty users in the slice: enough to train on, quick to encode


@pytest.fixture(scope="session")
def recommend_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(embedded store dir, checkpoint dir): a recommendation model trained for one epoch.
    Tests that change either copy them first."""
    work = tmp_path_factory.mktemp("recommend")
    EmbeddedStore(work / "graph").write(beauty_slice(USERS))
    args = [
        "train", "--task", "recommend", "--epochs", "1", "--dim", "16", "--max-minutes", "3",
        "--store", f"embedded:{work / 'graph'}", "--out", str(work / "model"),
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, f"{result.output}{result.exception!r}"
    return work / "graph", work / "model"
