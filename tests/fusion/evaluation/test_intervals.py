"""Bootstrap intervals over queries and the paired distinguishability test."""

from __future__ import annotations

import pytest
import torch

from fusion.evaluation.intervals import (
    bootstrap,
    distinguishable,
    means,
    percentile_interval,
    resample_weights,
)


def _bernoulli(p: float, n: int, seed: int) -> torch.Tensor:
    return (torch.rand(n, generator=torch.Generator().manual_seed(seed)) < p).float()


def test_weights_are_resamples_and_seeded() -> None:
    chunks = list(resample_weights(50, resamples=250, seed=3))
    assert [c.shape for c in chunks] == [(100, 50), (100, 50), (50, 50)]
    assert all(bool((c.sum(1) == 50).all()) for c in chunks)
    again = torch.cat(list(resample_weights(50, resamples=250, seed=3)))
    assert torch.equal(torch.cat(chunks), again)
    assert not torch.equal(torch.cat(chunks), torch.cat(list(resample_weights(50, 250, seed=4))))


def test_interval_matches_the_normal_approximation() -> None:
    values = _bernoulli(0.3, 2000, seed=0)
    samples = bootstrap(means({"hit": values}), 2000, resamples=1000)["hit"]
    lo, hi = percentile_interval(samples)
    mean = values.mean().item()
    half_width = 1.96 * (mean * (1 - mean) / 2000) ** 0.5
    assert lo < mean < hi
    assert hi - lo == pytest.approx(2 * half_width, rel=0.15)
    constant = bootstrap(means({"c": torch.full((40,), 0.25)}), 40, resamples=200)["c"]
    assert percentile_interval(constant) == pytest.approx((0.25, 0.25))


def test_nan_values_are_left_out_of_means() -> None:
    values = torch.tensor([1.0, float("nan"), 0.0, 1.0])
    point = means({"v": values})(torch.ones(1, 4))["v"]
    assert point.item() == pytest.approx(2 / 3)


def test_paired_difference_separates_what_intervals_cannot() -> None:
    # Queries differ a lot, the two scorers by a constant 0.01 on every query: the intervals of
    # the two means overlap, yet the paired difference is always 0.01.
    base = torch.rand(500, generator=torch.Generator().manual_seed(1))
    a, b = base + 0.01, base
    samples = bootstrap(means({"a": a, "b": b}), 500, resamples=300)
    a_lo, a_hi = percentile_interval(samples["a"])
    b_lo, b_hi = percentile_interval(samples["b"])
    assert a_lo < b_hi  # overlapping intervals
    assert distinguishable(samples["a"] - samples["b"])
    # Two draws of the same process: no call.
    c, d = _bernoulli(0.3, 500, seed=2), _bernoulli(0.3, 500, seed=3)
    pair = bootstrap(means({"c": c, "d": d}), 500, resamples=300)
    assert not distinguishable(pair["c"] - pair["d"])


def test_means_are_exact_over_many_queries() -> None:
    # Summed in float32, 22k values near 1 were off by ~1e-4: a narrow interval then missed
    # its own point estimate.
    values = 0.9998 + 0.0001 * torch.rand(22363, generator=torch.Generator().manual_seed(0))
    statistic = means({"m": values})
    point = statistic(torch.ones(1, values.numel()))["m"].item()
    assert point == pytest.approx(values.double().mean().item(), abs=1e-7)
    lo, hi = percentile_interval(bootstrap(statistic, values.numel(), 200)["m"])
    assert lo <= point <= hi
