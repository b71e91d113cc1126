"""Data-parallel training throughput: `kgrec train --nproc 2` against one process on the same
graph (default Amazon Beauty 2014, its 12k products: external references dropped; `--catalogue`
for another), in an embedded store, the same options and seed.

    nice -n 10 python benchmarks/bench_ddp.py [--epochs 1] [--out benchmarks/results/ddp.json]
    nice -n 10 python benchmarks/bench_ddp.py --catalogue DATA/amazon-magazine-2018/\
meta_Magazine_Subscriptions.json.gz --interactions DATA/amazon-magazine-2018/ratings.csv.gz

Reports, per process count, the best validation metric, the training targets per epoch, the
seconds per epoch (training steps and the validation pass, from the checkpoint's history) and
targets/s; then the throughput ratio (2 processes / 1) and whether the metrics agree within the
tolerance of the CI test (tests/fusion/training/test_cli_training.py: 0.02 absolute). The ratio
depends on torch threads per process (`OMP_NUM_THREADS`, recorded): with one thread each, two
processes use the two cores one process leaves half idle, minus the data-parallel overhead
(gradient all-reduce over gloo, a graph copy per process).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("KGREC_DATA") or ROOT.parent / "shared" / "data")
BEAUTY = DATA / "amazon-beauty-2014"
OUT = ROOT / "benchmarks" / "results" / "ddp.json"
TOLERANCE = 0.02


def kgrec(*args: str) -> list[str]:
    return [sys.executable, "-m", "fusion.cli", *args]


def train(store: str, nproc: int, epochs: int, out: Path) -> dict:
    cmd = kgrec(
        "train", "--store", store, "--task", "related", "--relation", "also_bought",
        "--epochs", str(epochs), "--nproc", str(nproc), "--out", str(out),
    )  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{shlex.join(cmd)} failed:\n{done.stderr[-2000:]}")
    result = json.loads((out / "meta.json").read_text())["metrics"]["train"]
    epoch_s = result["history"][-1]["seconds"] / len(result["history"])
    return {
        "command": shlex.join(cmd[2:]),
        "wall_s": round(wall, 1),
        "metric": result["metric"],
        "best": result["best"],
        "targets_per_epoch": result["targets"],
        "epoch_s": round(epoch_s, 1),
        "targets_per_s": round(result["targets"] / epoch_s, 1),
        "peak_memory_mb": result["peak_memory_mb"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--catalogue", type=Path, default=BEAUTY)
    parser.add_argument("--interactions", type=Path, default=None)
    parser.add_argument("--work", type=Path, default=ROOT / "artifacts" / "ddp")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    store = f"embedded:{args.work / 'graph'}"
    if not (args.work / "graph").exists():
        build = kgrec("build", "--catalogue", str(args.catalogue), "--external", "drop")
        if args.interactions:
            build += ["--interactions", str(args.interactions)]
        rejects = ["--rejects", str(args.work / "rejects.jsonl")]
        subprocess.run([*build, "--store", store, *rejects], check=True)
    runs = {n: train(store, n, args.epochs, args.work / f"model-{n}") for n in (1, 2)}
    one, two = runs[1], runs[2]
    report = {
        "what": "kgrec train --nproc 2 vs 1 (related, also_bought), same seed, same graph",
        "catalogue": str(args.catalogue),
        "cpus": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "load_average_at_end": os.getloadavg(),
        "runs": {str(n): run for n, run in runs.items()},
        "throughput_ratio_2_vs_1": round(two["targets_per_s"] / one["targets_per_s"], 3),
        "metric_difference": round(abs(two["best"] - one["best"]), 4),
        "metric_tolerance": TOLERANCE,
        "metrics_within_tolerance": abs(two["best"] - one["best"]) <= TOLERANCE,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
