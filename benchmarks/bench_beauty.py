"""Beauty benchmark: the fused model against popularity, text-only and LightGCN on the same
leakage-free splits, full ranking over all products (protocols in ../shared/data/README.md).

    python benchmarks/bench_beauty.py recommend            # leave-last-out recommendations
    python benchmarks/bench_beauty.py related              # held-out Product→Product edges
    python benchmarks/bench_beauty.py cold_start           # products with every edge removed

Each section merges its results into benchmarks/results/beauty.json (and a markdown table in
beauty.md), so sections can run separately or in parallel processes.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import time
from pathlib import Path

import torch

from fusion.config import RELATIONS, FusedConfig, TrainConfig
from fusion.data.graph import make_split, text_vectors
from fusion.data.splits import cold_start_split
from fusion.evaluation.harness import evaluate, summary, to_markdown
from fusion.model.baselines import LightGCNScorer, PopularityScorer, TextScorer
from fusion.model.fused import FusedModel
from fusion.training.loop import fit
from kg.cleaning import clean
from kg.export import to_heterodata
from kg.readers import read_beauty
from kg.rejects import RejectLog
from kg.stores import Snapshot

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("KGREC_DATA") or ROOT.parent / "shared" / "data")
OUT = ROOT / "benchmarks" / "results" / "beauty.json"


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # epoch lines
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("section", choices=("recommend", "related", "cold_start"))
    parser.add_argument("--relations", nargs="*", default=list(RELATIONS))
    parser.add_argument(
        "--max-minutes", type=float, default=TrainConfig.max_minutes, help="fused training cap"
    )
    parser.add_argument("--cold-epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    t0 = time.time()
    catalogue = read_beauty(DATA / "amazon-beauty-2014", log=RejectLog())
    clean(catalogue, external="drop")
    data = to_heterodata(Snapshot.from_catalogue(catalogue))
    text, text_model = text_vectors(data, progress=False)
    print(f"graph + text vectors in {time.time() - t0:.0f} s", flush=True)

    if args.section == "recommend":
        run(data, text, text_model, "recommend", "interacted", args)
    elif args.section == "related":
        for relation in args.relations:
            run(data, text, text_model, "related", relation, args)
    else:
        for relation in args.relations:
            run_cold(data, text, text_model, relation, args)


def run(data, text, text_model, task, relation, args) -> None:
    split = make_split(data, task, relation)
    config = FusedConfig(task=task, text_model=text_model)
    fused = FusedModel(split.train_graph, text, config)
    train = fit(fused, split, TrainConfig(max_minutes=args.max_minutes))
    scorers = {
        "popularity": PopularityScorer().fit(split),
        "text-only": TextScorer(text).fit(split),
    }
    start = time.time()
    scorers["graph-only (LightGCN)"] = LightGCNScorer().fit(split)
    lightgcn_seconds = time.time() - start
    scorers["fused"] = fused
    report = evaluate(scorers, split)
    report["fused_training"] = train.to_dict()
    report["lightgcn_seconds"] = round(lightgcn_seconds, 1)
    save(f"{task}/{relation}", report)


def run_cold(data, text, text_model, relation, args) -> None:
    split = cold_start_split(data, relation)
    fused = FusedModel(split.train_graph, text, FusedConfig(task="related", text_model=text_model))
    train = fit(fused, split, TrainConfig(epochs=args.cold_epochs))
    scorers = {
        "popularity": PopularityScorer().fit(split),
        "text-only": TextScorer(text).fit(split),
        "graph-only (LightGCN)": LightGCNScorer(epochs=5).fit(split),
        "fused": fused,
    }
    report = evaluate(scorers, split)
    report["fused_training"] = train.to_dict()
    save(f"cold_start/{relation}", report)


def save(key: str, report: dict) -> None:
    """Merge one section into the results file (locked: sections may run in parallel)."""
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = json.loads(OUT.read_text()) if OUT.exists() else {}
        results[key] = summary(report)  # per-query values stay out of the JSON
        OUT.write_text(json.dumps(results, indent=2, sort_keys=True))
        OUT.with_suffix(".md").write_text(
            "\n\n".join(f"### {k}\n\n{to_markdown(r)}" for k, r in sorted(results.items()))
        )
    print(f"## {key}\n{to_markdown(report)}", flush=True)


if __name__ == "__main__":
    main()
