"""Replay benchmark (issue 6): incremental updates + warm starts against a full retrain, Beauty.

    python benchmarks/bench_replay.py            # seeds 0 and 1, ~40 min on 2 CPU cores

Protocol (recommend task, no leakage). The final split is the usual leave-last-out of the full
data (`recommend_split`: per user last = test, second-to-last = validation). Beauty has no
timestamps, only each user's order, so time is replayed on a global pseudo-time, the relative
end position (i+1)/n of an item among the user's n training items: items at <= 0.8 are the
initial data (the first 80% of each user's history); the rest, ordered by pseudo-time (ties
broken by a seeded shuffle), are cut into 4 chunks of equal size, so each user's items still
arrive in order. The validation and test items
are in the store from the start and held out by the split at every stage, so every model is
validated and tested on the same final items and never trains on them. A product joins the
catalogue (with its edges) in the stage of its first interaction. Nearly every Beauty product
has one in the initial data, so a seeded random 5% of the products that are no user's
validation or test item are held out of the initial catalogue too: each joins in a random chunk
(evenly spread), and its interactions arrive with it (their ordering in the histories is kept).

1. the initial data goes into an embedded store (`kg.update.apply_delta`, the `kgrec update`
   path) and a model is trained from scratch (`fusion.pipeline.train`, capped at --max-minutes);
2. per chunk: `apply_delta` adds its interactions and new products (timed); the new products'
   related items are measured through the inductive path before any training step, next to
   text-only; then a warm start (window = the chunk's interactions, + replay) runs for
   --warm-epochs, timed end to end like the retrain;
3. a full retrain from scratch on the final store, same config and cap (a cap that early
   stopping, not the clock, ends: the JSON records what ended each training).
All of it runs once per seed (model initialisation, batch order, replay draws; the data, its
staging and the splits are the same): a retrain varies between seeds by about as much as the
margins of the targets, so each seed's warm chain is set against the same seed's retrain.
Every model is evaluated on the final test split (full ranking over all products, the user's
training items and validation item excluded), over today's catalogue and histories.
Results: benchmarks/results/replay.json and replay.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import random
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData

from fusion.config import WARM_EPOCHS, TrainConfig, TrainOptions
from fusion.data.graph import load_graph, text_vectors
from fusion.data.splits import PRODUCT_RELS, RecSplit, Split, recommend_split
from fusion.evaluation.harness import evaluate
from fusion.model.baselines import TextScorer
from fusion.model.checkpoint import load_checkpoint
from fusion.model.fused import FusedModel
from fusion.pipeline import train as run_train
from fusion.training.tasks import attach_histories
from kg.catalogue import Catalogue
from kg.cleaning import clean
from kg.export import to_heterodata
from kg.readers import read_beauty
from kg.rejects import RejectLog
from kg.stores import Snapshot, open_store
from kg.update import apply_delta

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("KGREC_DATA") or ROOT.parent / "shared" / "data")
OUT = ROOT / "benchmarks" / "results" / "replay.json"
INITIAL, CHUNKS = Fraction(4, 5), 4  # the first 80% of each user's training items, 4 chunks
NEW_PRODUCT_RELATIONS = ("also_viewed", "bought_together", "also_bought")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # epoch lines
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-minutes", type=float, default=40.0, help="initial/full training cap")
    parser.add_argument("--warm-epochs", type=int, default=WARM_EPOCHS)
    parser.add_argument("--replay-ratio", type=float, default=TrainConfig.replay_ratio)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--users", type=int, default=0, help="first N users only (0 = all)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="kgrec-replay-") as work:
        report = run(args, Path(work))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(to_markdown(report))
    print(to_markdown(report), flush=True)


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    started, load = time.time(), os.getloadavg()
    catalogue = read_beauty(DATA / "amazon-beauty-2014", log=RejectLog())
    clean(catalogue, external="drop")
    if args.users:
        catalogue = first_users(catalogue, args.users)
    final = to_heterodata(Snapshot.from_catalogue(catalogue))
    split = recommend_split(final)
    held_out = held_out_products(split)
    deltas = stage_deltas(catalogue, pair_stages(split), held_out)
    text = text_vectors(final, progress=False)
    runs = [
        run_seed(args, work / f"seed{seed}", seed, copy.deepcopy(deltas), final, split, text)
        for seed in args.seeds
    ]
    report = summary(args, runs, load, time.time() - started, split)
    report["held_out_products"] = len(held_out)
    return report


def run_seed(
    args: argparse.Namespace,
    work: Path,
    seed: int,
    deltas: list[Catalogue],
    final: HeteroData,
    split: RecSplit,
    text: tuple[Tensor, str],
) -> dict[str, Any]:
    """Initial training, the chunks' updates and warm starts, and the full retrain, one seed.
    `text`: the final catalogue's text vectors and the text model's id."""
    uri = f"embedded:{work / 'store'}"
    rejects = work / "rejects.jsonl"
    cap = TrainConfig(max_minutes=args.max_minutes, seed=seed)
    warm = TrainConfig(
        epochs=args.warm_epochs,
        max_minutes=args.max_minutes,
        replay_ratio=args.replay_ratio,
        seed=seed,
    )
    with open_store(uri) as store:
        apply_delta(store, deltas[0], external="drop", rejects_path=rejects)
    ckpt = work / "stage0"
    initial = timed_train(uri, TrainOptions(task="recommend", train=copy.copy(cap)), ckpt)
    initial["test"] = test_metrics(ckpt, split, *text)
    print(f"seed {seed} initial: {initial}", flush=True)

    chunks = []
    for c in range(1, CHUNKS + 1):
        with open_store(uri) as store:
            update = apply_delta(store, deltas[c], external="drop", rejects_path=rejects)
        row: dict[str, Any] = {
            "chunk": c,
            "interactions_new": update.interactions_new,
            "products_new": update.products_new,
            "update_seconds": update.seconds,
            "new_products": new_product_related(uri, ckpt, set(update.product_ids_changed)),
        }
        out = work / f"stage{c}"
        options = TrainOptions(task="recommend", warm_start=ckpt, train=copy.copy(warm))
        row.update(timed_train(uri, options, out))
        row["test"] = test_metrics(out, split, *text)
        chunks.append(row)
        ckpt = out
        print(f"seed {seed} chunk {c}: {row}", flush=True)

    check_final_store(uri, final)
    full_ckpt = work / "full"
    full = timed_train(uri, TrainOptions(task="recommend", train=copy.copy(cap)), full_ckpt)
    full["test"] = test_metrics(full_ckpt, split, *text)
    print(f"seed {seed} full retrain: {full}", flush=True)
    for row in chunks:
        row["ndcg_ratio"] = round(row["test"]["ndcg@10"] / full["test"]["ndcg@10"], 4)
        row["seconds_ratio"] = round(row["seconds"] / full["seconds"], 4)
    return {"seed": seed, "initial": initial, "chunks": chunks, "full_retrain": full}


def first_users(catalogue: Catalogue, n: int) -> Catalogue:
    """A development slice: the first `n` users, the products they touch, the edges among them."""
    users = set(list(dict.fromkeys(i.user for i in catalogue.interactions))[:n])
    interactions = [i for i in catalogue.interactions if i.user in users]
    keep = {i.product for i in interactions}
    return Catalogue(
        products={pid: p for pid, p in catalogue.products.items() if pid in keep},
        categories=catalogue.categories,
        edges=[e for e in catalogue.edges if e.src in keep and e.dst in keep],
        interactions=interactions,
    )


def pair_stages(split: RecSplit, seed: int = 0) -> dict[tuple[str, str], int]:
    """The chunk (1..CHUNKS) each late training (user id, product id) pair arrives in; pairs
    not listed (initial, validation, test) are stage 0. Pseudo-time = relative end position
    (i+1)/n in the user's n training items (exact fractions); the late pairs, ordered by it
    with seeded random tie-breaks, are cut into CHUNKS equal parts."""
    users, products = split.train_graph["user"].node_id, split.train_graph["product"].node_id
    late = [
        (Fraction(i + 1, len(seq)), users[u], products[p])
        for u, seq in split.history("valid").items()
        for i, p in enumerate(seq.tolist())
        if Fraction(i + 1, len(seq)) > INITIAL
    ]
    random.Random(seed).shuffle(late)
    late.sort(key=lambda row: row[0])  # stable: ties stay in shuffled order
    return {(u, p): 1 + k * CHUNKS // len(late) for k, (_, u, p) in enumerate(late)}


def held_out_products(split: RecSplit, frac: float = 0.05, seed: int = 0) -> dict[str, int]:
    """A seeded random `frac` of all products, drawn from the catalogue products that are no
    user's validation or test item, each with the chunk it joins in (evenly spread)."""
    ids = split.train_graph["product"].node_id
    targets = [t for stage in ("valid", "test") for t in split.targets(stage).values()]
    evaluated = set(torch.cat(targets).tolist()) if targets else set()
    in_catalogue = split.train_graph["product"].in_catalogue.tolist()
    pool = [pid for i, pid in enumerate(ids) if i not in evaluated and in_catalogue[i]]
    picked = random.Random(seed).sample(pool, min(len(pool), round(frac * len(ids))))
    return {pid: 1 + k % CHUNKS for k, pid in enumerate(picked)}


