"""The harness: history masking switch, beyond-accuracy metrics and intervals in one report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch_geometric.data import HeteroData

from fusion.data.splits import recommend_split, related_split
from fusion.evaluation.harness import (
    evaluate,
    evaluate_scorer,
    score_queries,
    to_json,
    to_markdown,
    write_reports,
)
from fusion.model.baselines import PopularityScorer, TextScorer


def test_unmasked_exclusions_keep_only_the_query_itself(tiny: HeteroData) -> None:
    rec = recommend_split(tiny)
    for stage in ("valid", "test"):
        unmasked = rec.exclusions(stage, mask_history=False)
        assert set(unmasked) == set(rec.exclusions(stage)) == set(rec.targets(stage))
        assert all(e.numel() == 0 for e in unmasked.values())
    related = related_split(tiny, "also_bought")
    for stage in ("valid", "test"):
        for source, excluded in related.exclusions(stage, mask_history=False).items():
            expected = [] if source in related.targets(stage)[source].tolist() else [source]
            assert excluded.tolist() == expected
            assert set(expected) <= set(related.exclusions(stage)[source].tolist())


def test_unmasked_ranking_only_adds_the_history(beauty: HeteroData) -> None:
    split = recommend_split(beauty)
    scorer = PopularityScorer().fit(split)
    masked = score_queries(scorer, split)
    unmasked = score_queries(scorer, split, mask_history=False)
    # Same queries and targets; putting history items back can only push a target down.
    assert masked.keys() == unmasked.keys()
    for name in masked:
        assert bool((unmasked[name] <= masked[name] + 1e-7).all()), name
    assert unmasked["mrr"].mean() < masked["mrr"].mean()
    report = evaluate({"popularity": scorer}, split, mask_history=False, resamples=50)
    assert report["mask_history"] is False
    assert report["results"]["popularity"]["ndcg@10"] == pytest.approx(
        evaluate_scorer(scorer, split, mask_history=False)["ndcg@10"]
    )
    assert "history not masked" in to_markdown(report)


def test_report_has_beyond_accuracy_and_intervals(beauty: HeteroData, tmp_path: Path) -> None:
    split = recommend_split(beauty)
    vectors = torch.randn(
        beauty["product"].num_nodes, 16, generator=torch.Generator().manual_seed(0)
    )
    scorers = {
        "popularity": PopularityScorer().fit(split),
        "text": TextScorer(vectors).fit(split),
    }
    report = evaluate(scorers, split, stage="valid", resamples=200)
    again = evaluate(scorers, split, stage="valid", resamples=200)
    assert report["intervals"] == again["intervals"]  # seeded
    for name, metrics in report["results"].items():
        assert {"coverage@10", "gini@10", "pop_percentile@10", "long_tail@10"} <= set(metrics)
        assert {"ild_category@10", "ild_brand@10", "novelty@10"} <= set(metrics)
        accuracy = evaluate_scorer(scorers[name], split, "valid")
        assert {m: metrics[m] for m in accuracy} == pytest.approx(accuracy, rel=1e-5)
        for metric, value in metrics.items():
            lo, hi = report["intervals"][name][metric]
            assert lo <= value + 1e-6 and value <= hi + 1e-6, (name, metric)
        assert report["per_query"][name]["ndcg@10"].numel() == report["num_queries"]
    pop, text = report["results"]["popularity"], report["results"]["text"]
    # One list for everybody (minus their history) covers almost nothing; random vectors spread.
    assert pop["coverage@10"] < 0.05 < text["coverage@10"]
    assert pop["gini@10"] > text["gini@10"]
    assert pop["pop_percentile@10"] > 0.99 > text["pop_percentile@10"]
    assert pop["long_tail@10"] == 0.0 < text["long_tail@10"]
    assert pop["novelty@10"] < text["novelty@10"]
    # Random text vectors beat nothing on accuracy, popularity on nothing beyond it: the
    # accuracy columns of the two are compared with their intervals.
    assert set(report["not_distinguishable"]) == set(pop)

    table = to_markdown(report)
    assert "| popularity |" in table and "coverage@10" in table and " [" in table
    path = write_reports([report], tmp_path / "eval")
    written = json.loads(path.read_text())[0]
    assert "per_query" not in written and written["results"] == report["results"]
    assert json.loads(to_json([report]))[0]["intervals"] == report["intervals"]
    saved = torch.load(tmp_path / "eval.per_query.pt")
    assert torch.equal(saved[0]["text"]["mrr"], report["per_query"]["text"]["mrr"])
