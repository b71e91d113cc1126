"""A multi-objective (`--task rank`) model trained on the real REES46 events, queried with
weights chosen at query time from Python, the CLI and REST: the weights change the ranking,
each answer carries its per-objective scores, bad weights are clear errors, and the
checkpoint keeps its objectives and default weights."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from fusion.cli import app
from fusion.model.checkpoint import read_meta
from fusion.serving.recommender import Recommender
from fusion.serving.rest import create_app
from kg.build import build
from kg.errors import InvalidArgumentError
from kg.stores import EmbeddedStore
from tests.fusion.serving.test_recommender import TinyModel, write_slice

REES46 = Path(os.environ["KGREC_DATA"]) / "rees46-2019-oct-sample" / "events-2019-10-01.csv.gz"
OBJECTIVES = {"click": 1.0, "cart": 1.0, "purchase": 2.0, "revenue": 0.5}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """(store URI, checkpoint): a rank model trained for two epochs on REES46."""
    work = tmp_path_factory.mktemp("rank")
    uri = f"embedded:{work / 'graph'}"
    build(REES46, store_uri=uri, rejects_path=work / "r.jsonl")
    objectives = ",".join(f"{k}={v:g}" for k, v in OBJECTIVES.items())
    args = [
        "train", "--task", "rank", "--objectives", objectives, "--epochs", "2", "--dim", "16",
        "--batch-size", "1024", "--max-minutes", "3", "--store", uri, "--out", str(work / "m"),
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, f"{result.output}{result.exception!r}"
    return uri, work / "m"


@pytest.fixture(scope="module")
def rec(trained) -> Recommender:
    uri, checkpoint = trained
    with Recommender.load(checkpoint, uri) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def user(rec: Recommender) -> str:
    """A user the model answers for."""
    return next(u for u in rec.model.user_ids if rec.recommend(u, k=1, explain=False))


def test_the_checkpoint_keeps_objectives_and_default_weights(trained, rec):
    assert read_meta(trained[1])["config"]["objectives"] == OBJECTIVES
    assert rec.objectives == ["click", "cart", "purchase", "revenue"]
    assert rec.model.default_weights == OBJECTIVES


def test_weights_change_the_ranking_and_answers_carry_each_objective(rec, user):
    scale = rec.model.model.price_scale.item()
    by_purchase = rec.recommend(user, k=10, explain=False, weights={"purchase": 1})
    by_revenue = rec.recommend(user, k=10, explain=False, weights="revenue=1")
    assert [r.product_id for r in by_purchase] != [r.product_id for r in by_revenue]
    for r in by_revenue:
        assert set(r.objectives) == set(rec.objectives)
        assert r.score == pytest.approx(r.objectives["revenue"] / scale, rel=1e-4)
        price = rec.products[r.product_id].price
        assert r.objectives["revenue"] == pytest.approx(r.objectives["purchase"] * price, rel=1e-4)
    mixed = rec.recommend(user, k=5, explain=False, weights={"purchase": 1, "click": 0.1})
    for r in mixed:
        expected = r.objectives["purchase"] + 0.1 * r.objectives["click"]
        assert r.score == pytest.approx(expected, rel=1e-4)
    # No weights: the training weights.
    default = rec.recommend(user, k=10, explain=False)
    assert default == rec.recommend(user, k=10, explain=False, weights=OBJECTIVES)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ("rating=1", "this model does not score rating"),
        ("purchase=-2", "must be a finite number >= 0"),
        ("purchase=x", "'x' is not a number"),
        ("profit=1", "unknown objective 'profit'"),
    ],
)
def test_bad_weights_are_clear_errors_in_python_and_rest(rec, user, weights, message):
    with pytest.raises(InvalidArgumentError, match=message):
        rec.recommend(user, k=3, weights=weights)
    response = TestClient(create_app(rec)).get(f"/recommend/{user}", params={"weights": weights})
    assert response.status_code == 422 and message in response.json()["detail"]


def test_rest_answers_with_query_time_weights(rec, user):
    client = TestClient(create_app(rec))
    params = {"weights": "purchase=1,revenue=0.3", "k": 5, "explain": False}
    body = client.get(f"/recommend/{user}", params=params).json()
    python = rec.recommend(user, k=5, explain=False, weights={"purchase": 1, "revenue": 0.3})
    assert body["results"] == [r.model_dump(mode="json") for r in python]
    assert set(body["results"][0]["objectives"]) == set(rec.objectives)


def test_cli_recommends_with_weights_and_refuses_bad_ones(trained, rec, user):
    uri, checkpoint = trained
    common = ["--checkpoint", str(checkpoint), "--store", uri, "--no-explain", "-k", "4"]
    result = CliRunner().invoke(
        app, ["recommend", user, "--weights", "purchase=1,revenue=0.3,click=0.1", "--json", *common]
    )
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    python = rec.recommend(
        user, k=4, explain=False, weights={"purchase": 1, "revenue": 0.3, "click": 0.1}
    )
    assert [r["product_id"] for r in answer["results"]] == [r.product_id for r in python]
    assert answer["results"][0]["objectives"]["revenue"] > 0
    bad = CliRunner().invoke(app, ["recommend", user, "--weights", "purchase=-1", *common])
    assert bad.exit_code == 1 and "--weights: purchase=-1.0 must be a finite number" in bad.output


def test_weights_need_a_multi_objective_model(tmp_path):
    store = EmbeddedStore(tmp_path)
    single = Recommender(TinyModel(write_slice(store)), store)
    assert single.objectives == []
    user = single.model.user_ids[0]
    assert single.recommend(user, k=2)[0].objectives is None
    with pytest.raises(InvalidArgumentError, match="weights need a multi-objective model"):
        single.recommend(user, k=2, weights="purchase=1")


def test_evaluate_reports_every_objective_with_intervals(trained, tmp_path):
    uri, checkpoint = trained
    report = tmp_path / "eval.json"
    args = ["evaluate", "--checkpoint", str(checkpoint), "--store", uri, "--no-baselines"]
    result = CliRunner().invoke(app, [*args, "--report", str(report), "--json"])
    assert result.exit_code == 0, f"{result.output}{result.exception!r}"
    reports = json.loads(report.read_text())
    assert [r["relation"] for r in reports] == ["click", "cart", "purchase", "revenue"]
    for r in reports:
        values, intervals = r["results"]["multi-objective"], r["intervals"]["multi-objective"]
        expected = {"ndcg@10", "recall@20", "auc", "precision@10"}
        if r["relation"] in ("purchase", "revenue"):
            expected |= {"revenue@10", "revenue share@10"}
        assert set(values) == expected and r["num_queries"] > 0
        for metric, (lo, hi) in intervals.items():
            assert lo <= values[metric] <= hi
    assert json.loads(result.stdout)[2]["relation"] == "purchase"
