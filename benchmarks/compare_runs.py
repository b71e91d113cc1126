"""Two saved Beauty recommend runs (benchmarks/results/beauty_runs/*.pt, from `bench_beauty.py
recommend`) compared per user on the same bootstrap resamples, both history conventions:

    python benchmarks/compare_runs.py fused-crawled-seed0 sasrec-seed0

Writes benchmarks/results/compare_<a>_vs_<b>.json: each run's training record, and per
metric each mean with its 95% interval and the paired difference a − b with its interval and
the call ("higher", "lower", "not distinguishable")."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from fusion.evaluation.intervals import bootstrap, distinguishable, means, percentile_interval

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
METRICS = ("ndcg@10", "hr@10", "ndcg@20", "hr@20", "mrr")
CONVENTIONS = ("masked", "unmasked")


def compare(a: dict, b: dict) -> dict:
    """Per convention and metric: both means with intervals, the paired difference a − b."""
    out: dict[str, dict] = {}
    for convention in CONVENTIONS:
        va, vb = a[convention]["values"], b[convention]["values"]
        values = {f"{m}/a": va[m] for m in METRICS} | {f"{m}/b": vb[m] for m in METRICS}
        values |= {f"{m}/diff": va[m].double() - vb[m].double() for m in METRICS}
        samples = bootstrap(means(values), len(va[METRICS[0]]))
        rows = {}
        for m in METRICS:
            point = {side: values[f"{m}/{side}"].double().mean().item() for side in ("a", "b")}
            diff = point["a"] - point["b"]
            rows[m] = {
                "a": [point["a"], percentile_interval(samples[f"{m}/a"])],
                "b": [point["b"], percentile_interval(samples[f"{m}/b"])],
                "difference": [diff, percentile_interval(samples[f"{m}/diff"])],
                "call": (
                    ("higher" if diff > 0 else "lower")
                    if distinguishable(samples[f"{m}/diff"])
                    else "not distinguishable"
                ),
            }
        out[convention] = rows
    return out


def summary(run: dict) -> dict:
    """What the run's training was: epochs, caps, time, stop reason."""
    keys = ("variant", "seed", "epochs", "history", "max_minutes", "max_epochs", "fit_seconds")
    record = {k: run[k] for k in keys if k in run}
    if "training" in run:
        training = run["training"]
        record |= {k: training[k] for k in ("epochs", "best_epoch", "stopped_by")}
        record["history"] = [round(h[training["metric"]], 5) for h in training["history"]]
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("a", help="run name, e.g. fused-crawled-seed0")
    parser.add_argument("b", help="run name, e.g. sasrec-seed0")
    args = parser.parse_args()
    runs = [
        torch.load(RESULTS / "beauty_runs" / f"{n}.pt", weights_only=False)
        for n in (args.a, args.b)
    ]
    report = {
        "a": args.a,
        "b": args.b,
        "runs": {args.a: summary(runs[0]), args.b: summary(runs[1])},
        "comparison": compare(*runs),
    }
    out = RESULTS / f"compare_{args.a}_vs_{args.b}.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    for convention, rows in report["comparison"].items():
        for m, row in rows.items():
            (pa, ia), (pb, ib), (d, idiff) = row["a"], row["b"], row["difference"]
            print(
                f"{convention:8} {m:8} {pa:.4f} [{ia[0]:.4f}, {ia[1]:.4f}] vs {pb:.4f} "
                f"[{ib[0]:.4f}, {ib[1]:.4f}]: {d:+.4f} [{idiff[0]:+.4f}, {idiff[1]:+.4f}] "
                f"{row['call']}"
            )
    print(f"→ {out}")


if __name__ == "__main__":
    main()
