"""Which approximate-nearest-neighbour library serves related items at scale: faiss-cpu,
hnswlib and usearch (all HNSW over inner product of unit vectors), by build time, index size,
recall@10 against exact search and in-process p50/p99 query latency at the smallest search
breadth (ef) that reaches the recall target. Writes `benchmarks/results/ann_choice.json`.

    nice -n 10 python benchmarks/bench_ann.py --sizes 200000 1000000 [--dim 448]

Vectors: a product catalogue's embeddings are clustered (categories, brands, near-duplicate
titles), and HNSW recall depends on that, so the vectors are a three-level Gaussian mixture
(64 top-level directions, n/200 sub-clusters, n/20 product groups) in `--dim` dimensions, unit
length — not real embeddings; 448 = the related model's [text 384 ⊕ fused 64] vector.
Queries are products of the index (the product itself left out), as `related` asks.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "ann_choice.json"
K = 10
RECALL_TARGET = 0.98
EF_SEARCH = (16, 32, 48, 64, 96, 128, 192, 256, 384, 512)


def clustered_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """[n, dim] float32 unit vectors with catalogue-like cluster structure (see module doc)."""
    rng = np.random.default_rng(seed)

    def level(parents: np.ndarray, count: int, spread: float) -> np.ndarray:
        pick = rng.integers(0, len(parents), count)
        return parents[pick] + spread * rng.standard_normal((count, dim), dtype=np.float32)

    top = rng.standard_normal((64, dim), dtype=np.float32)
    sub = level(top, max(1, n // 200), 0.6)
    groups = level(sub, max(1, n // 20), 0.5)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):  # bounded temporaries at 1M × 448
        part = level(groups, min(100_000, n - start), 1.0)
        out[start : start + len(part)] = part / np.linalg.norm(part, axis=1, keepdims=True)
    return out


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """[Q, k] exact inner-product top-k of the query rows, each query itself left out."""
    v = torch.from_numpy(vectors)
    parts = []
    for start in range(0, len(queries), 100):  # 100 × 1M scores at a time
        rows = torch.from_numpy(queries[start : start + 100])
        scores = v[rows] @ v.T
        scores[torch.arange(len(rows)), rows] = -float("inf")
        parts.append(torch.topk(scores, k, dim=1).indices)
    return torch.cat(parts).numpy()


def recall(found: list[np.ndarray], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[:K]) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


def _without_self(labels: np.ndarray, query: int) -> np.ndarray:
    return labels[labels != query][:K]


class Faiss:
    name = "faiss-cpu IndexHNSWFlat"

    def __init__(self, dim: int, m: int, ef_construction: int) -> None:
        import faiss

        self.faiss = faiss
        self.index = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = ef_construction

    def add(self, vectors: np.ndarray) -> None:
        self.index.add(vectors)

    def set_ef(self, ef: int) -> None:
        self.index.hnsw.efSearch = ef

    def query(self, vector: np.ndarray, k: int) -> np.ndarray:
        return self.index.search(vector[None], k)[1][0]

    def save(self, path: str) -> None:
        self.faiss.write_index(self.index, path)

    def load(self, path: str) -> None:
        self.index = self.faiss.read_index(path)


class Hnswlib:
    name = "hnswlib"

    def __init__(self, dim: int, m: int, ef_construction: int) -> None:
        import hnswlib

        self.hnswlib, self.dim = hnswlib, dim
        self.index = hnswlib.Index(space="ip", dim=dim)
        self.m, self.ef_construction = m, ef_construction

    def add(self, vectors: np.ndarray) -> None:
        self.index.init_index(len(vectors), M=self.m, ef_construction=self.ef_construction)
        self.index.add_items(vectors, np.arange(len(vectors)))

    def set_ef(self, ef: int) -> None:
        self.index.set_ef(ef)

    def query(self, vector: np.ndarray, k: int) -> np.ndarray:
        return self.index.knn_query(vector, k)[0][0].astype(np.int64)

    def save(self, path: str) -> None:
        self.index.save_index(path)

    def load(self, path: str) -> None:
        self.index = self.hnswlib.Index(space="ip", dim=self.dim)
        self.index.load_index(path)


class Usearch:
    name = "usearch"

    def __init__(self, dim: int, m: int, ef_construction: int) -> None:
        from usearch.index import Index

        self.Index = Index
        self.index = Index(
            ndim=dim, metric="ip", dtype="f32", connectivity=m, expansion_add=ef_construction
        )

    def add(self, vectors: np.ndarray) -> None:
        self.index.add(np.arange(len(vectors)), vectors, threads=_threads())

    def set_ef(self, ef: int) -> None:
        self.index.expansion_search = ef

    def query(self, vector: np.ndarray, k: int) -> np.ndarray:
        return np.asarray(self.index.search(vector, k).keys, dtype=np.int64)

    def save(self, path: str) -> None:
        self.index.save(path)

    def load(self, path: str) -> None:
        self.index = self.Index.restore(path)


def _threads() -> int:
    return int(os.environ.get("ANN_BUILD_THREADS", "1"))


def measure(
    make: Callable,
    vectors: np.ndarray,
    queries: np.ndarray,
    truth: np.ndarray,
    m: int,
    ef_construction: int,
) -> dict:
    lib = make(vectors.shape[1], m, ef_construction)
    start = time.perf_counter()
    lib.add(vectors)
    build = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "index")
        lib.save(path)
        size = os.path.getsize(path)
        start = time.perf_counter()
        lib.load(path)
        load = time.perf_counter() - start
    row = {
        "library": lib.name,
        "M": m,
        "ef_construction": ef_construction,
        "build_s": round(build, 1),
        "load_s": round(load, 2),
        "index_mb": round(size / 2**20),
    }
    sweep = []
    for ef in EF_SEARCH:
        lib.set_ef(ef)
        found, times = [], []
        for q in queries:
            t = time.perf_counter()
            labels = lib.query(vectors[q], K + 1)
            times.append(time.perf_counter() - t)
            found.append(_without_self(labels, q))
        point = {
            "ef": ef,
            "recall@10": round(recall(found, truth), 4),
            "p50_ms": round(float(np.percentile(times, 50)) * 1e3, 3),
            "p99_ms": round(float(np.percentile(times, 99)) * 1e3, 3),
        }
        sweep.append(point)
        print(lib.name, len(vectors), f"build {build:.0f} s", point, flush=True)
        if point["recall@10"] >= RECALL_TARGET:
            break
    row["sweep"] = sweep
    row["at_target"] = next((p for p in sweep if p["recall@10"] >= RECALL_TARGET), None)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=448)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--m", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=100)
    parser.add_argument("--libraries", nargs="+", default=["faiss", "hnswlib", "usearch"])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", str(_threads()))
    makers = {"faiss": Faiss, "hnswlib": Hnswlib, "usearch": Usearch}
    results = []
    for n in args.sizes:
        vectors = clustered_vectors(n, args.dim)
        queries = np.random.default_rng(1).choice(n, args.queries, replace=False)
        start = time.perf_counter()
        truth = exact_top(vectors, queries, K)
        exact_ms = (time.perf_counter() - start) / len(queries) * 1e3
        for name in args.libraries:
            row = measure(makers[name], vectors, queries, truth, args.m, args.ef_construction)
            results.append(
                {
                    "products": n,
                    "dim": args.dim,
                    "exact_scan_ms_per_query": round(exact_ms, 2),
                    **row,
                }
            )
            _write(args.out, results)  # after each library: a long run keeps what it measured
    print(f"wrote {args.out}")


def _write(out: Path, results: list[dict]) -> None:
    report = {
        "what": "HNSW libraries over clustered unit vectors (see benchmarks/bench_ann.py); "
        "recall@10 vs exact inner product, query = one product of the index, itself left out; "
        "one query thread",
        "build_threads": _threads(),
        "recall_target": RECALL_TARGET,
        "load_average": os.getloadavg(),
        "results": results,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
