"""Multi-objective heads: shapes, the ESMM product (P(purchase) = pCTR · pCVR over the entire
space), the viewed-only variant, the loss, and the weighted combination of objectives."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fusion.config import FusedConfig
from fusion.data.events import CART, PURCHASE
from fusion.model.heads import (
    HEADS,
    MultiObjectiveHeads,
    binary_cross_entropy,
    log_probabilities,
)
from fusion.model.ranking import RankModel, build_model
from kg.errors import InvalidArgumentError


@pytest.mark.parametrize("experts", [0, 3])
def test_heads_score_every_pair_and_agree_with_row_wise_pairs(experts):
    torch.manual_seed(0)
    heads = MultiObjectiveHeads(8, experts)
    users, items = torch.randn(4, 8), torch.randn(6, 8)
    full = heads(users, items)
    assert set(full) == set(HEADS) and all(v.shape == (4, 6) for v in full.values())
    rows = heads.pairs(users, items[[0, 2, 4, 5]])
    for name in HEADS:
        assert rows[name].shape == (4,)
        diagonal = full[name][torch.arange(4), torch.tensor([0, 2, 4, 5])]
        assert torch.allclose(rows[name], diagonal, atol=1e-5)


def test_entire_space_probabilities_are_click_times_conversion():
    logits = {name: torch.randn(3, 5) for name in HEADS}
    p = {k: v.exp() for k, v in log_probabilities(logits, "entire_space").items()}
    click = torch.sigmoid(logits["click"])
    assert torch.allclose(p["click"], click)
    for name in ("cart", "purchase", "rating"):
        assert torch.allclose(p[name], click * torch.sigmoid(logits[name]), atol=1e-6)
        assert bool((p[name] <= p["click"]).all())  # buying implies clicking
    naive = {k: v.exp() for k, v in log_probabilities(logits, "viewed_only").items()}
    assert torch.allclose(naive["purchase"], torch.sigmoid(logits["purchase"]))


def test_binary_cross_entropy_from_log_probabilities_matches_torch():
    p = torch.tensor([0.01, 0.3, 0.9, 0.5])
    label = torch.tensor([1.0, 0.0, 1.0, 0.0])
    expected = F.binary_cross_entropy(p, label, reduction="none")
    assert torch.allclose(binary_cross_entropy(p.log(), label), expected, atol=1e-5)


def rank_model(tiny, **config) -> RankModel:
    torch.manual_seed(0)
    store = tiny["user", "interacted", "product"]
    # Product 2's events carry no price; product 5's do (10).
    store.price = torch.where(store.edge_index[1] == 2, float("nan"), 10.0)
    tiny["product"].price = torch.tensor([1.0, 2.0, float("nan"), 8.0, 16.0, float("nan")])
    text = torch.randn(tiny["product"].num_nodes, 12)
    settings = {"task": "rank", "dim": 8, "objectives": {"click": 1.0, "purchase": 2.0}}
    return build_model(tiny, text, FusedConfig(**(settings | config)))


def test_the_model_scores_each_objective_and_revenue_is_purchase_times_price(tiny):
    model = rank_model(tiny).eval()
    assert isinstance(model, RankModel) and model.objectives == ["click", "purchase", "revenue"]
    items = model.item_embeddings()
    scores = model.objective_scores(items, torch.tensor([[0, 1], [-1, 2]]))
    assert set(scores) == {"click", "purchase", "revenue"}
    assert all(s.shape == (2, 6) for s in scores.values())
    # Unknown prices come from the events (product 5), else the category's median (1, 2, 8,
    # 16 → 5), flagged as imputed; never zero.
    assert model.price[5] == 10.0 and not model.price_imputed[5]
    assert model.price[2] == 5.0 and bool(model.price_imputed[2])
    assert torch.allclose(scores["revenue"], scores["purchase"] * model.price)
    combined = model.combine(scores, {"purchase": 1.0, "revenue": 0.5})
    expected = scores["purchase"] + 0.5 * scores["revenue"] / model.price_scale
    assert torch.allclose(combined, expected)
    with pytest.raises(InvalidArgumentError, match="does not score 'rating'"):
        model.combine(scores, {"rating": 1.0})


@pytest.mark.parametrize("conversion", ["entire_space", "viewed_only"])
def test_the_weighted_loss_trains_every_head(tiny, conversion):
    model = rank_model(
        tiny,
        conversion=conversion,
        experts=2,
        objectives={"click": 1, "cart": 1, "purchase": 2, "revenue": 1, "rating": 1},
    ).train()
    batch = {
        "query": torch.tensor([[-1, 0], [0, 1], [1, 2]]),
        "target": torch.tensor([1, 2, 3]),
        "kind": torch.tensor([CART, PURCHASE, 0]),
        "rating": torch.tensor([5.0, float("nan"), 2.0]),
    }
    loss = model.calculate_loss(batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    for name in ("users.maps.weight", "items.gates.weight", "bias.weight", "shared"):
        grad = dict(model.heads.named_parameters())[name].grad
        assert grad is not None and bool((grad != 0).any()), name


def test_the_click_head_ranks_as_the_shared_fused_score():
    torch.manual_seed(1)
    heads = MultiObjectiveHeads(8, experts=2)
    users, items = torch.randn(3, 8), torch.randn(7, 8)
    click = heads(users, items)["click"]
    assert torch.equal(click.argsort(dim=1), (users @ items.T).argsort(dim=1))


def test_a_fixed_click_passes_conversion_losses_no_gradient():
    logits = {name: torch.randn(4, requires_grad=True) for name in HEADS}
    fixed = log_probabilities(logits, "entire_space", fixed_click=True)
    free = log_probabilities(logits, "entire_space")
    assert torch.allclose(fixed["purchase"], free["purchase"])
    fixed["purchase"].sum().backward()
    assert logits["click"].grad is None and bool((logits["purchase"].grad != 0).all())


def test_revenue_weight_zero_is_the_relevance_ranking_and_a_large_one_expected_revenue(tiny):
    model = rank_model(tiny).eval()
    scores = model.objective_scores(model.item_embeddings(), torch.tensor([[0, 1], [-1, 2]]))
    relevance = model.combine(scores, {"purchase": 1.0})
    assert torch.equal(model.combine(scores, {"purchase": 1.0, "revenue": 0.0}), relevance)
    # purchase=1, revenue=r ranks by P(purchase) · (1 + r · price / median): a price tilt that
    # tends to the expected-revenue ranking as r grows.
    tilted = model.combine(scores, {"purchase": 1.0, "revenue": 1e6})
    revenue = model.combine(scores, {"revenue": 1.0})
    assert torch.equal(tilted.argsort(dim=1), revenue.argsort(dim=1))


def test_the_satisfaction_loss_leaves_the_shared_representation_alone(tiny):
    batch = {
        "query": torch.tensor([[-1, 0], [0, 1], [1, 2]]),
        "target": torch.tensor([1, 2, 3]),
        "kind": torch.tensor([0, 0, 0]),
        "rating": torch.tensor([5.0, 2.0, 4.0]),
    }
    grads = {}
    for objectives in ({"click": 1.0}, {"click": 1.0, "rating": 1.0}):
        model = rank_model(tiny, objectives=objectives).train()
        torch.manual_seed(3)  # the same random negatives
        model.calculate_loss(batch).backward()
        grads[len(objectives)] = {
            n: p.grad for n, p in model.named_parameters() if not n.startswith("heads.")
        }
        rating_head = model.heads.shared.grad[3]
    # Every encoder gradient is what the click objective alone gives; the rating head learns.
    assert grads[1].keys() == grads[2].keys()
    for name, grad in grads[1].items():
        other = grads[2][name]
        assert (grad is None) == (other is None), name
        assert grad is None or torch.allclose(grad, other, atol=1e-7), name
    assert rating_head != 0
