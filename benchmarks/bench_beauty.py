"""Beauty benchmark: the fused model against SASRec, LightGCN, text-only and popularity on the
same leakage-free splits, full ranking over all products (protocols in ../shared/data/README.md).

    # leave-last-out recommendations: one process per variant and seed, then the report
    python benchmarks/bench_beauty.py recommend --variants fused-crawled sasrec --seeds 0 1 2
    python benchmarks/bench_beauty.py report               # runs → beauty.json / beauty.md
    python benchmarks/bench_beauty.py curve                # accuracy–diversity curve over λ
    python benchmarks/bench_beauty.py related              # held-out Product→Product edges
    python benchmarks/bench_beauty.py cold_start           # products with every edge removed

Recommend variants: the fused model seeing the crawled lists (`fused-crawled`), only
co_purchase links derived from training interactions (`fused-derived`), or no Product→Product
relation (`fused-neither`); `sasrec`, `lightgcn`, `text-only`, `popularity`. Each run keeps its
per-user values and top-10 lists, history masked and not, in benchmarks/results/beauty_runs/;
`report` pools the seeds of each variant (per user, the mean over seeds; coverage and Gini the
mean of the seeds' values) and bootstraps 95% intervals over users, the same resamples for every
variant, so differences are called only where the paired interval excludes zero. `curve`
re-ranks the fused-crawled seed-0 model's lists with the serving re-ranker for a grid of λ
(→ beyond_accuracy.json and .png, with the beyond-accuracy table of every scorer).

Each section merges its results into benchmarks/results/beauty.json (and a markdown table in
beauty.md), so sections can run separately.
"""

from __future__ import annotations

