"""Evaluation harness: every scorer is ranked on the same split, stage and metrics, in batches
of queries (a full Beauty score matrix is 22k x 12k floats = 1 GB), and reported as a markdown
table and JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from fusion.data.splits import Split, Stage
from fusion.evaluation.metrics import ranking_metrics
from kgrec.errors import MissingDataError


class Scorer(Protocol):
    """What every baseline and the fused model implement (RecBole style)."""

    def fit(self, split: Split, **kwargs: Any) -> Any: ...

    def full_sort_predict(self, query_idx: Tensor, stage: Stage = "test") -> Tensor:
        """Scores [B, num_products] for the queries of the task fitted on. `stage` says which
        history a query may use (recommend: training items, plus the validation item at test
        time); scorers without per-query history ignore it."""
        ...


@torch.no_grad()
def evaluate_scorer(
    scorer: Scorer,
    split: Split,
    stage: Stage = "test",
    ks: Sequence[int] = (10, 20),
    batch_size: int = 512,
    queries: Tensor | None = None,
) -> dict[str, float]:
    """Mean of each per-query metric over `queries` (default: every query with targets at
    `stage`; a fixed subset keeps per-epoch validation cheap)."""
    queries = split.queries(stage) if queries is None else queries
    if queries.numel() == 0:
        raise MissingDataError(f"{split.task} split has no {stage} queries")
    targets, exclusions = split.targets(stage), split.exclusions(stage)
    totals: dict[str, float] = {}
    for batch in queries.split(batch_size):
        ids = batch.tolist()
        per_query = ranking_metrics(
            scorer.full_sort_predict(batch, stage=stage).cpu(),
            [targets[q] for q in ids],
            [exclusions[q] for q in ids],
            ks=ks,
            candidates=split.candidates,
        )
        for name, values in per_query.items():
            totals[name] = totals.get(name, 0.0) + values.sum().item()
    return {name: total / queries.numel() for name, total in totals.items()}


def evaluate(
    scorers: dict[str, Scorer],
    split: Split,
    stage: Stage = "test",
    ks: Sequence[int] = (10, 20),
    batch_size: int = 512,
) -> dict[str, Any]:
    """Run already-fitted scorers on one split; a JSON-ready report."""
    return {
        "task": split.task,
        "relation": split.relation,
        "stage": stage,
        "num_queries": split.queries(stage).numel(),
        "num_products": int(split.candidates.sum()),
        "results": {
            name: evaluate_scorer(scorer, split, stage, ks, batch_size)
            for name, scorer in scorers.items()
        },
    }


def to_markdown(report: dict[str, Any]) -> str:
    """One table: a row per scorer, a column per metric."""
    results = report["results"]
    metrics = list(next(iter(results.values())))
    lines = [
        f"**{report['task']} / {report['relation']}** ({report['stage']}, "
        f"{report['num_queries']} queries, {report['num_products']} products, full ranking)",
        "",
        "| scorer | " + " | ".join(metrics) + " |",
        "| --- |" + " ---: |" * len(metrics),
    ]
    lines += [
        f"| {name} | " + " | ".join(f"{values[m]:.4f}" for m in metrics) + " |"
        for name, values in results.items()
    ]
    return "\n".join(lines) + "\n"


def markdown(reports: Sequence[dict[str, Any]]) -> str:
    """Every report's table, one after another."""
    return "\n\n".join(to_markdown(r) for r in reports)


def write_reports(reports: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """`path` as .json (the reports) and .md beside it (their tables); returns the JSON path."""
    path = Path(path).with_suffix(".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(list(reports), indent=2) + "\n")
    path.with_suffix(".md").write_text(markdown(reports))
    return path
