"""Explanation coverage and specificity: the share of top-10 related-item answers that carry at
least one explanation, and how specific the first one is (how many products share the node, words
or category it goes through; 1 for a direct link), set against the median category — over
categories, and over products (the category a product is in) — on a trained model's real answers.

    python benchmarks/bench_explanations.py [--datasets magazine beauty] [--queries 100]

Builds each dataset into an embedded store, trains a related-items model (`--max-minutes`), asks
100 random in-catalogue products (seed 0) for their top 10, and writes
benchmarks/results/explanations.json. A shorter training changes the answers, not the method.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from fusion.serving.recommender import Recommender

DATA = Path(os.environ.get("KGREC_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
RESULTS = Path(__file__).resolve().parent / "results" / "explanations.json"
DATASETS = {
    "magazine": (
        ["--catalogue", str(DATA / "amazon-magazine-2018" / "meta_Magazine_Subscriptions.json.gz")]
        + ["--interactions", str(DATA / "amazon-magazine-2018" / "ratings.csv.gz")]
    ),
    "beauty": ["--catalogue", str(DATA / "amazon-beauty-2014")],
}


def kgrec(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "fusion.cli", *args], check=True)


def measure(rec: Recommender, queries: list[str], k: int) -> dict:
    """Coverage and specificity over the top-k answers of `queries`."""
    answers = explained = by_graph = 0
    first_sizes: list[int] = []
    kinds: Counter = Counter()
    for pid in queries:
        for result in rec.related(pid, k=k):
            answers += 1
            if not result.explanations:
                continue
            explained += 1
            first = result.explanations[0]
            kinds[first.rels[-1].type if first.kind == "graph" else first.kind] += 1
            by_graph += any(path.kind == "graph" for path in result.explanations)
            first_sizes.append(first.size)
    in_catalogue = [p for p in rec.products.values() if p.in_catalogue]
    category_sizes = Counter(c for p in in_catalogue for c in p.categories)
    return {
        "queries": len(queries),
        "answers": answers,
        "explained_share": round(explained / answers, 4),
        "with_a_graph_path_share": round(by_graph / answers, 4),
        "first_explanation_by": dict(kinds.most_common()),
        "median_first_node_size": statistics.median(first_sizes) if first_sizes else None,
        # Over categories, and over products (the category a product is in, as a shopper meets it).
        "median_category_size": statistics.median(category_sizes.values()),
        "median_category_size_per_product": statistics.median(
            category_sizes[c] for p in in_catalogue for c in p.categories
        ),
    }


def _below(result: dict, yardstick: str) -> bool:
    first = result["median_first_node_size"]
    return first is not None and first < result[f"median_category_size{yardstick}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), default=["magazine"])
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--max-minutes", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    for name in args.datasets:
        with tempfile.TemporaryDirectory(prefix=f"kgrec-explain-{name}-") as tmp:
            store, model = f"embedded:{tmp}/graph", f"{tmp}/model"
            kgrec("build", *DATASETS[name], "--store", store, "--rejects", f"{tmp}/rejects.jsonl")
            relation = ["--task", "related", "--relation", "also_bought"]
            budget = ["--max-minutes", str(args.max_minutes)]
            kgrec("train", *relation, *budget, "--store", store, "--out", model)
            with Recommender.load(model, store) as rec:
                pool = sorted(p.id for p in rec.products.values() if p.in_catalogue)
                queries = random.Random(0).sample(pool, min(args.queries, len(pool)))
                start = time.perf_counter()
                result = measure(rec, queries, args.k)
                result["seconds"] = round(time.perf_counter() - start, 2)
        result["targets"] = {
            "explained_share >= 0.95": result["explained_share"] >= 0.95,
            "median_first_node_size < median_category_size": _below(result, ""),
            "median_first_node_size < median_category_size_per_product": _below(
                result, "_per_product"
            ),
        }
        results[name] = result
        print(name, json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
