"""Per-objective evaluation of ranking models (task `rank`): for each objective, the users with
a target of that kind in the held-out window, every scorer's full ranking of the catalogue,
NDCG@10, Recall@20, AUC over all candidates, precision@10 and (purchase, revenue) Revenue@10
and revenue share@10, each with a bootstrap 95% interval over those users; reports shaped like
the harness's, so `fusion.evaluation.harness.markdown`/`write_reports` print and save them.

Definitions, per query (a user): `auc` — the probability that a target outranks a non-target
candidate (ties count half); `precision@10` — the share of the top 10 that are targets (for
high ratings: the share of recommended items the user later rated ≥ 4); `revenue@10` — the
price of the purchased products in the top 10 over the most that 10 slots could hold (the
highest-priced purchases, ideal order) — per user, so with one purchase per user it is the hit
rate and price cannot count; `revenue share@10` — pooled over users: the price of every user's
purchased products in their top 10 ÷ the sum of their ideals, so an expensive purchase counts
more than a cheap one (what a shop earns). Per query it is the captured price ÷ the users' mean
ideal (fixed by the targets: the bootstrap resamples the captured revenue, not the unit).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import torch
from torch import Tensor

from fusion.data.events import RankSplit
from fusion.data.splits import Stage
from fusion.evaluation.harness import Scorer, report
from fusion.evaluation.intervals import RESAMPLES, bootstrap, means
from fusion.evaluation.metrics import _row_mask, ranking_metrics, top_k
from kg.errors import MissingDataError

REVENUE_OBJECTIVES = ("purchase", "revenue")  # their targets are purchases: Revenue@10 applies
K, RECALL_K = 10, 20


class ObjectiveScorer(Protocol):
    """A scorer with one score matrix per objective (a `RankModel`, or an adapter below)."""

    def full_sort_objectives(self, query_idx: Tensor, stage: Stage = "test") -> dict[str, Tensor]:
        """``{objective: [B, num_products]}`` for the queries."""
        ...


class SameForAll:
    """A single-score scorer (baselines) as an `ObjectiveScorer`: one ranking for all."""

    def __init__(self, scorer: Scorer, objectives: Sequence[str]) -> None:
        self.scorer, self.objectives = scorer, tuple(objectives)

    def full_sort_objectives(self, query_idx: Tensor, stage: Stage = "test") -> dict[str, Tensor]:
        scores = self.scorer.full_sort_predict(query_idx, stage=stage)
        return dict.fromkeys(self.objectives, scores)


class Weighted:
    """A multi-objective model ranked by weights fixed at query time, for every objective."""

    def __init__(self, model: Any, weights: Mapping[str, float], objectives: Sequence[str]):
        self.model, self.weights, self.objectives = model, dict(weights), tuple(objectives)

    def full_sort_objectives(self, query_idx: Tensor, stage: Stage = "test") -> dict[str, Tensor]:
        scores = self.model.full_sort_objectives(query_idx, stage)
        combined = self.model.combine(scores, self.weights)
        return dict.fromkeys(self.objectives, combined)


def auc(scores: Tensor, targets: Sequence[Tensor], candidates: Tensor | None = None) -> Tensor:
    """Per row, AUC of the targets against every other candidate (ties count half; NaN scores
    lowest). FloatTensor[B]."""
    scores = scores.float().nan_to_num(nan=float("-inf"))
    is_target = _row_mask(targets, *scores.shape)
    negative = ~is_target if candidates is None else ~is_target & candidates
    out = torch.empty(scores.shape[0])
    for row in range(scores.shape[0]):
        pos, neg = scores[row, is_target[row]], scores[row, negative[row]]
        below = (neg.unsqueeze(0) < pos.unsqueeze(1)).sum() + 0.5 * (
            neg.unsqueeze(0) == pos.unsqueeze(1)
        ).sum()
        out[row] = below / (pos.numel() * neg.numel())
    return out


def ideal_revenue(targets: Sequence[Tensor], price: Tensor, k: int = K) -> Tensor:
    """Per query, the largest total price k slots could hold: its k highest-priced targets."""
    return torch.stack([price[wanted].sort(descending=True).values[:k].sum() for wanted in targets])


def captured_revenue(top: Tensor, targets: Sequence[Tensor], price: Tensor) -> Tensor:
    """Per row of `top` [B, k]: the total price of the targets among them. FloatTensor[B]."""
    return torch.stack(
        [
            price[row[torch.isin(row, wanted)]].sum()
            for row, wanted in zip(top, targets, strict=True)
        ]
    )


def revenue_at_k(top: Tensor, targets: Sequence[Tensor], price: Tensor) -> Tensor:
    """Per row of `top` [B, k]: price of the targets among them ÷ the largest total k of the
    row's targets could give. FloatTensor[B] (NaN for a row whose targets have no price)."""
    ideal = ideal_revenue(targets, price, top.shape[1])
    captured = captured_revenue(top, targets, price)
    return torch.where(ideal > 0, captured / ideal.clamp(min=math.ulp(1.0)), float("nan"))


