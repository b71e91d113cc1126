"""The README's main command on a clone with nothing beside it: `kgrec pipeline` without a
catalogue falls back to the in-repo Magazine sample and trains something worth having (here on
the embedded store, 2 epochs). Its checkpoint is then refused on another catalogue, for a warm
start and for serving."""

from __future__ import annotations

import gzip
import json
import os
import re
import traceback
from itertools import islice
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from fusion.cli import app
from fusion.model.checkpoint import CARD, read_meta
from kg.samples import CATALOGUE, MAGAZINE, SAMPLE_DIR

pytestmark = pytest.mark.slow
SHARED = Path(os.environ["KGREC_DATA"]) / MAGAZINE


def run(*args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


def ok(*args: object) -> Result:
    result = run(*args)
    assert result.exit_code == 0, f"stdout: {result.stdout}\nstderr: {result.stderr}\n" + "".join(
        traceback.format_exception(*result.exc_info)
    )
    return result


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sample")


@pytest.fixture(scope="module")
def pipeline(work: Path) -> Result:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KGREC_DATA", str(work / "nothing-here"))
        mp.chdir(work)  # the report goes to ./artifacts
        store = f"embedded:{work / 'store'}"
        return ok("pipeline", "--store", store, "--epochs", 2, "--out", work / "model")


def test_pipeline_runs_on_the_in_repo_sample(pipeline: Result, work: Path):
    assert "using the in-repo Magazine sample" in pipeline.stdout
    [report] = json.loads((work / "artifacts" / "evaluation.json").read_text())
    assert report["num_products"] == 300 and report["num_queries"] > 150
    recall = {name: scores["recall@20"] for name, scores in report["results"].items()}
    assert recall["fused"] > recall["text-only"] + 0.1  # the graph adds something
    assert read_meta(work / "model")["data"]["nodes"]["product"] > 300  # outside references
    assert "related / also_bought" in (work / "model" / CARD).read_text()
    assert "answers for" in pipeline.stdout  # the sample product's related items


def test_its_checkpoint_is_refused_on_another_catalogue(pipeline: Result, work: Path):
    with gzip.open(SAMPLE_DIR / CATALOGUE, "rt") as f:
        sample = {json.loads(line)["asin"] for line in f}
    with gzip.open(SHARED / CATALOGUE, "rt") as f:  # Magazine products outside the sample
        lines = [line for line in islice(f, 800) if json.loads(line)["asin"] not in sample]
    other = work / "other.json.gz"
    with gzip.open(other, "wt") as f:
        f.writelines(lines)
    store = f"embedded:{work / 'other-store'}"
    ok("build", "--catalogue", other, "--store", store, "--rejects", work / "rejects.jsonl")
    model = work / "model"
    for args in (
        ("train", "--warm-start", model, "--store", store, "--out", work / "warm"),
        ("related", json.loads(lines[0])["asin"], "--checkpoint", model, "--store", store),
    ):
        result = run(*args)
        assert result.exit_code == 1
        # (stub nodes of products both reference are shared, so the overlap is not 0)
        assert re.search(r"another catalogue: only [\d,]+ of its", " ".join(result.stderr.split()))
    assert not (work / "warm").exists()