def stage_deltas(
    catalogue: Catalogue, pairs: dict[tuple[str, str], int], held_out: dict[str, int]
) -> list[Catalogue]:
    """Per stage, what `kgrec update` gets: its interactions, the products that join in it
    (held out, or first touched in it) and the edges whose later endpoint joins in it."""
    arrives = {pid: CHUNKS + 1 for pid in catalogue.products}
    for inter in catalogue.interactions:
        stage = pairs.get((inter.user, inter.product), 0)
        arrives[inter.product] = min(arrives[inter.product], stage)
    arrives = {pid: 0 if s > CHUNKS else s for pid, s in arrives.items()}  # never interacted
    arrives.update(held_out)
    stages = [
        max(pairs.get((i.user, i.product), 0), arrives[i.product]) for i in catalogue.interactions
    ]
    deltas = [Catalogue(categories=catalogue.categories) for _ in range(CHUNKS + 1)]
    for pid, product in catalogue.products.items():
        deltas[arrives[pid]].products[pid] = copy.copy(product)
    for edge in catalogue.edges:
        deltas[max(arrives[edge.src], arrives[edge.dst])].edges.append(edge)
    for inter, stage in zip(catalogue.interactions, stages, strict=True):
        deltas[stage].interactions.append(inter)
    return deltas