import argparse
import fcntl
import itertools
import json
import logging
import os
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from fusion.config import RELATIONS, FusedConfig, TrainConfig
from fusion.data.graph import make_split, text_vectors
from fusion.data.splits import cold_start_split
from fusion.evaluation.beyond import ExposureMetrics, ListMetrics, product_labels, product_sets
from fusion.evaluation.harness import (
    BEYOND_K,
    compare,
    evaluate,
    score_queries,
    summary,
    to_markdown,
    training_popularity,
)
from fusion.evaluation.intervals import RESAMPLES, bootstrap, means, percentile_interval
from fusion.model.baselines import LightGCNScorer, PopularityScorer, TextScorer
from fusion.model.fused import FusedModel
from fusion.model.sasrec import SASRecScorer
from fusion.serving.rerank import DiversifiedScorer, ProductDistance, label_sets
from fusion.training.loop import (
    PENALTIES,
    choose_popularity_penalty,
    fit,
    seed_everything,
    validate,
)
from fusion.training.tasks import attach_histories
from kg.cleaning import clean
from kg.export import to_heterodata
from kg.readers import read_beauty
from kg.rejects import RejectLog
from kg.stores import Snapshot

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("KGREC_DATA") or ROOT.parent / "shared" / "data")
RESULTS = ROOT / "benchmarks" / "results"
OUT = RESULTS / "beauty.json"
RUNS = RESULTS / "beauty_runs"  # per-run values and lists (large; not committed)
BEYOND = RESULTS / "beyond_accuracy.json"
SUMMARY = RESULTS / "beauty_recommend.md"  # the tables the README shows
BEYOND_NAMES = (
    "coverage",
    "gini",
    "pop_percentile",
    "long_tail",
    "ild_category",
    "category_distance",
    "ild_brand",
    "novelty",
)
# Product→Product side information of each fused variant: (crawled relations kept, derived).
FUSED_VARIANTS = {
    "fused-crawled": (None, ()),
    "fused-derived": ((), ("co_purchase",)),
    "fused-neither": ((), ()),
}
VARIANTS = (*FUSED_VARIANTS, "sasrec", "lightgcn", "text-only", "popularity")
PENALISED_BASELINES = ("sasrec", "lightgcn")
# Report rows in this order: each variant as configured, then with the other penalty.
REPORTED = (
    *VARIANTS,
    *(f"{v}-unpenalised" for v in FUSED_VARIANTS),
    *(f"{v}-penalised" for v in PENALISED_BASELINES),
)
DETERMINISTIC = ("text-only", "popularity")  # one run; seeds change nothing
CONVENTIONS = {"masked": True, "unmasked": False}
LAMBDAS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
CURVE_METRICS = ("ndcg@10", "hr@10", "ild_category@10", "category_distance@10", "ild_brand@10")
EXPOSURE_METRICS = ("coverage@10", "gini@10")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # epoch lines
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "section", choices=("recommend", "rescore", "report", "curve", "related", "cold_start")
    )
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--relations", nargs="*", default=list(RELATIONS))
    parser.add_argument(
        "--max-minutes", type=float, default=TrainConfig.max_minutes, help="fused training cap"
    )
    parser.add_argument(
        "--epochs", type=int, default=TrainConfig.epochs, help="fused training epoch cap"
    )
    parser.add_argument(
        "--sasrec-minutes", type=float, default=20.0, help="SASRec training cap (its default)"
    )
    parser.add_argument(
        "--lightgcn-epochs", type=int, default=LightGCNScorer().epochs, help="LightGCN epoch cap"
    )
    parser.add_argument("--cold-epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.section == "report":
        report_recommend(make_split(beauty_graph(), "recommend", "interacted"))
        return
    if args.section == "rescore":
        rescore_fused()
        return
    data, text, text_model = load_beauty()

    if args.section == "recommend":
        for variant in args.variants:
            for seed in args.seeds[:1] if variant in DETERMINISTIC else args.seeds:
                run_recommend(data, text, text_model, variant, seed, args)
    elif args.section == "curve":
        run_curve(data, text, text_model)
    elif args.section == "related":
        for relation in args.relations:
            run(data, text, text_model, "related", relation, args)
    else:
        for relation in args.relations:
            run_cold(data, text, text_model, relation, args)


def beauty_graph():
    """The cleaned Beauty catalogue as a HeteroData graph."""
    catalogue = read_beauty(DATA / "amazon-beauty-2014", log=RejectLog())
    clean(catalogue, external="drop")
    return to_heterodata(Snapshot.from_catalogue(catalogue))


def load_beauty() -> tuple:
    """(graph, product text vectors, text model id)."""
    t0 = time.time()
    data = beauty_graph()
    text, text_model = text_vectors(data, progress=False)
    print(f"graph + text vectors in {time.time() - t0:.0f} s", flush=True)
    return data, text, text_model


def run_recommend(data, text, text_model, variant: str, seed: int, args) -> None:
    """Fit one variant with one seed on the leave-last-out split; keep every test user's metric
    values and top-10 list, history masked and not (RUNS/<variant>-seed<seed>.pt)."""
    relations, derive = FUSED_VARIANTS.get(variant, (None, ()))
    split = make_split(data, "recommend", "interacted", relations=relations, derive=derive)
    start, record = time.time(), {"variant": variant, "seed": seed}
    if variant in FUSED_VARIANTS:
        scorer = fused_model(split, text, text_model, seed)
        config = TrainConfig(seed=seed, max_minutes=args.max_minutes, epochs=args.epochs)
        train = fit(scorer, split, config)
        record["training"] = train.to_dict()
        record["max_minutes"], record["max_epochs"] = args.max_minutes, args.epochs
        record["state"] = scorer.state_dict()
    elif variant == "sasrec":
        scorer = SASRecScorer(seed=seed, max_minutes=args.sasrec_minutes).fit(split)
        record["max_minutes"] = args.sasrec_minutes
        record["epochs"], record["history"] = len(scorer.history), scorer.history
    elif variant == "lightgcn":
        scorer = LightGCNScorer(seed=seed, epochs=args.lightgcn_epochs).fit(split)
        record["max_epochs"] = args.lightgcn_epochs
        record["epochs"] = len(scorer.history)
    elif variant == "text-only":
        scorer = TextScorer(text).fit(split)
    else:
        scorer = PopularityScorer().fit(split)
    record["fit_seconds"] = round(time.time() - start, 1)
    if variant in FUSED_VARIANTS:
        scorer.eval()
    save_runs(record, scorer, split)


def save_runs(record: dict, scorer, split) -> None:  # noqa: ANN001 - any harness scorer
    """Keep the run's test lists as configured, and with the other popularity penalty: a fused
    model (served with β chosen on validation, `fusion.training.loop`) also unpenalised (β = 0);
    SASRec and LightGCN (as published) also penalised, β chosen on the validation users exactly
    as fit chooses the fused model's — so the penalty's gain is measured for every model."""
    variant = record["variant"]
    if variant in FUSED_VARIANTS:
        penalty = scorer.config.popularity_penalty
        _save(record | {"popularity_penalty": penalty}, scorer, split, variant)
        scorer.config = replace(scorer.config, popularity_penalty=0.0)
        _save(record | {"popularity_penalty": 0.0}, scorer, split, f"{variant}-unpenalised")
        scorer.config = replace(scorer.config, popularity_penalty=penalty)
        return
    _save(record, scorer, split, variant)
    if variant in PENALISED_BASELINES:
        penalised = Penalised(scorer, torch.log1p(training_popularity(split).float()), 0.0)
        valid = split.sample_queries("valid", TrainConfig.valid_queries, record["seed"])
        scores = {}
        for penalty in PENALTIES:
            penalised.penalty = penalty
            scores[penalty] = validate(penalised, split, valid, "ndcg@10")
        penalised.penalty = max(scores, key=lambda p: (scores[p], -p))  # ties: the smaller
        extra = {"popularity_penalty": penalised.penalty, "validation_by_penalty": scores}
        _save(record | extra, penalised, split, f"{variant}-penalised")


class Penalised:
    """A scorer's scores less `penalty`·log(1 + training interactions) of each product."""

    def __init__(self, scorer, log_popularity: torch.Tensor, penalty: float) -> None:  # noqa: ANN001
        self.scorer, self.log_popularity, self.penalty = scorer, log_popularity, penalty

    def full_sort_predict(self, query_idx: torch.Tensor, stage: str = "test") -> torch.Tensor:
        scores = self.scorer.full_sort_predict(query_idx, stage=stage).float()
        return scores - self.penalty * self.log_popularity


def _save(record: dict, scorer, split, name: str) -> None:  # noqa: ANN001 - any harness scorer
    """Every test user's values and top-10 list, history masked and not, in RUNS."""
    record = record | {"variant": name}
    for convention, masked in CONVENTIONS.items():
        tops: list[torch.Tensor] = []
        values = score_queries(scorer, split, mask_history=masked, on_lists=(tops.append,))
        top = torch.cat(tops)
        record[convention] = {"values": values | list_values(split, top), "top": top}
    RUNS.mkdir(parents=True, exist_ok=True)
    torch.save(record, RUNS / f"{name}-seed{record['seed']}.pt")
    ndcg = record["masked"]["values"]["ndcg@10"].mean().item()
    print(f"{name} seed {record['seed']}: NDCG@10 {ndcg:.4f} (masked), {record['fit_seconds']} s")


def rescore_fused() -> None:
    """Fused runs saved before the popularity penalty existed (their lists unpenalised): β
    chosen on validation from the saved weights as fit now chooses it, both lists saved."""
    data, text, text_model = load_beauty()
    for path in sorted(RUNS.glob("fused-*-seed*.pt")):
        record = torch.load(path, weights_only=False)
        if record["variant"] not in FUSED_VARIANTS or "popularity_penalty" in record:
            continue
        relations, derive = FUSED_VARIANTS[record["variant"]]
        split = make_split(data, "recommend", "interacted", relations=relations, derive=derive)
        model = fused_model(split, text, text_model, record["seed"])
        model.load_state_dict(record["state"])
        model.eval()
        attach_histories(model, split)
        valid = split.sample_queries("valid", TrainConfig.valid_queries, record["seed"])
        choose_popularity_penalty(model, split, valid, "ndcg@10", None)
        save_runs(record, model, split)


def fused_model(split, text, text_model, seed: int) -> FusedModel:
    """A fresh fused recommend model on the split's training graph, initialised from `seed`."""
    seed_everything(seed)
    return FusedModel(split.train_graph, text, FusedConfig(task="recommend", text_model=text_model))


def _labels(split) -> tuple[torch.Tensor, torch.Tensor]:
    graph = split.train_graph
    return product_labels(graph, "in_category"), product_labels(graph, "made_by")


def list_values(split, top: torch.Tensor) -> dict[str, torch.Tensor]:
    """The per-query beyond-accuracy values of top-10 lists `top` [Q, 10] (popularity and
    labels from the split's training graph)."""
    sets = product_sets(split.train_graph, "in_category")
    lists = ListMetrics(
        BEYOND_K, training_popularity(split), split.candidates, *_labels(split), sets
    )
    for part in top.split(4096):
        lists.update(part)
    return lists.values()


def report_recommend(split) -> None:
    """Pool every variant's runs into one report per convention: per user the mean over seeds,
    coverage and Gini the mean of the seeds' values; bootstrap over users, the same resamples
    for every variant (paired). Beyond-accuracy values are recomputed from each run's lists
    (so every run is measured by the current definitions)."""
    runs: dict[str, list[dict]] = {}
    for path in sorted(RUNS.glob("*-seed*.pt")):
        record = torch.load(path, weights_only=False)
        for convention in CONVENTIONS:
            part = record[convention]
            part["values"] = part["values"] | list_values(split, part["top"])
        runs.setdefault(record["variant"], []).append(record)
    if not runs:
        raise SystemExit(f"no runs in {RUNS}: run the recommend section first")
    first = next(iter(runs.values()))[0]
    queries, candidates = first["queries"], first["candidates"]
    reports: dict[str, dict] = {}
    for convention, masked in CONVENTIONS.items():
        results, samples, extra = {}, {}, {}
        for variant in (v for v in REPORTED if v in runs):
            records = sorted(runs[variant], key=lambda r: r["seed"])
            if any(not torch.equal(r["queries"], queries) for r in records):
                raise SystemExit(f"{variant}: runs on another split")
            statistic = _pooled(records, convention, candidates)
            point = statistic(torch.ones(1, queries.numel()))
            results[variant] = {m: v.item() for m, v in point.items()}
            samples[variant] = bootstrap(statistic, queries.numel(), RESAMPLES, seed=0)
            extra[variant] = _per_seed(records, convention, candidates)
        report = {
            "task": "recommend",
            "relation": "interacted",
            "stage": "test",
            "mask_history": masked,
            "num_queries": queries.numel(),
            "num_products": int(candidates.sum()),
            "resamples": RESAMPLES,
            "results": results,
            **compare(results, samples),
            "runs": extra,
            "differences": _differences(results, samples),
        }
        save(f"recommend/{convention}", report)
        reports[convention] = report
    SUMMARY.write_text(summary_markdown(reports))
    if BEYOND.exists():  # the curve stays; the table follows the runs
        BEYOND.write_text(
            json.dumps(
                json.loads(BEYOND.read_text()) | {"beyond_accuracy": beyond_table()}, indent=2
            )
            + "\n"
        )
    print(SUMMARY.read_text(), flush=True)


def _cell(report: dict, name: str, metric: str) -> str:
    value, (lo, hi) = report["results"][name][metric], report["intervals"][name][metric]
    return f"{value:.4f} [{lo:.4f}, {hi:.4f}]"


def summary_markdown(reports: dict[str, dict]) -> str:
    """The README's tables: accuracy under both conventions, the paired differences, and the
    beyond-accuracy metrics (history masked), every value with its 95% interval."""
    masked, unmasked = reports["masked"], reports["unmasked"]
    lines = [
        "| scorer | seeds | NDCG@10 masked | HR@10 masked | NDCG@10 unmasked | HR@10 unmasked |"
        " training per seed |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name in masked["results"]:
        runs = masked["runs"][name]["per_seed"]
        lines.append(
            f"| {name} | {len(runs)} | {_cell(masked, name, 'ndcg@10')} | "
            f"{_cell(masked, name, 'hr@10')} | {_cell(unmasked, name, 'ndcg@10')} | "
            f"{_cell(unmasked, name, 'hr@10')} | {_training(runs)} |"
        )
    lines += ["", "| comparison | convention | difference [95% interval] | ratio | call |"]
    lines += ["| --- | --- | ---: | ---: | --- |"]
    for convention, report in reports.items():
        for key, d in report["differences"].items():
            lo, hi = d["interval"]
            lines.append(
                f"| {key} | {convention} | {d['difference']:+.4f} [{lo:+.4f}, {hi:+.4f}] | "
                f"{d['ratio']:.3f} | {d['call']} |"
            )
    beyond = [m for m in next(iter(masked["results"].values())) if m.split("@")[0] in BEYOND_NAMES]
    lines += ["", "| scorer (history masked) | " + " | ".join(beyond) + " |"]
    lines += ["| --- |" + " ---: |" * len(beyond)]
    for name in masked["results"]:
        lines.append(f"| {name} | " + " | ".join(_cell(masked, name, m) for m in beyond) + " |")
    lines += ["", "Targets (issue 17), checked from these reports:", ""]
    lines += [f"- {line}" for line in target_lines(reports)]
    return "\n".join(lines) + "\n"


def target_lines(reports: dict[str, dict]) -> list[str]:
    """Each target of the Beauty comparison, met (✓) or not (✗): a fused variant's interval
    entirely above SASRec's, masked and unmasked; coverage ≥ 2× LightGCN's at an NDCG@10 not
    lower; the re-ranker's +20% category distance for ≤ 5% NDCG@10 loss (beyond_accuracy.json)."""
    lines = []
    for name, sasrec in itertools.product(
        ("fused-crawled", "fused-derived"), ("sasrec", "sasrec-penalised")
    ):
        for convention, report in reports.items():
            if {name, sasrec} - set(report["results"]):
                continue
            cells = []
            for metric in ("ndcg@10", "hr@10"):
                above = (
                    report["intervals"][name][metric][0] > report["intervals"][sasrec][metric][1]
                )
                cells.append(
                    f"{metric} {_cell(report, name, metric)} vs {_cell(report, sasrec, metric)} "
                    + ("✓" if above else "✗")
                )
            lines.append(f"{name} above {sasrec}, {convention}: " + "; ".join(cells))
    masked = reports["masked"]
    for name, lightgcn in itertools.product(
        ("fused-crawled", "fused-derived"), ("lightgcn", "lightgcn-penalised")
    ):
        key = f"{name} vs {lightgcn}: "
        if key + "coverage@10" not in masked["differences"]:
            continue
        ratio = masked["differences"][key + "coverage@10"]["ratio"]
        ndcg = masked["differences"][key + "ndcg@10"]["call"]
        met = ratio >= 2 and ndcg != "lower"
        lines.append(
            f"coverage@10 of {name} {ratio:.2f}× {lightgcn}'s (≥ 2×), NDCG@10 {ndcg} "
            + ("✓" if met else "✗")
        )
    if BEYOND.exists():
        curve = json.loads(BEYOND.read_text())["curve"]
        if not curve["target_met_at_lambda"]["category_distance@10"]:
            lines.append("re-ranker: no λ reaches +20% category distance for ≤ 5% NDCG@10 loss ✗")
        for point in curve["points"]:
            change = point["relative_to_lambda_0"]
            ndcg, spread = change["ndcg@10"], change["category_distance@10"]
            if point["lambda"] in curve["target_met_at_lambda"]["category_distance@10"]:
                lines.append(
                    f"re-ranker λ = {point['lambda']}: category distance "
                    f"{spread['change']:+.1%} {_percent(spread['interval'])}, NDCG@10 "
                    f"{ndcg['change']:+.1%} {_percent(ndcg['interval'])} (+20% for ≤ 5%) ✓"
                )
    return lines


def _percent(interval: list[float]) -> str:
    return f"[{interval[0]:+.1%}, {interval[1]:+.1%}]"


def _training(runs: list[dict]) -> str:
    """How each seed was trained: epochs, stop reason, minutes."""
    parts = []
    for run in runs:
        if "training" in run:
            t = run["training"]
            parts.append(f"{t['epochs']} ep ({t['stopped_by']}), {t['seconds'] / 60:.1f} min")
        elif "epochs" in run:
            parts.append(f"{run['epochs']} ep, {run['fit_seconds'] / 60:.1f} min")
    return "; ".join(parts)


def _pooled(records: list[dict], convention: str, candidates: torch.Tensor):
    """Statistic over query weights: the mean over the runs (seeds) of each metric."""
    parts = []
    for record in records:
        values = record[convention]["values"]
        exposure = ExposureMetrics(BEYOND_K, candidates)
        exposure.update(record[convention]["top"])
        parts.append((means(values), exposure))

    def statistic(weights: torch.Tensor) -> dict[str, torch.Tensor]:
        each = [mean(weights) | exposure.compute(weights) for mean, exposure in parts]
        return {m: torch.stack([e[m] for e in each]).mean(0) for m in each[0]}

    return statistic


def _per_seed(records: list[dict], convention: str, candidates: torch.Tensor) -> dict:
    """Each seed's point values, and how it was trained."""
    out = {"seeds": [r["seed"] for r in records], "per_seed": []}
    for record in records:
        point = _pooled([record], convention, candidates)(torch.ones(1, len(record["queries"])))
        keys = ("fit_seconds", "max_minutes", "max_epochs", "epochs", "training")
        out["per_seed"].append(
            {"seed": record["seed"], **{k: record[k] for k in keys if k in record}}
            | {m: round(v.item(), 5) for m, v in point.items()}
        )
    return out


def _differences(results: dict, samples: dict) -> dict:
    """NDCG@10 and HR@10 of each fused variant minus SASRec's and LightGCN's: the paired 95%
    interval of the difference and of the relative difference, and whether it excludes 0."""
    out = {}
    for a in (v for v in FUSED_VARIANTS if v in results):
        baselines = [f"{v}{p}" for v in PENALISED_BASELINES for p in ("", "-penalised")]
        for b in (*baselines, "fused-crawled", f"{a}-unpenalised"):
            if b not in results or a == b:
                continue
            for metric in ("ndcg@10", "hr@10", "coverage@10"):
                diff = samples[a][metric] - samples[b][metric]
                point = results[a][metric] - results[b][metric]
                shift = point if metric.startswith("coverage") else None
                lo, hi = percentile_interval(diff, shift)
                ratio = samples[a][metric] / samples[b][metric]
                ratio_point = results[a][metric] / results[b][metric]
                rlo, rhi = percentile_interval(ratio, ratio_point if shift is not None else None)
                out[f"{a} vs {b}: {metric}"] = {
                    "difference": point,
                    "interval": [lo, hi],
                    "ratio": ratio_point,
                    "ratio_interval": [rlo, rhi],
                    "call": "higher" if lo > 0 else "lower" if hi < 0 else "not distinguishable",
                }
    return out


def curve_inputs(data, text, text_model) -> tuple:
    """The fused-crawled seed-0 model ready to score test users, its split, its unit product
    vectors and the products' category `label_sets`."""
    record = torch.load(RUNS / "fused-crawled-seed0.pt", weights_only=False)
    split = make_split(data, "recommend", "interacted")
    model = fused_model(split, text, text_model, 0)
    model.load_state_dict(record["state"])
    model.config = replace(model.config, popularity_penalty=record["popularity_penalty"])
    model.eval()
    attach_histories(model, split)
    with torch.no_grad():
        vectors = F.normalize(model.item_embeddings(), dim=-1)
    src, dst = split.train_graph["product", "in_category", "category"].edge_index
    categories: list[list[int]] = [[] for _ in range(split.num_products)]
    for p, c in zip(src.tolist(), dst.tolist(), strict=True):
        categories[p].append(c)
    return model, split, vectors, label_sets(categories)


def run_curve(data, text, text_model) -> None:
    """NDCG@10 and category diversity of the fused-crawled seed-0 lists re-ranked by the
    serving re-ranker (`fusion.serving.rerank`) for each λ."""
    model, split, vectors, categories = curve_inputs(data, text, text_model)
    distance = ProductDistance(vectors, categories)
    exclusions = split.exclusions("test", True)
    scorers = {
        f"λ={lam}": DiversifiedScorer(model, distance, lam, exclusions, split.candidates)
        for lam in LAMBDAS
    }
    report = evaluate(scorers, split)
    queries = report["per_query"]["queries"]
    points = []
    base = None
    for lam, name in zip(LAMBDAS, scorers, strict=True):
        values = report["per_query"][name]
        picked = {m: values[m] for m in CURVE_METRICS}
        draws = bootstrap(means(picked), queries.numel(), RESAMPLES, seed=0)
        base = draws if base is None else base
        point = {m: report["results"][name][m] for m in picked}
        entry = {"lambda": lam, **point}
        entry["intervals"] = {m: report["intervals"][name][m] for m in picked}
        for m in EXPOSURE_METRICS:  # corpus-level: a value per list set, not per user
            entry[m], entry["intervals"][m] = (
                report["results"][name][m],
                report["intervals"][name][m],
            )
        entry["relative_to_lambda_0"] = {
            m: {
                "change": point[m] / points[0][m] - 1 if points else 0.0,
                "interval": list(percentile_interval(draws[m] / base[m] - 1)),
            }
            for m in CURVE_METRICS
        }
        points.append(entry)
    save_curve(points, report)


def beyond_table() -> dict:
    """The beyond-accuracy values and intervals of every scorer, from beauty.json's reports."""
    beauty = json.loads(OUT.read_text()) if OUT.exists() else {}
    return {
        key: {
            name: {
                m: {"value": v, "interval": beauty[key]["intervals"][name][m]}
                for m, v in r.items()
                if m.split("@")[0] in BEYOND_NAMES
            }
            for name, r in beauty[key]["results"].items()
        }
        for key in ("recommend/masked", "recommend/unmasked")
        if key in beauty
    }


def save_curve(points: list[dict], report: dict) -> None:
    """beyond_accuracy.json (curve + the beyond-accuracy table of every scorer from beauty.json)
    and the curve as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = beyond_table()
    diversity = ("ild_category@10", "category_distance@10")
    met = {
        m: [
            p["lambda"]
            for p in points
            if p["relative_to_lambda_0"][m]["change"] >= 0.2
            and p["relative_to_lambda_0"]["ndcg@10"]["change"] >= -0.05
        ]
        for m in diversity
    }
    BEYOND.write_text(
        json.dumps(
            {
                "curve": {
                    "model": "fused-crawled, seed 0 (benchmarks/results/beauty_runs)",
                    "re-ranker": "fusion.serving.rerank (greedy max-sum of (1 - λ) · "
                    "exp(score - best score) + λ · mean Jaccard distance of category sets to "
                    "the answers picked, shown in relevance order; pool 5k)",
                    "split": "Beauty leave-last-out, test, history masked, full ranking",
                    "num_queries": report["num_queries"],
                    "points": points,
                    "target": "+20% category diversity for <= 5% relative NDCG@10 loss",
                    "target_met_at_lambda": met,
                },
                "beyond_accuracy": table,
            },
            indent=2,
        )
        + "\n"
    )
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    labels = ("category sets differ (ILD)", "Jaccard distance of category sets")
    for ax, metric, label in zip(axes, diversity, labels, strict=True):
        x, y = [p[metric] for p in points], [p["ndcg@10"] for p in points]
        xerr = [
            [p[metric] - p["intervals"][metric][0] for p in points],
            [p["intervals"][metric][1] - p[metric] for p in points],
        ]
        yerr = [
            [p["ndcg@10"] - p["intervals"]["ndcg@10"][0] for p in points],
            [p["intervals"]["ndcg@10"][1] - p["ndcg@10"] for p in points],
        ]
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, marker="o", capsize=3)
        for p in points:
            ax.annotate(
                f"λ={p['lambda']}",
                (p[metric], p["ndcg@10"]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=8,
            )
        ax.set_xlabel(f"intra-list category diversity@10: {label}")
    axes[0].set_ylabel("NDCG@10")
    fig.suptitle(
        "Beauty: fused model + diversity re-ranker over λ (95% bootstrap intervals over users)"
    )
    fig.tight_layout()
    fig.savefig(BEYOND.with_suffix(".png"), dpi=120)
    print(json.dumps(points, indent=1), flush=True)


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