def objective_metrics(
    scores: Tensor,
    targets: Sequence[Tensor],
    split: RankSplit,
    objective: str,
    revenue_unit: float | None = None,
) -> dict[str, Tensor]:
    """Every per-query metric of one objective for a batch of score rows; `revenue_unit` (the
    evaluated users' mean `ideal_revenue`) divides the captured revenue for revenue share."""
    nothing = [torch.empty(0, dtype=torch.long)] * len(targets)
    ranking = ranking_metrics(scores, targets, nothing, (K, RECALL_K), split.candidates)
    top = top_k(scores, nothing, K, split.candidates)
    out = {
        f"ndcg@{K}": ranking[f"ndcg@{K}"],
        f"recall@{RECALL_K}": ranking[f"recall@{RECALL_K}"],
        "auc": auc(scores, targets, split.candidates),
        f"precision@{K}": torch.stack(
            [
                torch.isin(row, wanted).float().mean()
                for row, wanted in zip(top, targets, strict=True)
            ]
        ),
    }
    if objective in REVENUE_OBJECTIVES:
        price = split.prices.value
        out[f"revenue@{K}"] = revenue_at_k(top, targets, price)
        if revenue_unit:
            out[f"revenue share@{K}"] = captured_revenue(top, targets, price) / revenue_unit
    return out


@torch.no_grad()
def evaluate_objectives(
    scorers: Mapping[str, ObjectiveScorer],
    split: RankSplit,
    objectives: Sequence[str],
    stage: Stage = "test",
    batch_size: int = 256,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One harness-shaped report per objective (`relation` = the objective): every scorer's
    metrics on the users with that objective's targets, bootstrap 95% intervals (the same
    resamples for every scorer: paired), and the scorers not distinguishable from the best."""
    reports = []
    for objective in objectives:
        queries = split.objective_queries(stage, objective)
        if queries.numel() == 0:
            raise MissingDataError(f"no {stage} queries with {objective!r} targets")
        targets = split.objective_targets[stage][objective]
        unit = None
        if objective in REVENUE_OBJECTIVES:
            wanted = [targets[q] for q in queries.tolist()]
            unit = ideal_revenue(wanted, split.prices.value.nan_to_num(0.0)).mean().item()
        results, samples, per_query = {}, {}, {}
        for name, scorer in scorers.items():
            parts: dict[str, list[Tensor]] = {}
            for batch in queries.split(batch_size):
                scores = scorer.full_sort_objectives(batch, stage)[objective].cpu()
                wanted = [targets[q] for q in batch.tolist()]
                metrics = objective_metrics(scores, wanted, split, objective, unit)
                for metric, values in metrics.items():
                    parts.setdefault(metric, []).append(values)
            values = {metric: torch.cat(v) for metric, v in parts.items()}
            statistic = means(values)
            point = statistic(torch.ones(1, queries.numel()))
            results[name] = {m: v.item() for m, v in point.items()}
            samples[name] = bootstrap(statistic, queries.numel(), resamples, seed)
            per_query[name] = values
        setup = {"task": "rank", "relation": objective, "stage": stage, "mask_history": False}
        setup["num_products"] = int(split.candidates.sum())
        reports.append(report(setup, queries, resamples, results, samples, per_query))
    return reports
