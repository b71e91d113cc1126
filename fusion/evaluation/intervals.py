"""Percentile-bootstrap intervals over queries (bias-corrected), and whether two scorers are
distinguishable.

A resample draws the queries with replacement; it is represented by how often each query is
drawn (a weight row), so means and corpus-level metrics (coverage, Gini) are resampled alike,
and two scorers evaluated on the same queries are compared on the same resamples (paired)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor

RESAMPLES = 1000
LEVEL = 0.95
CHUNK = 100  # resamples held in memory at once ([CHUNK, queries] weights)

# Statistics of the queries under resample weights [R, Q] -> one value per resample, by name.
Statistic = Callable[[Tensor], dict[str, Tensor]]


def resample_weights(
    num_queries: int, resamples: int = RESAMPLES, seed: int = 0
) -> Iterator[Tensor]:
    """Chunks of bootstrap weights [≤ CHUNK, num_queries], each row summing to `num_queries`;
    the same seed gives the same resamples."""
    gen = torch.Generator().manual_seed(seed)
    for start in range(0, resamples, CHUNK):
        rows = min(CHUNK, resamples - start)
        draws = torch.randint(num_queries, (rows, num_queries), generator=gen)
        weights = torch.zeros(rows, num_queries)
        yield weights.scatter_add_(1, draws, torch.ones(rows, num_queries))


def means(values: dict[str, Tensor]) -> Statistic:
    """The weighted mean of each metric's per-query values [Q], NaN values left out."""
    names = list(values)
    # float64: a float32 sum over ~10⁴ queries is off in the 4th decimal, enough to put a
    # narrow interval beside its own point estimate.
    stacked = torch.stack([values[n].double() for n in names], dim=1)  # [Q, M]
    known = (~stacked.isnan()).double()
    filled = stacked.nan_to_num(0.0)

    def statistic(weights: Tensor) -> dict[str, Tensor]:
        weights = weights.double()
        mean = (weights @ filled) / (weights @ known)
        return dict(zip(names, mean.float().T, strict=True))

    return statistic


def bootstrap(
    statistic: Statistic, num_queries: int, resamples: int = RESAMPLES, seed: int = 0
) -> dict[str, Tensor]:
    """Each of the statistic's values on every resample (FloatTensor[resamples] by name)."""
    out: dict[str, list[Tensor]] = {}
    for weights in resample_weights(num_queries, resamples, seed):
        for name, value in statistic(weights).items():
            out.setdefault(name, []).append(value)
    return {name: torch.cat(values) for name, values in out.items()}


def percentile_interval(
    samples: Tensor, estimate: float | None = None, level: float = LEVEL
) -> tuple[float, float]:
    """The central `level` interval of bootstrap `samples` (NaN samples left out). Given the
    point `estimate`, the samples are first shifted by the bootstrap's bias estimate
    (their mean − `estimate`), for statistics that are not means: coverage of a resample —
    which holds about 63% of the distinct queries — is far below the full set's."""
    samples = samples[~samples.isnan()].double()
    if not samples.numel():
        return float("nan"), float("nan")
    if estimate is not None:
        samples = samples - (samples.mean() - estimate)
    tail = (1 - level) / 2
    lo, hi = torch.quantile(samples, torch.tensor([tail, 1 - tail], dtype=torch.double))
    return lo.item(), hi.item()


def distinguishable(
    difference: Tensor, estimate: float | None = None, level: float = LEVEL
) -> bool:
    """Whether the paired bootstrap `difference` samples (a − b on the same resamples; the
    point difference `estimate`, see `percentile_interval`) put zero outside their central
    `level` interval."""
    lo, hi = percentile_interval(difference, estimate, level)
    return lo > 0 or hi < 0
