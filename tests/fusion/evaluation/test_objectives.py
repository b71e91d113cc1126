"""Per-objective metrics against hand-computed small cases: AUC over all candidates (ties
half), Revenue@10 per user and revenue share pooled over users, precision of the top 10."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from fusion.data.events import Prices
from fusion.evaluation.objectives import (
    auc,
    captured_revenue,
    ideal_revenue,
    objective_metrics,
    revenue_at_k,
)


def test_auc_counts_pairs_won_and_ties_half():
    scores = torch.tensor([[0.9, 0.1, 0.5, 0.5, 0.2], [0.1, 0.2, 0.3, 0.4, 0.5]])
    # Row 0: targets 0 (beats all 3 negatives) and 2 (beats 1 and 4, ties 3) → (3 + 2.5) / 6.
    # Row 1: target 0 beats nobody → 0.
    values = auc(scores, [torch.tensor([0, 2]), torch.tensor([0])])
    assert torch.allclose(values, torch.tensor([5.5 / 6, 0.0]))


def test_auc_leaves_non_candidates_out():
    scores = torch.tensor([[0.5, 0.9, 0.1]])
    candidates = torch.tensor([True, False, True])
    assert auc(scores, [torch.tensor([0])], candidates).item() == 1.0


def test_revenue_at_k_is_the_price_caught_over_the_most_k_slots_could_catch():
    price = torch.tensor([10.0, 1.0, 5.0, 100.0, 2.0])
    top = torch.tensor([[0, 1], [4, 2]])
    # Row 0: bought 1 and 3; top 2 holds 1 → 1 / (100 + 1). Row 1: bought 2, 4 → all caught.
    values = revenue_at_k(top, [torch.tensor([1, 3]), torch.tensor([2, 4])], price)
    assert torch.allclose(values, torch.tensor([1 / 101, 1.0]))
    # Ideal with more purchases than slots: the two dearest (100 + 10).
    assert torch.allclose(
        revenue_at_k(torch.tensor([[3, 0]]), [torch.tensor([0, 1, 3])], price), torch.tensor([1.0])
    )


def test_revenue_share_pools_over_users_so_an_expensive_purchase_counts_more():
    price = torch.full((30,), 10.0)
    price[3], price[1] = 100.0, 1.0
    targets = [torch.tensor([3]), torch.tensor([1])]  # one purchase each: 100 and 1
    split = SimpleNamespace(candidates=torch.ones(30, dtype=torch.bool), prices=Prices(price, None))
    # User 0's purchase tops its ranking, user 1's is last: only user 0's is in the top 10.
    scores = torch.arange(30.0).flip(0).repeat(2, 1)
    scores[0, 3], scores[1, 1] = 100.0, -1.0
    top = scores.topk(10, dim=1).indices
    assert torch.equal(captured_revenue(top, targets, price), torch.tensor([100.0, 0.0]))
    unit = ideal_revenue(targets, price).mean().item()  # (100 + 1) / 2
    metrics = objective_metrics(scores, targets, split, "purchase", unit)
    # Per user Revenue@10 is the hit rate (1, 0 → 0.5); pooled, 100 of 101 was captured.
    assert torch.allclose(metrics["revenue@10"].mean(), torch.tensor(0.5))
    assert torch.allclose(metrics["revenue share@10"].mean(), torch.tensor(100 / 101))
    assert "revenue share@10" not in objective_metrics(scores, targets, split, "purchase")
