from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch_geometric.data import HeteroData

from fusion.data.splits import recommend_split, related_split
from fusion.evaluation.harness import evaluate, evaluate_scorer, to_markdown, write_reports
from fusion.model.baselines import LightGCNScorer, PopularityScorer, TextScorer


def _vectors(n: int, d: int = 16) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(0))


def test_popularity_counts_training_pairs_only(tiny: HeteroData) -> None:
    split = recommend_split(tiny)
    scores = PopularityScorer().fit(split).full_sort_predict(torch.tensor([0, 1]))
    # Training interactions: u0 -> 1, 3; u1 -> 4; u2 -> 0, 1 (test/validation items not counted).
    assert scores.tolist() == [[1.0, 2.0, 0.0, 1.0, 1.0, 0.0]] * 2

    related = related_split(tiny, "also_bought")
    in_degree = torch.bincount(related.train_edges[1], minlength=6).float()
    assert torch.equal(
        PopularityScorer().fit(related).full_sort_predict(torch.tensor([0]))[0], in_degree
    )


def test_text_scorer_users_and_products(tiny: HeteroData) -> None:
    vectors = torch.eye(6)[:, :5] * 2  # product i points along axis i (the stub 5 is zero)
    split = recommend_split(tiny)
    mean = TextScorer(vectors, "mean").fit(split)
    last = TextScorer(vectors, "last").fit(split)
    # u0's history is 1, 3 at validation and 1, 3, 2 at test (the validation item joins).
    assert mean.full_sort_predict(torch.tensor([0]), "valid")[0].tolist() == pytest.approx(
        [0, 2**-0.5, 0, 2**-0.5, 0, 0]
    )
    assert last.full_sort_predict(torch.tensor([0]), "valid")[0].argmax().item() == 3
    assert last.full_sort_predict(torch.tensor([0]), "test")[0].argmax().item() == 2

    related = TextScorer(vectors).fit(related_split(tiny, "also_bought"))
    assert related.full_sort_predict(torch.tensor([4]))[0].tolist() == [0, 0, 0, 0, 1, 0]
    with pytest.raises(ValueError, match="text vectors"):
        TextScorer(vectors[:3]).fit(split)


def test_lightgcn_learns_and_is_deterministic(beauty: HeteroData) -> None:
    split = related_split(beauty, "bought_together")
    fitted = LightGCNScorer(embedding_dim=32, epochs=4, batch_size=512).fit(split)
    again = LightGCNScorer(embedding_dim=32, epochs=4, batch_size=512).fit(split)
    # Same seed, same model (up to float summation order in multi-threaded scatter).
    assert torch.allclose(fitted.embedding, again.embedding, atol=1e-5)
    assert (
        fitted.history
        and max(fitted.history) == evaluate_scorer(fitted, split, "valid")["recall@20"]
    )
    popularity = PopularityScorer().fit(split)
    assert (
        evaluate_scorer(fitted, split)["recall@20"]
        > 2 * evaluate_scorer(popularity, split)["recall@20"]
    )


def test_lightgcn_recommend_scores_products(tiny: HeteroData) -> None:
    split = recommend_split(tiny)
    scorer = LightGCNScorer(embedding_dim=8, epochs=2, patience=1).fit(split)
    assert scorer.full_sort_predict(torch.tensor([0, 2])).shape == (2, 6)


def test_harness_is_batch_invariant_and_reports(beauty: HeteroData, tmp_path: Path) -> None:
    split = recommend_split(beauty)
    scorers = {
        "popularity": PopularityScorer().fit(split),
        "text": TextScorer(_vectors(beauty["product"].num_nodes)).fit(split),
    }
    report = evaluate(scorers, split, stage="valid", batch_size=1000)
    small = evaluate(scorers, split, stage="valid", batch_size=97)
    for name, metrics in report["results"].items():
        assert metrics == pytest.approx(small["results"][name])
    assert report["num_queries"] == len(split.valid)
    beyond = ("coverage", "gini", "pop_percentile", "long_tail", "ild_category", "ild_brand")
    beyond += ("category_distance",)
    assert set(report["results"]["text"]) == {
        f"{m}@{k}" for m in ("recall", "hr", "ndcg") for k in (10, 20)
    } | {"mrr", "novelty@10"} | {f"{m}@10" for m in beyond}
    # One target per user: hit rate and recall coincide.
    assert report["results"]["popularity"]["hr@10"] == report["results"]["popularity"]["recall@10"]

    table = to_markdown(report)
    assert "| popularity |" in table and "recommend / interacted" in table
    write_reports([report], tmp_path / "eval")
    assert json.loads((tmp_path / "eval.json").read_text())[0]["results"] == report["results"]
    assert (tmp_path / "eval.md").read_text() == table
