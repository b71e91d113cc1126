"""`--split time --cut`, `--relations` and `--derive` from the command line to a served model, on
an embedded store built from the first events of the real REES46 sample (views, carts and
purchases with timestamps): the options reach training, the checkpoint records them,
`kgrec evaluate` rebuilds the same split and graph, and the model serves (derived links
rebuilt over the whole graph) with and without `--diversity`, from Python, the CLI and REST."""

from __future__ import annotations

import gzip
import json
import os
from itertools import islice
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from fusion.cli import app
from fusion.config import TrainOptions
from fusion.model.checkpoint import read_meta
from fusion.serving.recommender import Recommender
from fusion.serving.rest import create_app

EVENTS = Path(os.environ["KGREC_DATA"]) / "rees46-2019-oct-sample" / "events-2019-10-01.csv.gz"
LINES = 4000

pytestmark = pytest.mark.slow


def ok(*args: object) -> Result:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, f"{args}: {result.output}\n{result.exception!r}"
    return result


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    work = tmp_path_factory.mktemp("sideinfo")
    path = work / "events.csv.gz"
    with gzip.open(EVENTS, "rt") as src, gzip.open(path, "wt") as dst:
        dst.writelines(islice(src, LINES))
    store = f"embedded:{work / 'store'}"
    ok("build", "--catalogue", path, "--store", store, "--rejects", work / "rejects.jsonl")
    out = work / "model"
    ok(
        "train", "--task", "recommend", "--split", "time", "--cut", 0.8,
        "--relations", "none", "--derive", "co_purchase,co_view",
        "--epochs", 1, "--store", store, "--out", out,
    )  # fmt: skip
    return store, out


def test_the_checkpoint_records_split_and_side_information(trained):
    _, out = trained
    options = read_meta(out)["metrics"]["options"]
    assert options["split"] == "time" and options["cut"] == 0.8
    assert options["relations"] == [] and options["derive"] == ["co_purchase", "co_view"]
    relations = {tuple(et)[1] for et in read_meta(out)["relations"]}
    assert {"co_purchase", "co_view"} <= relations


def test_evaluate_rebuilds_the_same_split(trained, tmp_path):
    store, out = trained
    report = tmp_path / "eval.json"
    ok("evaluate", "--checkpoint", out, "--store", store, "--no-baselines", "--report", report)
    (result,) = json.loads(report.read_text())
    assert result["task"] == "recommend" and result["num_queries"] > 0
    assert result["setup"] == {
        "protocol": "time",
        "cut": 0.8,
        "relations": [],
        "derive": ["co_purchase", "co_view"],
    }
    assert 0 <= result["results"]["fused"]["ndcg@10"] <= 1


def test_the_model_serves_with_and_without_diversity(trained):
    store, out = trained
    with Recommender.load(out, store) as rec:
        user = next(u for u in rec.model.user_ids if len(rec.recommend(u, k=5)) == 5)
        plain = rec.recommend(user, k=5)
        varied = rec.recommend(user, k=5, diversity=0.9)
        served = TestClient(create_app(rec)).get(
            f"/recommend/{user}", params={"k": 5, "diversity": 0.9, "explain": False}
        )
    assert [r["product_id"] for r in served.json()["results"]] == [r.product_id for r in varied]
    assert len(plain) == len(varied) == 5
    result = ok("recommend", user, "-k", 5, "--diversity", 0.9, "--checkpoint", out,
                "--store", store, "--json", "--no-explain")  # fmt: skip
    assert [r["product_id"] for r in json.loads(result.stdout)["results"]] == [
        r.product_id for r in varied
    ]


def test_bad_values_are_named(tmp_path):
    result = CliRunner().invoke(app, ["train", "--relations", "bought_with", "--out", tmp_path])
    assert result.exit_code == 1
    assert "error: --relations/--derive: unknown relation(s) ['bought_with']" in result.stderr
    result = CliRunner().invoke(app, ["train", "--split", "time", "--out", tmp_path])
    assert result.exit_code == 1 and "time split is for task=recommend" in result.stderr
    assert TrainOptions(task="recommend", split="time").cut is None