def timed_train(uri: str, options: TrainOptions, out: Path) -> dict[str, Any]:
    """`kgrec train` end to end (graph from the store, text vectors from the cache, split,
    training, checkpoint), timed."""
    start = time.perf_counter()
    _, result, _ = run_train(uri, options, out)
    return {
        "seconds": round(time.perf_counter() - start, 1),
        "fit_seconds": round(result.seconds, 1),
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
        "targets": result.targets,
        "window": result.window,
        "ended_by": result.stopped_by,
        "valid_" + result.metric: round(result.best, 4),
    }


def test_metrics(ckpt: Path, split: RecSplit, text: Tensor, text_model: str) -> dict[str, float]:
    """The checkpoint on the final test split, over the final catalogue (products it has not
    seen are placed inductively) and the users' final histories."""
    model = load_checkpoint(ckpt, split.train_graph, text, text_model, allow_new_nodes=True)
    attach_histories(model, split)
    results = evaluate({"fused": model}, split)["results"]["fused"]
    return {k: round(v, 4) for k, v in results.items()}


class ItemCosine:
    """Related items of a recommendation model as `kgrec related` ranks them
    (`fusion.serving.query_model`): cosine of the fused product vectors."""

    def __init__(self, model: FusedModel) -> None:
        with torch.no_grad():
            self.vectors = F.normalize(model.item_embeddings(), dim=1)

    def fit(self, split: Split) -> ItemCosine:
        return self

    def full_sort_predict(self, query_idx: Tensor, stage: str = "test") -> Tensor:
        return self.vectors[query_idx] @ self.vectors.T


def new_product_related(uri: str, ckpt: Path, new_ids: set[str]) -> dict[str, Any]:
    """Related-items Recall@20 of the products the update just added, from the previous
    checkpoint with no training step, next to text-only on the same queries. Targets: a new
    product's in-catalogue neighbours in each relation; those edges leave the graph the model
    sees. Two settings: the new products keep their other relations' edges ("+edges"), or keep
    only text, brand and category ("text+brand+category", as in the cold-start protocol)."""
    data = load_graph(uri)
    text, text_model = text_vectors(data, progress=False)
    ids = data["product"].node_id
    new = torch.tensor([pid in new_ids for pid in ids], dtype=torch.bool)
    out: dict[str, Any] = {"products": int(new.sum())}
    relations = [r for r in NEW_PRODUCT_RELATIONS if ("product", r, "product") in data.edge_types]
    for setting, dropped in (("+edges", None), ("text+brand+category", PRODUCT_RELS)):
        for relation in relations:
            split = new_product_split(data, new, relation, dropped or (relation,))
            if not split.test:
                continue
            model = load_checkpoint(ckpt, split.train_graph, text, text_model, allow_new_nodes=True)
            scorers = {"fused (inductive)": ItemCosine(model), "text-only": TextScorer(text)}
            report = evaluate({k: s.fit(split) for k, s in scorers.items()}, split)
            out[f"{setting}/{relation}"] = {
                "queries": report["num_queries"],
                **{k: round(v["recall@20"], 4) for k, v in report["results"].items()},
            }
    return out


def new_product_split(data: HeteroData, new: Tensor, relation: str, dropped) -> Split:
    """Queries: the new products with in-catalogue neighbours in `relation`; the graph: `data`
    without any edge of the `dropped` relations (and their reverses) touching a new product."""
    graph = copy.copy(data)
    for et in graph.edge_types:
        if et[0] == et[2] == "product" and et[1].removeprefix("rev_") in dropped:
            src, dst = graph[et].edge_index
            graph[et].edge_index = graph[et].edge_index[:, ~(new[src] | new[dst])]
    src, dst = data["product", relation, "product"].edge_index
    in_cat = data["product"].in_catalogue
    keep = new[src] & in_cat[dst] & (src != dst)
    targets: dict[int, list[int]] = {}
    for s, d in zip(src[keep].tolist(), dst[keep].tolist(), strict=True):
        targets.setdefault(s, []).append(d)
    test = {s: torch.tensor(sorted(set(d))) for s, d in targets.items()}
    return Split(
        task="cold_start",
        relation=relation,
        train_graph=graph,
        train_edges=torch.empty(2, 0, dtype=torch.long),
        targets_by_stage={"valid": {}, "test": test},
        exclusions_by_stage={"valid": {}, "test": {s: torch.tensor([s]) for s in test}},
    )


