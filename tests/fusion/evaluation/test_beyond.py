"""Beyond-accuracy metrics on hand-made top-k lists whose values are worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch_geometric.data import HeteroData
from torch_geometric.metrics import LinkPredCoverage, LinkPredDiversity

from fusion.evaluation.beyond import (
    ExposureMetrics,
    ListMetrics,
    gini,
    product_labels,
    product_sets,
)

# Six products; 5 is a stub outside the catalogue. Popularity 5, 3, 3, 1, 0 over the catalogue.
POPULARITY = torch.tensor([5, 3, 3, 1, 0, 9])
CANDIDATES = torch.tensor([True] * 5 + [False])
CATEGORY = torch.tensor([0, 0, 1, -1, 1, 2])  # product 3 has no category
BRAND = torch.tensor([0, 1, 2, 3, 4, 5])
LISTS = torch.tensor([[0, 1, 2], [3, 0, 1]])


def _list_metrics() -> dict[str, torch.Tensor]:
    metrics = ListMetrics(3, POPULARITY, CANDIDATES, CATEGORY, BRAND)
    for row in LISTS.split(1):  # two updates: values concatenate in order
        metrics.update(row)
    return metrics.values()


def test_list_metrics_by_hand() -> None:
    values = _list_metrics()
    # Percentile = (less popular + half the ties, itself included) / 5:
    # product 0 → 4.5/5, products 1, 2 → 3/5, product 3 → 1.5/5.
    assert values["pop_percentile@3"].tolist() == pytest.approx([(0.9 + 0.6 + 0.6) / 3, 0.6])
    # The head is product 0 alone (no product is more popular; 1/5 of the catalogue would be).
    assert values["long_tail@3"].tolist() == pytest.approx([2 / 3, 2 / 3])
    # Categories 0, 0, 1: two of three pairs differ; (unknown, 0, 0): one known pair, alike.
    assert values["ild_category@3"].tolist() == pytest.approx([2 / 3, 0.0])
    assert values["ild_brand@3"].tolist() == pytest.approx([1.0, 1.0])
    # Smoothed share (count + 1) / (12 + 5).
    surprise = {p: -math.log2((c + 1) / 17) for p, c in enumerate([5, 3, 3, 1, 0])}
    assert values["novelty@3"].tolist() == pytest.approx(
        [(surprise[0] + 2 * surprise[1]) / 3, (surprise[3] + surprise[0] + surprise[1]) / 3]
    )


def test_a_list_without_known_pairs_is_nan() -> None:
    metrics = ListMetrics(2, POPULARITY, CANDIDATES, torch.tensor([-1, 0, 0, -1, 1, 1]), BRAND)
    metrics.update(torch.tensor([[0, 3], [1, 2]]))
    first, second = metrics.values()["ild_category@2"].tolist()
    assert math.isnan(first) and second == 0.0


def test_exposure_by_hand_and_weighted() -> None:
    exposure = ExposureMetrics(3, CANDIDATES)
    exposure.update(LISTS)
    out = exposure.compute()
    # Shown: 0 twice, 1 twice, 2 once, 3 once, 4 never → coverage 4/5; sorted exposure
    # [0, 1, 1, 2, 2]: Gini = (−4·0 − 2·1 + 0·1 + 2·2 + 4·2) / (5 · 6) = 1/3.
    assert out["coverage@3"].tolist() == pytest.approx([0.8])
    assert out["gini@3"].tolist() == pytest.approx([1 / 3])
    # Weights: the first list twice, the second never → 3 of 5 shown, each twice.
    weighted = exposure.compute(torch.tensor([[2.0, 0.0], [1.0, 1.0]]))
    assert weighted["coverage@3"].tolist() == pytest.approx([0.6, 0.8])
    # Sorted [0, 0, 2, 2, 2]: (2·2 + 4·2) / (5 · 6) = 0.4.
    assert weighted["gini@3"].tolist() == pytest.approx([0.4, 1 / 3])


def test_gini_extremes() -> None:
    assert gini(torch.tensor([[3.0, 3.0, 3.0, 3.0]])).item() == pytest.approx(0.0)
    assert gini(torch.tensor([[0.0, 0.0, 0.0, 8.0]])).item() == pytest.approx(3 / 4)
    assert gini(torch.zeros(1, 4)).item() == 0.0


def test_agrees_with_pyg_on_single_labels() -> None:
    gen = torch.Generator().manual_seed(0)
    n, k = 50, 10
    category = torch.randint(4, (n,), generator=gen)
    lists = torch.stack([torch.randperm(n, generator=gen)[:k] for _ in range(30)])
    ours = ListMetrics(k, torch.ones(n), torch.ones(n, dtype=torch.bool), category, category)
    ours.update(lists)
    pyg = LinkPredDiversity(k, category)
    pyg.update(lists, torch.zeros(2, 0, dtype=torch.long))
    assert ours.values()["ild_category@10"].mean().item() == pytest.approx(pyg.compute().item())
    exposure = ExposureMetrics(k, torch.ones(n, dtype=torch.bool))
    exposure.update(lists)
    coverage = LinkPredCoverage(k, n)
    coverage.update(lists, torch.zeros(2, 0, dtype=torch.long))
    assert exposure.compute()["coverage@10"].item() == pytest.approx(coverage.compute().item())


def test_product_labels_one_per_distinct_set(tiny: HeteroData) -> None:
    # tiny: products 0 and 1 are made by b0, none else has a brand; all five in c0.
    assert product_labels(tiny, "made_by").tolist() == [0, 0, -1, -1, -1, -1]
    assert product_labels(tiny, "in_category").tolist() == [0, 0, 0, 0, 0, -1]
    assert product_labels(tiny, "no_such_relation").tolist() == [-1] * 6


def test_lists_shorter_than_k_in_a_small_catalogue() -> None:
    exposure = ExposureMetrics(10, CANDIDATES)
    exposure.update(LISTS)  # 3 columns, k = 10
    assert exposure.compute()["coverage@10"].tolist() == pytest.approx([0.8])


def test_category_distance_by_hand() -> None:
    # Sets: 0 {a, b}, 1 {a}, 2 {c}, 3 none. Pairs of [0, 1, 2]: J(0,1) = 1 − 1/2, J(0,2) = 1,
    # J(1,2) = 1 → mean 5/6; [3, 0, 1]: only (0, 1) is known → 1/2; [3, 3]: none → NaN.
    sets = torch.tensor(
        [[1, 1, 0], [1, 0, 0], [0, 0, 1], [0, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=torch.bool
    )
    metrics = ListMetrics(3, POPULARITY, CANDIDATES, CATEGORY, BRAND, category_sets=sets)
    metrics.update(LISTS)
    metrics.update(torch.tensor([[3, 3, 3]]))
    first, second, third = metrics.values()["category_distance@3"].tolist()
    assert (first, second) == pytest.approx((5 / 6, 1 / 2)) and math.isnan(third)
    graph = HeteroData()
    graph["product"].num_nodes, graph["category"].num_nodes = 3, 2
    graph["product", "in_category", "category"].edge_index = torch.tensor([[0, 0, 2], [0, 1, 1]])
    assert product_sets(graph, "in_category").tolist() == [
        [True, True],
        [False, False],
        [False, True],
    ]
    assert product_sets(graph, "made_by").shape == (3, 0)
