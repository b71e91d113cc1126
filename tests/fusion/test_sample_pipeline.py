"""The README's main command on a clone with nothing beside it: `kgrec pipeline` without a
catalogue falls back to the in-repo Magazine sample and trains something worth having (here on
the embedded store, 2 epochs)."""

from __future__ import annotations

import json
import traceback

import pytest
from typer.testing import CliRunner

from fusion.cli import app
from fusion.model.checkpoint import CARD, read_meta

pytestmark = pytest.mark.slow


def test_pipeline_runs_on_the_in_repo_sample(tmp_path, monkeypatch):
    monkeypatch.setenv("KGREC_DATA", str(tmp_path / "nothing-here"))
    monkeypatch.chdir(tmp_path)  # the report goes to ./artifacts
    store, out = f"embedded:{tmp_path / 'store'}", tmp_path / "model"
    args = ["pipeline", "--store", store, "--epochs", "2", "--max-minutes", "5", "--out", out]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, f"stdout: {result.stdout}\nstderr: {result.stderr}\n" + "".join(
        traceback.format_exception(*result.exc_info)
    )
    assert "using the in-repo Magazine sample" in result.stdout
    [report] = json.loads((tmp_path / "artifacts" / "evaluation.json").read_text())
    assert report["num_products"] == 300 and report["num_queries"] > 150
    recall = {name: scores["recall@20"] for name, scores in report["results"].items()}
    assert recall["fused"] > recall["text-only"] + 0.1  # the graph adds something
    assert read_meta(out)["data"]["nodes"]["product"] > 300  # stubs of outside references
    assert "related / also_bought" in (out / CARD).read_text()
    assert "answers for" in result.stdout  # the sample product's related items
