"""Evaluation harness: every scorer is ranked on the same split, stage and metrics, in batches
of queries (a full Beauty score matrix is 22k x 12k floats = 1 GB), with beyond-accuracy
metrics of its top-10 lists and bootstrap intervals over queries, and reported as markdown
tables and JSON."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from fusion.config import Progress
from fusion.data.splits import INTERACTED, Split, Stage
from fusion.evaluation.beyond import (
    CORPUS_METRICS,
    ExposureMetrics,
    ListMetrics,
    product_labels,
    product_sets,
)
from fusion.evaluation.intervals import (
    RESAMPLES,
    bootstrap,
    distinguishable,
    means,
    percentile_interval,
)
from fusion.evaluation.metrics import ranking_metrics, top_k
from kg.errors import MissingDataError

ACCURACY = ("recall", "hr", "ndcg", "mrr")
BEYOND_K = 10  # length of the lists the beyond-accuracy metrics read


class Scorer(Protocol):
    """What every baseline and the fused model implement (RecBole style)."""

    def fit(self, split: Split, **kwargs: Any) -> Any: ...

    def full_sort_predict(self, query_idx: Tensor, stage: Stage = "test") -> Tensor:
        """Scores [B, num_products] for the queries of the task fitted on. `stage` says which
        history a query may use (recommend: training items, plus the validation item at test
        time); scorers without per-query history ignore it."""
        ...


def evaluate_scorer(
    scorer: Scorer, split: Split, stage: Stage = "test", **options: Any
) -> dict[str, float]:
    """Mean of each per-query metric over the queries; `options` as for `score_queries` (`ks`,
    `batch_size`, `queries` — a fixed subset keeps per-epoch validation cheap —,
    `mask_history`)."""
    per_query = score_queries(scorer, split, stage, **options)
    return {name: values.mean().item() for name, values in per_query.items()}


@torch.no_grad()
def score_queries(
    scorer: Scorer,
    split: Split,
    stage: Stage = "test",
    ks: Sequence[int] = (10, 20),
    batch_size: int = 512,
    queries: Tensor | None = None,
    mask_history: bool = True,
    on_lists: Sequence[Callable[[Tensor], None]] = (),
    list_k: int = BEYOND_K,
    progress: Progress | None = None,
) -> dict[str, Tensor]:
    """Every query's accuracy metrics (FloatTensor[Q] by name, in `queries` order).
    `mask_history=False` ranks the query's own history too (the user's training items, the
    product's training neighbours; a product never ranks itself). Each of `on_lists` receives
    every batch's top-`list_k` lists; `progress("validating", done, total)` follows the
    batches."""
    queries = split.queries(stage) if queries is None else queries
    if queries.numel() == 0:
        raise MissingDataError(f"{split.task} split has no {stage} queries")
    targets, exclusions = split.targets(stage), split.exclusions(stage, mask_history)
    parts: dict[str, list[Tensor]] = {}
    done = 0
    for batch in queries.split(batch_size):
        ids = batch.tolist()
        scores = scorer.full_sort_predict(batch, stage=stage).cpu()
        excluded = [exclusions[q] for q in ids]
        per_query = ranking_metrics(
            scores, [targets[q] for q in ids], excluded, ks=ks, candidates=split.candidates
        )
        for name, values in per_query.items():
            parts.setdefault(name, []).append(values)
        if on_lists:
            top = top_k(scores, excluded, list_k, split.candidates)
            for receive in on_lists:
                receive(top)
        done += len(ids)
        if progress:
            progress("validating", done, queries.numel())
    return {name: torch.cat(values) for name, values in parts.items()}


def evaluate(
    scorers: dict[str, Scorer],
    split: Split,
    stage: Stage = "test",
    ks: Sequence[int] = (10, 20),
    batch_size: int = 512,
    mask_history: bool = True,
    beyond_k: int = BEYOND_K,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """Run already-fitted scorers on one split; a JSON-ready report (except `per_query`, which
    `write_reports` saves apart): per scorer the mean of every accuracy and beyond-accuracy
    metric, its bootstrap 95% interval over queries, and per metric the scorers that are not
    distinguishable from its highest value (paired bootstrap of the difference)."""
    queries = split.queries(stage)
    popularity = training_popularity(split)
    category = product_labels(split.train_graph, "in_category")
    brand = product_labels(split.train_graph, "made_by")
    category_sets = product_sets(split.train_graph, "in_category")
    results, per_query, samples = {}, {}, {}
    for name, scorer in scorers.items():
        lists = ListMetrics(beyond_k, popularity, split.candidates, category, brand, category_sets)
        exposure = ExposureMetrics(beyond_k, split.candidates)
        values = score_queries(
            scorer, split, stage, ks, batch_size, queries, mask_history,
            on_lists=(lists.update, exposure.update), list_k=beyond_k,
        )  # fmt: skip
        values |= lists.values()
        point = means(values)(torch.ones(1, queries.numel())) | exposure.compute()
        results[name] = {metric: value.item() for metric, value in point.items()}
        per_query[name] = values

        def statistic(weights: Tensor, values=values, exposure=exposure) -> dict[str, Tensor]:
            return means(values)(weights) | exposure.compute(weights)

        samples[name] = bootstrap(statistic, queries.numel(), resamples, seed)
    setup = {"task": split.task, "relation": split.relation, "stage": stage}
    setup |= {"mask_history": mask_history, "num_products": int(split.candidates.sum())}
    return report(setup, queries, resamples, results, samples, per_query)


def report(
    setup: dict[str, Any],
    queries: Tensor,
    resamples: int,
    results: dict[str, dict[str, float]],
    samples: dict[str, dict[str, Tensor]],
    per_query: dict[str, dict[str, Tensor]],
) -> dict[str, Any]:
    """The one report shape (`evaluate`, `evaluate_objectives`): `setup` (task, relation, stage,
    mask_history, num_products), point values, intervals, ties and the per-query values."""
    return {
        **setup,
        "num_queries": queries.numel(),
        "resamples": resamples,
        "results": results,
        **compare(results, samples),
        "per_query": {"queries": queries, **per_query},
    }


def compare(
    results: dict[str, dict[str, float]], samples: dict[str, dict[str, Tensor]]
) -> dict[str, Any]:
    """From each scorer's point values and bootstrap samples (the same resamples for every
    scorer): `intervals` (per scorer and metric, the 95% interval) and `not_distinguishable`
    (per metric, the scorers the paired bootstrap cannot tell from the highest)."""
    return {
        "intervals": {
            name: {
                m: list(percentile_interval(s, _bias_reference(m, results[name][m])))
                for m, s in by_metric.items()
            }
            for name, by_metric in samples.items()
        },
        "not_distinguishable": _ties_with_best(results, samples),
    }


def training_popularity(split: Split) -> Tensor:
    """Each product's training interactions (the split's training pairs when the graph has no
    interactions, e.g. a catalogue without logs)."""
    graph = split.train_graph
    has_logs = INTERACTED in graph.edge_types and graph[INTERACTED].num_edges > 0
    edges = graph[INTERACTED].edge_index if has_logs else split.train_edges
    return torch.bincount(edges[1], minlength=split.num_products)


def _bias_reference(metric: str, estimate: float) -> float | None:
    """The point estimate a metric's bootstrap samples are re-centred on: corpus-level metrics
    only (a resample's coverage is biased low); for means the shift would be noise."""
    return estimate if metric.split("@")[0] in CORPUS_METRICS else None


def _ties_with_best(
    results: dict[str, dict[str, float]], samples: dict[str, dict[str, Tensor]]
) -> dict[str, list[str]]:
    """Per metric, the scorers whose paired bootstrap difference from the scorer with the
    highest value does not exclude zero."""
    out: dict[str, list[str]] = {}
    for metric in next(iter(results.values()), {}):
        best = max(results, key=lambda name: results[name][metric])
        out[metric] = [
            name
            for name in results
            if name != best
            and not distinguishable(
                samples[best][metric] - samples[name][metric],
                _bias_reference(metric, results[best][metric] - results[name][metric]),
            )
        ]
    return out


def to_markdown(report: dict[str, Any]) -> str:
    """A row per scorer, a column per metric (`value [lo, hi]` with intervals); accuracy and
    beyond-accuracy metrics in two tables. ≈ marks a value not distinguishable from the
    column's highest."""
    results = report["results"]
    intervals = report.get("intervals", {})
    ties = report.get("not_distinguishable", {})
    metrics = list(next(iter(results.values())))
    accuracy = [m for m in metrics if m.split("@")[0] in ACCURACY]
    beyond = [m for m in metrics if m not in accuracy]
    masked = "" if report.get("mask_history", True) else ", history not masked"
    lines = [
        f"**{report['task']} / {report['relation']}** ({report['stage']}, "
        f"{report['num_queries']} queries, {report['num_products']} products, full ranking"
        f"{masked})",
    ]
    for columns in (accuracy, beyond):
        if not columns:
            continue
        lines += [
            "",
            "| scorer | " + " | ".join(columns) + " |",
            "| --- |" + " ---: |" * len(columns),
        ]
        for name, values in results.items():
            cells = []
            for m in columns:
                cell = f"{values[m]:.4f}"
                if m in intervals.get(name, {}):
                    lo, hi = intervals[name][m]
                    cell += f" [{lo:.4f}, {hi:.4f}]"
                if name in ties.get(m, []):
                    cell += " ≈"
                cells.append(cell)
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if intervals:
        lines += [
            "",
            f"[lo, hi]: bootstrap 95% interval over queries ({report.get('resamples')} "
            "resamples); ≈: not distinguishable from the column's highest value (paired "
            "bootstrap).",
        ]
    return "\n".join(lines) + "\n"


def markdown(reports: Sequence[dict[str, Any]]) -> str:
    """Every report's table, one after another."""
    return "\n\n".join(to_markdown(r) for r in reports)


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """The report without its per-query values (what JSON files hold)."""
    return {k: v for k, v in report.items() if k != "per_query"}


def to_json(reports: Sequence[dict[str, Any]]) -> str:
    """The reports as JSON, without their per-query values."""
    return json.dumps([summary(r) for r in reports], indent=2)


def write_reports(reports: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """`path` as .json (the reports), .md beside it (their tables) and .per_query.pt (every
    query's metric values, where the reports have them); returns the JSON path."""
    path = Path(path).with_suffix(".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_json(reports) + "\n")
    path.with_suffix(".md").write_text(markdown(reports))
    per_query = [r["per_query"] for r in reports if "per_query" in r]
    if per_query:
        torch.save(per_query, path.with_suffix(".per_query.pt"))
    return path
