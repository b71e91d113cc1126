"""Which parts of the diversity re-ranker buy category diversity cheaply: an ablation on the
Beauty fused-crawled seed-0 model (the model `bench_beauty.py curve` uses).

    python benchmarks/bench_rerank_ablation.py    # → results/rerank_ablation.json
    python benchmarks/bench_rerank_ablation.py --only "catalogue probability, pool 3k"

Each test user's 100 best rankable products (history masked, as the harness does) are scored
once; every variant re-ranks the same pools for a grid of λ, and reports NDCG@10 and the
category diversity of the lists (`fusion.evaluation.beyond`) against λ = 0. Variants change one
thing at a time, from the MMR the project served before (min–max relevance, distance to the
closest answer picked, similarity = mean of category Jaccard, same brand and clipped cosine,
greedy order, pool 3k) to the serving re-ranker (`fusion.serving.rerank.diversify_batch`),
and one it does not serve: relevance as the model's probability over the whole catalogue
(softmax of every product's score), so λ trades expected hits for variety at the same rate for
every user (it needs every product's score: `recommend` has them, `related`'s cosines are no
logits).
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import torch
from bench_beauty import RESULTS, curve_inputs, load_beauty
from torch import Tensor

from fusion.evaluation.beyond import ListMetrics, product_labels, product_sets
from fusion.evaluation.harness import training_popularity
from fusion.evaluation.metrics import top_k
from fusion.serving.rerank import ProductDistance, diversify_batch

K, POOL = 10, 100
CHUNK = 1024  # queries re-ranked at once (a pool's distances are [CHUNK, POOL, POOL])
LAMBDAS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
OUT = RESULTS / "rerank_ablation.json"
# name: (relevance, objective, similarity, shown in relevance order, pool)
VARIANTS = {
    "MMR as served before": ("min-max", "closest", "category+brand+vector", False, 30),
    "MMR, category distance only": ("min-max", "closest", "category", False, 30),
    "+ relevance order": ("min-max", "closest", "category", True, 30),
    "+ mean distance (max-sum)": ("min-max", "mean", "category", True, 30),
    "+ pool 5k": ("min-max", "mean", "category", True, 50),
    "+ relative probability (served)": ("probability", "mean", "category", True, 50),
    "served, pool 3k": ("probability", "mean", "category", True, 30),
    "served, pool 10k": ("probability", "mean", "category", True, 100),
    "catalogue probability, pool 3k": ("catalogue", "mean", "category", True, 30),
}
CATALOGUE_LAMBDAS = (0.005, 0.01, 0.015, 0.02, 0.03, 0.05)  # absolute probabilities are small


def rerank(scores: Tensor, pool: Tensor, distance: ProductDistance, brand: Tensor, variant, lam):
    """[B, K] products: the pools `pool` [B, POOL] (best first, `scores` theirs: log-softmax
    over the catalogue) re-ranked."""
    relevance_kind, objective, similarity_kind, by_relevance, size = variant
    pool, scores = pool[:, :size], scores[:, :size]
    apart = distance(pool)
    if (relevance_kind, objective, similarity_kind) == ("probability", "mean", "category"):
        return pool.gather(1, diversify_batch(scores, apart, K, lam))  # in relevance order
    low, high = scores[:, -1:], scores[:, :1]
    relevance = (scores - low) / (high - low).clamp(min=1e-12)
    if relevance_kind == "probability":
        relevance = torch.exp(scores - high)
    elif relevance_kind == "catalogue":
        relevance = torch.exp(scores)
    similarity = 1 - apart
    if similarity_kind != "category":
        b, v = brand[pool], distance.vectors[pool]
        same = ((b.unsqueeze(2) == b.unsqueeze(1)) & (b >= 0).unsqueeze(2)).float()
        similarity = (similarity + same + (v @ v.transpose(1, 2)).clamp(min=0)) / 3
    rows, chosen = torch.arange(len(pool)), torch.empty(len(pool), K, dtype=torch.long)
    taken = torch.zeros_like(relevance, dtype=torch.bool)
    closest, summed = torch.zeros_like(relevance), torch.zeros_like(relevance)
    for step in range(K):
        diverse = -closest if objective == "closest" else summed / max(step, 1)
        gain = ((1 - lam) * relevance + lam * diverse).masked_fill(taken, -math.inf)
        best = gain.argmax(1)
        chosen[:, step], taken[rows, best] = best, True
        closest = torch.maximum(closest, similarity[rows, best])
        summed += 1 - similarity[rows, best]
    return pool.gather(1, chosen.sort(1).values if by_relevance else chosen)


def measure(top: Tensor, target: Tensor, lists: ListMetrics) -> dict[str, float]:
    rank = (top == target.unsqueeze(1)).float()
    ndcg = (rank / torch.log2(torch.arange(2, K + 2).float())).sum(1)
    lists.reset()
    lists.update(top)
    values = lists.values()
    return {
        "ndcg@10": ndcg.mean().item(),
        **{m: values[f"{m}@10"].nanmean().item() for m in ("ild_category", "category_distance")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", choices=VARIANTS, help="re-run these, keep the rest")
    only = parser.parse_args().only or list(VARIANTS)
    torch.set_num_threads(1)
    model, split, vectors, categories = curve_inputs(*load_beauty())
    distance = ProductDistance(vectors, categories)
    targets, exclusions = split.targets("test"), split.exclusions("test", True)
    queries = split.queries("test")
    if any(len(targets[q]) != 1 for q in queries.tolist()):
        raise SystemExit("expects one held-out item per user (leave-last-out)")
    pools, scores = [], []
    with torch.no_grad():
        for batch in queries.split(512):
            full = model.full_sort_predict(batch).float()
            excluded = [exclusions[q] for q in batch.tolist()]
            pool = top_k(full, excluded, POOL, split.candidates)
            # Log-probabilities over the rankable products (the others masked, as the lists).
            rankable = full.masked_fill(~split.candidates, -math.inf)
            for row, items in enumerate(excluded):
                rankable[row, items] = -math.inf
            pools.append(pool)
            scores.append(full.gather(1, pool) - torch.logsumexp(rankable, 1, keepdim=True))
    pool, score = torch.cat(pools), torch.cat(scores)
    target = torch.cat([targets[q] for q in queries.tolist()])
    graph = split.train_graph
    brand = product_labels(graph, "made_by")
    lists = ListMetrics(
        K,
        training_popularity(split),
        split.candidates,
        product_labels(graph, "in_category"),
        brand,
        product_sets(graph, "in_category"),
    )
    base = measure(pool[:, :K], target, lists)
    out = {"num_queries": len(queries), "lambda_0": base, "variants": {}}
    if OUT.exists():
        out["variants"] = json.loads(OUT.read_text())["variants"]
    for name in only:
        variant, points = VARIANTS[name], []
        for lam in CATALOGUE_LAMBDAS if variant[0] == "catalogue" else LAMBDAS:
            top = torch.cat(
                [
                    rerank(s, p, distance, brand, variant, lam)
                    for s, p in zip(score.split(CHUNK), pool.split(CHUNK), strict=True)
                ]
            )
            point = measure(top, target, lists)
            points.append({"lambda": lam} | {m: v / base[m] - 1 for m, v in point.items()})
        within = [p for p in points if p["ndcg@10"] >= -0.05]
        best = max(within, key=lambda p: p["category_distance"], default=None)
        out["variants"][name] = {"best_within_5pct_ndcg_loss": best, "relative_to_lambda_0": points}
        print(f"{name}: {json.dumps(best)}", flush=True)
    out["variants"] = {name: out["variants"][name] for name in VARIANTS if name in out["variants"]}
    OUT.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