def check_final_store(uri: str, final: HeteroData) -> None:
    """After the last chunk the store must hold exactly the final graph's nodes."""
    data = load_graph(uri)
    for t in final.node_types:
        assert list(data[t].node_id) == list(final[t].node_id), f"{t} ids differ"
    assert data["user", "interacted", "product"].num_edges == (
        final["user", "interacted", "product"].num_edges
    )


def summary(args, runs, load, seconds, split) -> dict[str, Any]:
    """Per seed, the targets on that seed's chain against its own retrain; and over seeds."""
    last = [run["chunks"][-1]["ndcg_ratio"] for run in runs]
    per_chunk = [row["seconds_ratio"] for run in runs for row in run["chunks"]]
    warm_total = [
        sum(r["seconds"] for r in run["chunks"]) / run["full_retrain"]["seconds"] for run in runs
    ]
    return {
        "dataset": "amazon-beauty-2014",
        "task": "recommend",
        "protocol": __doc__.split("Protocol")[1].split("Results:")[0].strip(),
        "config": {
            "max_minutes": args.max_minutes,
            "max_minutes_applies_to": "initial training and full retrain (same cap)",
            "warm_epochs": args.warm_epochs,
            "replay_ratio": args.replay_ratio,
            "chunks": CHUNKS,
            "seeds": args.seeds,
            "users": args.users or None,
            "threads": torch.get_num_threads(),
        },
        "test_queries": len(split.test),
        "runs": runs,
        "targets": {
            "warm_ndcg_ratio_after_last_chunk": {
                "per_seed": last,
                "mean": round(sum(last) / len(last), 4),
                "target": ">= 0.95",
                "met": all(r >= 0.95 for r in last),
            },
            "warm_seconds_ratio_per_chunk": {
                "max": max(per_chunk),
                "target": "<= 0.20",
                "met": max(per_chunk) <= 0.20,
            },
            "warm_seconds_ratio_all_chunks": [round(r, 4) for r in warm_total],
        },
        "load_average_at_start": [round(x, 2) for x in load],
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "seconds": round(seconds, 1),
    }


def to_markdown(report: dict[str, Any]) -> str:
    lines = [
        "| seed | model | NDCG@10 | HR@10 | ÷ full NDCG@10 | seconds | ÷ full seconds | epochs |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for run in report["runs"]:
        full = run["full_retrain"]
        rows = [("initial (80%)", run["initial"])]
        rows += [(f"warm start, chunk {r['chunk']}", r) for r in run["chunks"]]
        rows += [("full retrain", full)]
        for name, r in rows:
            ndcg = r["test"]["ndcg@10"]
            lines.append(
                f"| {run['seed']} | {name} | {ndcg:.4f} | {r['test']['hr@10']:.4f} | "
                f"{ndcg / full['test']['ndcg@10']:.3f} | "
                f"{r['seconds']:.0f} | {r['seconds'] / full['seconds']:.3f} | "
                f"{r['epochs']} (best {r['best_epoch']}, {r['ended_by']}) |"
            )
    targets = report["targets"]
    ndcg, secs = (
        targets["warm_ndcg_ratio_after_last_chunk"],
        targets["warm_seconds_ratio_per_chunk"],
    )
    lines += [
        "",
        f"Warm start after the last chunk ÷ full retrain NDCG@10: {ndcg['per_seed']} "
        f"(target ≥ 0.95: {'met' if ndcg['met'] else 'missed'}); slowest warm start ÷ retrain "
        f"time: {secs['max']} (target ≤ 0.20: {'met' if secs['met'] else 'missed'}).",
    ]
    lines += ["", "New products, related-items Recall@20 before any training step:", ""]
    lines += ["| seed | chunk | setting/relation | queries | fused (inductive) | text-only |"]
    lines += ["| ---: | ---: | --- | ---: | ---: | ---: |"]
    for run in report["runs"]:
        for r in run["chunks"]:
            for key, v in r["new_products"].items():
                if isinstance(v, dict):
                    lines.append(
                        f"| {run['seed']} | {r['chunk']} | {key} | {v['queries']} | "
                        f"{v['fused (inductive)']:.4f} | {v['text-only']:.4f} |"
                    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
