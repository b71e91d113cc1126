"""Scale benchmark: synthetic catalogues of growing size through the whole tool, one command.

    nice -n 10 python benchmarks/bench_scale.py --sizes 12101 100000 1000000 [--store URI]

Per size: generate (`benchmarks/synth_catalogue.py`) → `kgrec build` into Neo4j
(relationships/s) → export to HeteroData (s) → one training epoch (`kgrec train --task related
--relation also_bought --epochs 1 --max-minutes M`: time, peak RSS) → two starts as `kgrec
serve` loads (the first builds what is then saved: product vectors above 50k products, the ANN
index; the second is timed as "serve ready"), `related` p50/p99 in process and recall@10
against the exact scan. Every step runs
in its own process (through the public CLI or APIs), measured by /usr/bin/time for peak RSS.
Writes `benchmarks/results/scale.json` with the targets of issue 13 beside each measurement.

The store is WIPED before each size: `--store` (default: the local server, `KGREC_NEO4J_HOME`
and ports from the environment, started if needed) must be a disposable database.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "scale.json"
TARGETS = {
    "build_relationships_per_s": ">= 50000",
    "export_s": "<= 120",
    "epoch_peak_rss_gib": "<= 12",
    "related_p99_ms": "<= 5",
    "related_recall_at_10": ">= 0.98",
    "serve_ready_s": "<= 60",
}
QUERIES = 1000
RECALL_QUERIES = 300


def _store_arg(store: str | None) -> list[str]:
    return ["--store", store] if store else []


def run(cmd: list[str], log_path: Path) -> dict:
    """Run `cmd` under /usr/bin/time: wall seconds, peak RSS (MiB), exit code, stdout."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss, open(log_path, "a") as log:
        log.write(f"$ {shlex.join(cmd)}\n")
        log.flush()
        start = time.perf_counter()
        done = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", rss.name, *cmd],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        seconds = time.perf_counter() - start
        log.write(done.stdout)
        lines = rss.read().strip().splitlines()
    peak = int(lines[-1]) / 1024 if lines and lines[-1].isdigit() else None
    return {
        "seconds": round(seconds, 1),
        "peak_rss_mib": peak and round(peak),
        "rc": done.returncode,
        "stdout": done.stdout,
    }


