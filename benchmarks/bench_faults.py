"""Fault injection: random kill -9 during `kgrec build`, `kgrec update` and `kgrec train`, and two
writers at once; every row must be kept exactly once and every checkpoint stay usable.

Each store is compared with a reference built without faults from the same files (REES46 events,
split into a base and two deltas): products, edges and the multiset of interaction events. A
killed command is re-run, as a user would; lost = reference rows missing, duplicated = rows beyond
the reference. Writes benchmarks/results/faults.json.

    python benchmarks/bench_faults.py [--kills 24] [--store embedded|neo4j] [--seed 0]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from kg.stores import open_store

DATA = Path(os.environ.get("KGREC_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
EVENTS = DATA / "rees46-2019-oct-sample" / "events-2019-10-01.csv.gz"
RESULTS = Path(__file__).resolve().parent / "results" / "faults.json"
KGREC = [sys.executable, "-m", "fusion.cli"]


def split_events(workdir: Path) -> tuple[Path, Path, Path]:
    """The events file as a base (first 70% of rows) and two disjoint deltas, CSV with header."""
    with gzip.open(EVENTS, "rt", newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    cut1, cut2 = int(len(body) * 0.7), int(len(body) * 0.85)
    parts = []
    for name, chunk in (("base", body[:cut1]), ("d1", body[cut1:cut2]), ("d2", body[cut2:])):
        path = workdir / f"{name}.csv"
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows([header, *chunk])
        parts.append(path)
    return parts[0], parts[1], parts[2]


def run(args: list[str], workdir: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*KGREC, *args], cwd=workdir, capture_output=True, text=True, timeout=timeout, check=False
    )


def must(args: list[str], workdir: Path) -> float:
    """Run a kgrec command to completion; its wall time. A failure stops the benchmark."""
    start = time.perf_counter()
    done = run(args, workdir)
    if done.returncode != 0:
        raise SystemExit(f"kgrec {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return time.perf_counter() - start


def killed(args: list[str], workdir: Path, after: float) -> bool:
    """Start a kgrec command and kill -9 it after `after` seconds; True if it was still running."""
    proc = subprocess.Popen(
        [*KGREC, *args],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        proc.wait(timeout=after)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def digest(uri: str) -> dict[str, Counter]:
    """What a store holds, as multisets: product ids, edges per type, interaction events."""
    with open_store(uri) as store:
        snap = store.snapshot()
    out = {
        "products": Counter(p.id for p in snap.products),
        "interactions": Counter(tuple(i) for i in snap.interactions),
    }
    for rel, pairs in snap.edges.items():
        out[f"edges:{rel}"] = Counter(pairs)
    return out


def compare(got: dict[str, Counter], want: dict[str, Counter]) -> dict[str, int]:
    """Rows of the reference missing from `got` (lost) and rows beyond it (duplicated)."""
    lost = sum(sum((want[k] - got.get(k, Counter())).values()) for k in want)
    extra = sum(sum((got[k] - want.get(k, Counter())).values()) for k in got)
    return {"lost": lost, "duplicated": extra}


class Bench:
    def __init__(self, workdir: Path, store_kind: str, neo4j_uri: str | None, rng: random.Random):
        self.workdir, self.kind, self.neo4j_uri, self.rng = workdir, store_kind, neo4j_uri, rng
        self.base, self.d1, self.d2 = split_events(workdir)
        self.count = 0
        # What any kgrec command spends before its work (imports): kills land after it.
        self.startup = must(["--version"], workdir)

    def kill_time(self, seconds: float) -> float:
        """A random moment inside a command's work, which takes `seconds` in all."""
        return self.startup + self.rng.uniform(0.0, 1.0) * max(seconds - self.startup, 0.1)

    def fresh_store(self) -> str:
        """A new empty store of the benchmark's kind."""
        self.count += 1
        if self.kind == "embedded":
            return f"embedded:{self.workdir / f'store-{self.count}'}"
        uri = self.neo4j_uri or ""
        with open_store(uri or None) as store:
            store.clear()
        return uri

    def build_args(self, uri: str) -> list[str]:
        return [
            "build",
            "--catalogue",
            str(self.base),
            "--store",
            uri,
            "--rejects",
            "rejects.jsonl",
        ]

    def update_args(self, uri: str, delta: Path) -> list[str]:
        return ["update", "--catalogue", str(delta), "--store", uri, "--rejects", "rejects.jsonl"]

    def reference(self) -> tuple[dict[str, Counter], float, float]:
        uri = self.fresh_store()
        build_s = must(self.build_args(uri), self.workdir)
        update_s = must(self.update_args(uri, self.d1), self.workdir)
        must(self.update_args(uri, self.d2), self.workdir)
        return digest(uri), build_s, update_s

    def kill_trial(self, step: str, seconds: float, want: dict[str, Counter]) -> dict:
        """Kill one build or update at a random moment, re-run it, finish the chain, compare."""
        uri = self.fresh_store()
        after = self.kill_time(seconds)
        if step == "build":
            was_running = killed(self.build_args(uri), self.workdir, after)
            must(self.build_args(uri), self.workdir)
            must(self.update_args(uri, self.d1), self.workdir)
        else:
            must(self.build_args(uri), self.workdir)
            was_running = killed(self.update_args(uri, self.d1), self.workdir, after)
            must(self.update_args(uri, self.d1), self.workdir)
        must(self.update_args(uri, self.d2), self.workdir)
        return {"step": step, "kill_after_s": round(after, 2), "killed": was_running} | compare(
            digest(uri), want
        )

    def concurrent_trial(self, want: dict[str, Counter]) -> dict:
        """Two updates with different deltas at once on one store; a refused one is re-run."""
        uri = self.fresh_store()
        must(self.build_args(uri), self.workdir)
        procs = [
            subprocess.Popen(
                [*KGREC, *self.update_args(uri, delta)],
                cwd=self.workdir,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for delta in (self.d1, self.d2)
        ]
        outcomes = [p.communicate(timeout=900) for p in procs]
        refused = []
        for proc, delta, (_, err) in zip(procs, (self.d1, self.d2), outcomes, strict=True):
            if proc.returncode != 0:
                refused.append(err.strip().splitlines()[-1] if err.strip() else "(no message)")
                must(self.update_args(uri, delta), self.workdir)
        return {"step": "two writers", "refused": refused} | compare(digest(uri), want)

    def train_trials(self, kills: int) -> dict:
        """Kill `kgrec train` at random moments over an existing checkpoint; after each kill the
        checkpoint at --out must load, and a final run must save normally."""
        uri = self.fresh_store()
        must(self.build_args(uri), self.workdir)
        out = self.workdir / "model"
        args = ["train", "--task", "recommend", "--epochs", "3", "--store", uri, "--out", str(out)]
        seconds = must(args, self.workdir)
        unusable, trials = 0, []
        for _ in range(kills):
            after = self.kill_time(seconds)
            was_running = killed(args, self.workdir, after)
            ok = checkpoint_loads(out, uri)
            unusable += not ok
            trials.append({"kill_after_s": round(after, 2), "killed": was_running, "loads": ok})
        must(args, self.workdir)
        final_ok = checkpoint_loads(out, uri)
        return {
            "train_seconds": round(seconds, 1),
            "trials": trials,
            "unusable_checkpoints": unusable + (not final_ok),
            "final_save_ok": final_ok,
        }


def checkpoint_loads(path: Path, uri: str) -> bool:
    """The checkpoint at `path` answers a recommendation query (a real load, not a file check)."""
    code = (
        "import sys; from fusion.serving.recommender import Recommender\n"
        "with Recommender.load(sys.argv[1], sys.argv[2]) as rec:\n"
        "    rec.recommend(rec.model.user_ids[0], k=5)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path), uri], capture_output=True, text=True, check=False
    )
    return done.returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=24, help="kill -9 trials in all (≥ 20)")
    parser.add_argument("--store", choices=("embedded", "neo4j"), default="embedded")
    parser.add_argument("--neo4j-uri", default=None, help="default: the local server")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="kgrec-faults-"))
    try:
        bench = Bench(workdir, args.store, args.neo4j_uri, rng)
        want, build_s, update_s = bench.reference()
        per_step = args.kills // 3
        trials = [bench.kill_trial("build", build_s, want) for _ in range(per_step)]
        trials += [bench.kill_trial("update", update_s, want) for _ in range(per_step)]
        writers = [bench.concurrent_trial(want) for _ in range(3)]
        train = bench.train_trials(args.kills - 2 * per_step)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    kills = sum(t["killed"] for t in trials) + sum(t["killed"] for t in train["trials"])
    result = {
        "store": args.store,
        "events_file": str(EVENTS),
        "command_startup_s": round(bench.startup, 2),
        "reference_seconds": {"build": round(build_s, 2), "update": round(update_s, 2)},
        "reference_rows": {k: sum(v.values()) for k, v in want.items()},
        "kill_trials": trials,
        "concurrent_writers": writers,
        "train": train,
        "kills_landed": kills,
        "lost_rows": sum(t["lost"] for t in trials + writers),
        "duplicated_rows": sum(t["duplicated"] for t in trials + writers),
        "unusable_checkpoints": train["unusable_checkpoints"],
    }
    result["ok"] = (
        result["lost_rows"] == 0
        and result["duplicated_rows"] == 0
        and result["unusable_checkpoints"] == 0
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, list | dict)}, indent=2))


if __name__ == "__main__":
    main()
