"""End to end through the `kgrec` CLI, as a user runs it, against the test Neo4j server:
build → train → evaluate → related/search → publish → update (inductive) → warm start →
mismatch refusal, on the first lines of the real Magazine 2018 catalogue.

The default store (no --store) is the test server: tests/conftest.py points kgrec's defaults at
it. One model is built and trained per module; the tests share it.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
import traceback
from itertools import islice
from pathlib import Path
from typing import Any

import neo4j
import pytest
import torch
from typer.testing import CliRunner, Result

from fusion.cli import app
from fusion.config import WARM_EPOCHS, FusedConfig, TrainConfig, TrainOptions
from fusion.data.graph import load_graph, make_split, text_vectors
from fusion.model.checkpoint import CONFIG, ID_MAPS, META, OPTIMIZER, WEIGHTS, read_trained
from fusion.pipeline import train, warm_model
from fusion.serving.publish import RELATED_QUERY, VECTOR_QUERY
from kg.stores import open_store
from text_encoder import TextTemplate

MAGAZINE = Path(os.environ["KGREC_DATA"]) / "amazon-magazine-2018"
META_FILE = MAGAZINE / "meta_Magazine_Subscriptions.json.gz"
LINES = 600  # ~1,000 in-slice also_buy edges: enough for valid and test edges
K = 5
NEW_ID = "KGRECTEST01"
WARM_ID = "KGRECTEST02"

pytestmark = pytest.mark.slow


def run(*args: object) -> Result:
    # Click 8.2+ keeps stderr apart from stdout, so --json output parses.
    return CliRunner().invoke(app, [str(a) for a in args])


def ok(*args: object) -> Result:
    result = run(*args)
    assert result.exit_code == 0, (
        f"kgrec {' '.join(map(str, args))} → {result.exit_code}\nstdout: {result.stdout}\n"
        f"stderr: {result.stderr}\n{''.join(traceback.format_exception(*result.exc_info))}"
    )
    return result


def answers(result: Result) -> list[dict[str, Any]]:
    return json.loads(result.stdout)["results"]


def first_rows(n: int) -> list[dict[str, Any]]:
    with gzip.open(META_FILE, "rt") as f:
        return [json.loads(line) for line in islice(f, n)]


@pytest.fixture(scope="module")
def slice_rows() -> list[dict[str, Any]]:
    return first_rows(LINES)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pipeline")


@pytest.fixture(scope="module")
def built(neo4j_settings, work: Path, slice_rows) -> dict[str, Any]:
    """The slice built into the (cleared) test server; the `build --json` summary."""
    with open_store(None) as store:
        store.clear()
    path = work / "meta_slice.json.gz"
    with gzip.open(path, "wt") as f:
        f.writelines(json.dumps(row) + "\n" for row in slice_rows)
    result = ok("build", "--catalogue", path, "--rejects", work / "rejects.jsonl", "--json")
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def model(built, work: Path) -> Path:
    out = work / "model"
    run_file = work / "run.yaml"  # settings from a run file, one of them overridden by a flag
    run_file.write_text("task: related\nrelation: also_bought\ntrain:\n  epochs: 5\n")
    ok("train", "--config", run_file, "--epochs", "2", "--max-minutes", "3", "--out", out)
    return out


@pytest.fixture(scope="module")
def query_id(model: Path, slice_rows) -> str:
    """A catalogue product with in-slice also_buy neighbours."""
    ids = {r["asin"] for r in slice_rows}
    return next(r["asin"] for r in slice_rows if len(ids & set(r.get("also_buy", []))) >= 3)


def test_build_counts_are_consistent(built, slice_rows):
    nodes, rels = built["nodes"], built["relationships"]
    ids = {r["asin"] for r in slice_rows}
    referenced = {d for r in slice_rows for d in r.get("also_buy", []) + r.get("also_view", [])}
    also_buy = {(r["asin"], d) for r in slice_rows for d in r.get("also_buy", []) if r["asin"] != d}
    # Catalogue rows that survive cleaning, plus stubs for referenced products outside it.
    assert len(ids) - built["rejected"] <= nodes["Product"] <= len(ids | referenced)
    # Every in-slice also_buy pair is kept; the stubbed ones add to them.
    inside = {(s, d) for s, d in also_buy if d in ids}
    assert len(inside) <= rels["ALSO_BOUGHT"] <= len(also_buy)
    assert len(inside) >= 100  # enough for validation and test edges
    assert all(n >= 0 for n in (*nodes.values(), *rels.values()))


def test_train_writes_a_complete_checkpoint(model: Path):
    for name in (WEIGHTS, CONFIG, ID_MAPS, META):
        assert (model / name).is_file(), name
    meta = json.loads((model / META).read_text())
    assert meta["metrics"]["relation"] == "also_bought"
    options = meta["metrics"]["options"]  # the resolved settings, every layer applied
    assert (options["relation"], options["train"]["epochs"]) == ("also_bought", 2)
    assert options["train"]["max_minutes"] == 3 and options["model"] == FusedConfig().to_dict()
    assert meta["metrics"]["text_template"]["fields"] == list(TextTemplate().fields)
    assert json.loads((model / CONFIG).read_text())["task"] == "related"


def test_evaluate_reports_fused_and_baselines(model: Path, work: Path):
    report = work / "eval.json"
    result = ok("evaluate", "--checkpoint", model, "--report", report, "--json")
    reports = json.loads(result.stdout)
    assert isinstance(reports, list) and reports
    assert json.loads(report.read_text()) == reports
    first = reports[0]
    assert first["relation"] == "also_bought" and first["num_queries"] > 0
    results = first["results"]
    for name in ("popularity", "text-only", "graph-only (LightGCN)", "fused"):
        assert name in results, sorted(results)
        assert 0.0 <= results[name]["recall@20"] <= 1.0
    assert results["fused"]["recall@20"] > 0


def test_related_and_search(model: Path, query_id: str):
    got = answers(ok("related", query_id, "-k", str(K), "--checkpoint", model, "--json"))
    assert 0 < len(got) <= K
    assert query_id not in {r["product_id"] for r in got}
    scores = [r["score"] for r in got]
    assert scores == sorted(scores, reverse=True)

    result = run("related", "NOPE", "-k", str(K), "--checkpoint", model, "--json")
    assert result.exit_code == 1
    assert "unknown product" in result.stderr
    assert "Traceback" not in result.output + result.stderr
    assert isinstance(result.exception, SystemExit)  # a clean exit, not a leaked error

    found = answers(
        ok("search", "magazine subscription", "-k", "3", "--checkpoint", model, "--json")
    )
    assert 0 < len(found) <= 3


def test_published_vector_index_matches_related(model: Path, query_id: str, neo4j_settings):
    result = ok("publish", "--checkpoint", model, "-k", str(K))
    assert "vectors" in result.stdout
    python = answers(
        ok("related", query_id, "-k", str(K), "--checkpoint", model, "--json", "--no-explain")
    )
    auth = (neo4j_settings.user, neo4j_settings.password)

    def records_of(query: str, name: str = "") -> list[neo4j.Record]:
        with neo4j.GraphDatabase.driver(neo4j_settings.uri, auth=auth) as driver:
            return driver.execute_query(query, id=query_id, k=K, model=name).records

    records = records_of(VECTOR_QUERY)
    cypher = [(r["id"], 2 * r["score"] - 1) for r in records]  # index score is (1 + cos) / 2
    assert len(cypher) == len(python) == K
    # Equal id sets, except that products tied on the k-th score may swap.
    last = python[-1]["score"]
    firm = {r["product_id"] for r in python if r["score"] > last + 1e-5}
    assert firm <= {pid for pid, _ in cypher}
    assert [s for _, s in cypher] == pytest.approx([r["score"] for r in python], abs=1e-4)
    # RELATED_TO is the exact top-k, under the checkpoint directory's name.
    published = [(r["id"], r["score"]) for r in records_of(RELATED_QUERY, model.name)]
    assert firm <= {pid for pid, _ in published}
    assert [s for _, s in published] == pytest.approx([r["score"] for r in python], abs=1e-4)


def test_product_added_after_training_gets_related_items(model: Path, work: Path, slice_rows):
    anchor = next(r for r in slice_rows if r.get("brand") and r.get("title"))
    row = {
        "asin": NEW_ID,
        "title": f"{anchor['brand']} Magazine - Digital Edition",
        "brand": anchor["brand"],
        "category": anchor.get("category", []),
        "also_buy": [anchor["asin"]],
        "description": [],
        "main_cat": "Magazine Subscriptions",
    }
    before = run("related", NEW_ID, "--checkpoint", model, "--json")
    assert before.exit_code == 1 and "unknown product" in before.stderr
    delta = work / "delta.json"
    delta.write_text(json.dumps(row) + "\n")
    summary = json.loads(
        ok(
            "update", "--catalogue", delta, "--rejects", work / "rejects-delta.jsonl", "--json"
        ).stdout
    )
    assert summary["products_new"] == 1, summary
    got = answers(ok("related", NEW_ID, "-k", str(K), "--checkpoint", model, "--json"))
    assert 0 < len(got) <= K
    assert NEW_ID not in {r["product_id"] for r in got}


def test_warm_start_trains_on_what_is_new(model: Path, work: Path, slice_rows):
    ids = {r["asin"] for r in slice_rows}
    linked = (r for r in slice_rows if r.get("title") and len(ids & {*r.get("also_buy", [])}) > 1)
    anchor = next(linked)
    row = {
        "asin": WARM_ID,
        "title": f"{anchor['title']} - Gift Edition",
        "also_buy": [anchor["asin"], *sorted(ids & set(anchor["also_buy"]))],
        "main_cat": "Magazine Subscriptions",
    }
    delta = work / "delta-warm.json"
    delta.write_text(json.dumps(row) + "\n")
    ok("update", "--catalogue", delta, "--rejects", work / "rejects-warm.jsonl")
    out = work / "warm"
    args = ("train", "--task", "related", "--relation", "also_bought", "--max-minutes", "2")
    result = ok(*args, "--warm-start", model, "--out", out)
    assert "new targets" in result.stderr and "Adam starts afresh" not in result.stderr
    assert (out / OPTIMIZER).is_file()  # the next warm start resumes this one's optimizer
    train = json.loads((out / META).read_text())["metrics"]["train"]
    assert 0 < train["window"] < train["targets"] and train["epochs"] <= WARM_EPOCHS
    before = json.loads((model / ID_MAPS).read_text())["product"]
    after = json.loads((out / ID_MAPS).read_text())["product"]
    assert WARM_ID in after and WARM_ID not in before and set(before) < set(after)

    # The grown graph permutes its edges differently; what `kgrec evaluate` rebuilds for the
    # warm checkpoint (and what it was validated on) holds out nothing either model trained on.
    data = load_graph(None)
    seen = {(q, p) for q, ps in read_trained(model).items() for p in ps}
    seen |= {(p, q) for q, p in seen}
    held = _held_out_ids(make_split(data, "related", "also_bought", read_trained(out)))
    assert held and not held & seen
    assert _held_out_ids(make_split(data, "related", "also_bought")) & seen  # it would have

    refused = run(*args[:4], "also_viewed", "--warm-start", model, "--out", work / "no")
    assert refused.exit_code == 1 and "learned relation 'also_bought'" in refused.stderr
    assert "Traceback" not in refused.output + refused.stderr and not (work / "no").exists()


def test_a_checkpoint_without_optimizer_state_warm_starts_afresh(model: Path, work: Path, caplog):
    older = work / "no-optimizer-state"
    shutil.copytree(model, older)
    (older / OPTIMIZER).unlink()
    data = load_graph(None)
    split = make_split(data, "related", "also_bought", read_trained(older))
    text, text_model = text_vectors(data, progress=False)
    with caplog.at_level(logging.INFO, logger="fusion.pipeline"):
        warm, state = warm_model(older, split, text, text_model)
    assert state is None
    said = [r.getMessage() for r in caplog.records if r.name == "fusion.pipeline"]
    assert said == [f"{older} holds no optimizer state: Adam starts afresh"]
    assert warm.training and warm_model(model, split, text, text_model)[1] is not None


def test_the_initial_weights_follow_the_seed(built, monkeypatch, tmp_path: Path):
    starts = []

    def capture(model, *args):  # the model as training gets it; no need to train
        starts.append({k: v.clone() for k, v in model.state_dict().items()})
        raise InterruptedError

    monkeypatch.setattr("fusion.pipeline.fit", capture)
    for seed, noise in ((0, 1), (0, 1000), (1, 1)):
        torch.rand(noise)  # whatever used the global RNG before must not matter
        with pytest.raises(InterruptedError):
            train(None, TrainOptions(train=TrainConfig(seed=seed)), tmp_path / "unused")
    same, other = (all(torch.equal(starts[0][k], s[k]) for k in starts[0]) for s in starts[1:])
    assert same and not other


def _held_out_ids(split) -> set[tuple[str, str]]:
    ids = split.train_graph["product"].node_id
    return {
        (ids[q], ids[t])
        for stage in ("valid", "test")
        for q, targets in split.targets(stage).items()
        for t in targets.tolist()
    }


def test_a_missing_warm_start_checkpoint_fails_before_any_loading(tmp_path: Path):
    # The store is empty too: its error would come first if the graph were loaded first.
    options = TrainOptions(warm_start=tmp_path / "no-checkpoint")
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        train(f"embedded:{tmp_path / 'empty'}", options, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_checkpoint_of_another_text_model_is_refused(model: Path, work: Path, query_id: str):
    other = work / "other-text-model"
    shutil.copytree(model, other)
    config = json.loads((other / CONFIG).read_text())
    config["text_model"] = "other/model"
    (other / CONFIG).write_text(json.dumps(config))
    for args in (
        ("related", query_id, "--checkpoint", other, "--json"),
        ("train", "--warm-start", other, "--epochs", "1", "--out", work / "not-trained"),
    ):
        result = run(*args)
        assert result.exit_code == 1
        assert "other/model" in result.stderr and "text model" in result.stderr
        assert "Traceback" not in result.output + result.stderr


def test_encode_feeds_training_with_the_same_text_fields(model: Path, work: Path, query_id: str):
    fields = "title,brand"
    encoded = ok("encode", "--text-fields", fields, "--no-progress")
    assert f"text fields {fields}" in encoded.stdout
    out = work / "model-fields"
    trained = ok("train", "--text-fields", fields, "--epochs", "1", "--out", out)
    assert " 0 encoded, " in trained.stderr  # every vector came from what encode cached
    meta = json.loads((out / META).read_text())
    assert meta["metrics"]["text_template"]["fields"] == ["title", "brand"]
    assert meta["metrics"]["options"]["text_fields"] == ["title", "brand"]
    assert answers(ok("related", query_id, "--checkpoint", out, "--json"))
    other = run("train", "--warm-start", out, "--text-fields", "title", "--out", work / "no-fields")
    assert other.exit_code == 1 and "trained on text fields title,brand, not title" in other.stderr
    assert not (work / "no-fields").exists()
