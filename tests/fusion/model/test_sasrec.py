"""SASRec baseline: learns with either loss, above popularity, deterministic under a seed."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import HeteroData

from fusion.data.splits import recommend_split, related_split
from fusion.evaluation.harness import evaluate_scorer
from fusion.model.baselines import PopularityScorer
from fusion.model.sasrec import SASRecScorer


@pytest.mark.parametrize("loss", ["ce", "bce"])
def test_sasrec_learns_the_next_item_where_popularity_cannot(ring: HeteroData, loss: str) -> None:
    split = recommend_split(ring)
    options = dict(dim=16, epochs=60, lr=1e-2, dropout=0.1, patience=60)
    fitted = SASRecScorer(loss=loss, **options).fit(split)
    sasrec = evaluate_scorer(fitted, split)
    popularity = evaluate_scorer(PopularityScorer().fit(split), split)
    assert sasrec["hr@10"] > 0.9 and popularity["hr@10"] < 0.6


def test_sasrec_learns_on_beauty_and_is_deterministic(beauty: HeteroData) -> None:
    split = recommend_split(beauty)
    options = dict(epochs=3, lr=2e-3)
    fitted = SASRecScorer(**options).fit(split)
    assert len(fitted.history) == 3 and fitted.history[-1] > fitted.history[0]
    again = SASRecScorer(**options).fit(split)
    users = split.queries("test")[:64]
    assert torch.allclose(
        fitted.full_sort_predict(users), again.full_sort_predict(users), atol=1e-5
    )


def test_sasrec_reads_the_stage_history(tiny: HeteroData) -> None:
    split = recommend_split(tiny)
    scorer = SASRecScorer(dim=8, max_len=4, epochs=1).fit(split)
    # u0's history is 1, 3 at validation and 1, 3, 2 at test: different queries, same shape.
    valid = scorer.full_sort_predict(torch.tensor([0]), "valid")
    test = scorer.full_sort_predict(torch.tensor([0]), "test")
    assert valid.shape == test.shape == (1, 6)
    assert not torch.allclose(valid, test) and bool(torch.isfinite(test).all())
    with pytest.raises(ValueError, match="recommend split"):
        SASRecScorer().fit(related_split(tiny, "also_bought"))
    with pytest.raises(ValueError, match="loss must be"):
        SASRecScorer(loss="bpr")