def _step(name: str, *args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--step", name, *args]


def step_clear(store: str | None) -> dict:
    from kg.stores import open_store

    with open_store(store) as s:
        s.clear()
    return {}


def step_build(catalogue: str, rejects: str, store: str | None) -> dict:
    """`kgrec build` through its API, timing the relationship writes as bench_ingest does; the
    bulk path (neo4j-admin import) has no per-type steps: its rate is every relationship over
    the whole write (columns, CSV files, server stop, import, restart, constraints), and over
    the whole build (reading and cleaning too)."""
    from kg.build import WRITE_BULK, build

    timer = _StepTimer()
    summary = build(catalogue, store_uri=store, rejects_path=rejects, progress=timer)
    result = {
        "build_s": summary.seconds,
        "write": summary.write,
        "write_s": summary.write_seconds,
        "nodes": summary.nodes,
        "relationships": summary.relationships,
        "rejected": summary.rejected,
        "events": summary.events.line(),
    }
    if summary.write != WRITE_BULK:
        return {**result, **timer.rates(summary.relationships)}
    rels = sum(summary.relationships.values())
    return {
        **result,
        "build_relationships_per_s": round(rels / summary.write_seconds),
        "whole_build_relationships_per_s": round(rels / summary.seconds),
        "stages_s": {name: round(s, 1) for name, s in timer.seconds.items()},
    }


class _StepTimer:
    """A write's progress callback: seconds per step, and relationships/s over the relationship
    steps (as bench_ingest measures)."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.seconds: dict[str, float] = {}

    def __call__(self, step: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if done == 0 or step not in self.started:  # a step may be announced empty, then run
            self.started[step] = now
        if done >= total:
            self.seconds[step] = now - self.started[step]

    def rates(self, relationships: dict[str, int]) -> dict:
        from kg.schema import Rel

        steps = [r for r in Rel if r in self.seconds]
        rels = sum(relationships.get(r, 0) for r in steps)
        write_s = sum(self.seconds[r] for r in steps)
        return {
            "relationship_write_s": round(write_s, 1),
            "build_relationships_per_s": round(rels / write_s) if write_s else None,
            "relationships_per_s_by_type": {
                r: round(relationships[r] / self.seconds[r])
                for r in steps
                if self.seconds[r] and relationships.get(r)
            },
        }


def step_export(store: str | None) -> dict:
    from kg.export import to_heterodata
    from kg.stores import open_store

    with open_store(store) as s:
        start = time.perf_counter()
        data = to_heterodata(s)
        seconds = time.perf_counter() - start
    edges = sum(data[et].edge_index.shape[1] for et in data.edge_types)
    return {"export_s": round(seconds, 1), "exported_edges": edges}


def step_serve(checkpoint: str, store: str | None) -> dict:
    """Start as `kgrec serve` does, twice: the first start rebuilds the model over the graph
    (large catalogues then save their product vectors) and builds the ANN index (saved next to
    the checkpoint); the second is a server's usual start: vectors and index from disk. Then
    time `related` and measure its recall against the exact scan."""
    import numpy as np
    import torch

    from fusion.serving.ann import AnnIndex, load_or_build
    from fusion.serving.recommender import Recommender

    start = time.perf_counter()
    with Recommender.load(checkpoint, store) as first:
        first_load_s = time.perf_counter() - start
        torch.set_num_threads(os.cpu_count() or 1)
        start = time.perf_counter()
        load_or_build(checkpoint, first.vectors, first.product_ids)  # builds unless saved
        build_s = time.perf_counter() - start
    del first
    start = time.perf_counter()
    rec = Recommender.load(checkpoint, store)
    model_load_s = time.perf_counter() - start
    torch.set_num_threads(1)
    start = time.perf_counter()
    index = AnnIndex.load(checkpoint, rec.vectors, rec.product_ids)
    index_load_s = time.perf_counter() - start
    rec.use_ann(index)
    rows = random.Random(0).sample(range(len(rec.product_ids)), min(QUERIES, len(rec.product_ids)))
    times = []
    for row in rows:
        t = time.perf_counter()
        rec.related(rec.product_ids[row], k=10, explain=False)
        times.append(time.perf_counter() - t)
    hits = 0
    for row in rows[:RECALL_QUERIES]:
        found = {r.product_id for r in rec.related(rec.product_ids[row], k=10, explain=False)}
        exact = rec._nearest(rec.vectors[row], 10, None, [row])  # the exact scan
        hits += len(found & {pid for pid, _ in exact})
    rec.close()
    return {
        "products_in_model": len(rec.product_ids),
        "dim": rec.vectors.shape[1],
        "first_load_s": round(first_load_s, 1),
        "ann_build_s": round(build_s, 1),
        "model_load_s": round(model_load_s, 1),
        "saved_vectors": type(rec.model).__name__ == "SavedVectorsQueryModel",
        "ann_load_s": round(index_load_s, 2),
        "serve_ready_s": round(model_load_s + index_load_s, 1),
        "related_p50_ms": round(float(np.percentile(times, 50)) * 1e3, 3),
        "related_p99_ms": round(float(np.percentile(times, 99)) * 1e3, 3),
        "related_recall_at_10": round(hits / (10 * min(RECALL_QUERIES, len(rows))), 4),
    }


STEPS = {
    "clear": step_clear,
    "build": step_build,
    "export": step_export,
    "serve": step_serve,
}


def _json_tail(stdout: str) -> dict:
    return json.loads(stdout[stdout.rindex("\n{") + 1 :] if "\n{" in stdout else stdout)


def measure_size(n: int, args: argparse.Namespace, log_path: Path) -> dict:
    work = args.work / str(n)
    row: dict = {"products": n}
    manifest_path = work / "synth.json"
    if not manifest_path.exists():
        generator = ROOT / "benchmarks" / "synth_catalogue.py"
        cmd = [sys.executable, str(generator), str(work), "--products", str(n)]
        generated = run([*cmd, "--text-pool", str(args.text_pool)], log_path)
        if generated["rc"]:
            raise SystemExit(f"generating {n} products failed (see {log_path})")
        manifest = {**json.loads(manifest_path.read_text()), **generated}
        manifest.pop("stdout")
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    row["generated"] = json.loads(manifest_path.read_text())
    store = _store_arg(args.store)

    def step(name: str, *extra: str) -> dict:
        result = run(_step(name, *extra, *store), log_path)
        if result["rc"]:
            return {"error": f"step {name} exited {result['rc']} (see {log_path})", **result}
        return {**_json_tail(result.pop("stdout")), **result}

    step("clear")
    if args.only:
        graph = {k: row["generated"].get(k) for k in ("seed", "links", "users", "interactions")}
        for name in args.only:
            extra = [str(work), str(work / "rejects.jsonl")] if name == "build" else []
            row[name] = {**step(name, *extra), "load_average_after": os.getloadavg()}
            row[name]["catalogue"] = graph  # the row's other steps may have had another
        return row
    row["build"] = step("build", str(work), str(work / "rejects.jsonl"))
    row["export"] = step("export")
    ckpt = work / "model"
    shutil.rmtree(ckpt, ignore_errors=True)  # a stale model must not stand in for this one
    train_cmd = "kgrec train --task related --relation also_bought --epochs 1 --max-minutes"
    cmd = [*train_cmd.split(), str(args.max_minutes), "--out", str(ckpt), *store]
    train = run(cmd, log_path)
    train["summary"] = train.pop("stdout").strip().splitlines()[-1:]  # "best … in N s (peak …)"
    row["train"] = train
    if (ckpt / "meta.json").exists():
        row["serve"] = step("serve", str(ckpt))
    else:
        row["serve"] = {"error": "no checkpoint: training ended without one"}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[12_101, 100_000, 1_000_000])
    parser.add_argument("--store", default=None, help="disposable Neo4j (WIPED); default: local")
    parser.add_argument("--work", type=Path, default=ROOT / "artifacts" / "scale")
    parser.add_argument("--text-pool", type=int, default=50_000)
    parser.add_argument("--max-minutes", type=float, default=60.0, help="training time cap")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--only",
        nargs="+",
        choices=["build", "export"],
        help="run only these steps (after the wipe) and merge them into --out's rows of the "
        "same sizes (the other measurements there are kept)",
    )
    parser.add_argument("--step", choices=sorted(STEPS), help=argparse.SUPPRESS)
    parser.add_argument("step_args", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:  # one measured step in its own process (internal)
        extra = args.step_args
        result = STEPS[args.step](*extra, args.store) if extra else STEPS[args.step](args.store)
        print(json.dumps(result))
        return

    args.work.mkdir(parents=True, exist_ok=True)
    log_path = args.work / "bench_scale.log"
    rows = []
    for n in args.sizes:
        rows.append(measure_size(n, args, log_path))
        print(json.dumps(rows[-1], indent=2), flush=True)
        _write(args, rows)


def _write(args: argparse.Namespace, rows: list[dict]) -> None:
    if args.only and args.out.exists():
        _merge(args, rows)
        return
    report = {
        "what": "synthetic Beauty-shaped catalogues (benchmarks/synth_catalogue.py) through "
        "build → export → one related/also_bought epoch → ANN related queries; time and memory "
        "only, never quality",
        "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "targets": TARGETS,
        "cpus": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "sizes": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


def _merge(args: argparse.Namespace, rows: list[dict]) -> None:
    """Replace only the steps run (`--only`) in the existing report, each with its command; the
    one replaced is kept as `<step>_before` (the first time)."""
    report = json.loads(args.out.read_text())
    known = {row["products"]: row for row in report["sizes"]}
    command = shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])
    for row in rows:
        target = known.setdefault(row["products"], {"products": row["products"]})
        for name in args.only:
            if name in target:  # the measurement replaced stays beside the new one
                target.setdefault(f"{name}_before", target[name])
            target[name] = {**row[name], "command": command}
    report["sizes"] = sorted(known.values(), key=lambda row: row["products"])
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
