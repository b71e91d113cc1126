"""Approximate nearest neighbours for related items in large catalogues: an HNSW graph (faiss,
chosen by `benchmarks/bench_ann.py`) over the unit product vectors, built once, saved next to
the checkpoint and loaded from disk by every later server."""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np
import torch
from torch import Tensor

log = logging.getLogger(__name__)

INDEX_FILE, META_FILE, LOCK_FILE = "ann_hnsw.faiss", "ann_hnsw.json", "ann_hnsw.lock"
# Graph degree and build breadth (benchmarks/results/ann_choice.json).
M, EF_CONSTRUCTION = 16, 100
# Search breadth; a search for n candidates uses max(n, EF_SEARCH). `related` fetches ≥ 100.
EF_SEARCH = 256
# Rows compared when checking that a saved index holds these vectors.
_CHECK_ROWS = 256
_CHECK_TOLERANCE = 1e-4


class AnnIndex:
    """Cosine search over fixed unit vectors (row i = product i), approximate."""

    def __init__(self, index: faiss.IndexHNSWFlat, ids_digest: str) -> None:
        self.index, self.ids_digest = index, ids_digest

    @property
    def size(self) -> int:
        return self.index.ntotal

    @classmethod
    def build(cls, vectors: Tensor, ids: list[str]) -> AnnIndex:
        """An index of the unit row vectors `vectors` of products `ids` (on every core)."""
        start = time.perf_counter()
        index = faiss.IndexHNSWFlat(vectors.shape[1], M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = EF_CONSTRUCTION
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        try:
            index.add(np.ascontiguousarray(vectors.float().numpy()))
        finally:
            faiss.omp_set_num_threads(threads)
        log.info(
            "ANN index of %d products built in %.1f s", index.ntotal, time.perf_counter() - start
        )
        return cls(index, ids_digest(ids))

    def _search(self, queries: np.ndarray, count: int) -> Tensor:
        # Breadth per call (thread-safe, unlike the index-wide efSearch).
        params = faiss.SearchParametersHNSW(efSearch=max(EF_SEARCH, count))
        _, labels = self.index.search(np.ascontiguousarray(queries), count, params=params)
        return torch.from_numpy(labels.astype(np.int64))

    def search(self, query: Tensor, count: int) -> Tensor:
        """Rows of the (about) `count` products nearest the unit vector `query`, best first."""
        found = self._search(query.float().numpy()[None], min(count, self.size))[0]
        return found[found >= 0]

    def top_related(
        self, vectors: Tensor, k: int, chunk: int = 1024
    ) -> Iterator[tuple[int, Tensor, Tensor]]:
        """(start row, scores [B, k], indices [B, k]) per chunk of the indexed unit `vectors`, as
        `fusion.serving.recommender.top_related` gives exactly: each product's k nearest others
        among its ANN candidates, by exact cosine (for publishing RELATED_TO at scale)."""
        n = vectors.shape[0]
        k = min(k, n - 1)
        fetch = min(max(k + 1, EF_SEARCH // 2), n)
        for start in range(0, n, chunk):
            block = vectors[start : start + chunk]
            candidates = self._search(block.float().numpy(), fetch)
            scores = torch.einsum("bd,bcd->bc", block, vectors[candidates])
            rows = torch.arange(start, start + len(block)).unsqueeze(1)
            scores = scores.masked_fill(candidates == rows, float("-inf"))
            top, pos = torch.topk(scores, k, dim=1)
            yield start, top, candidates.gather(1, pos)

    def save(self, directory: str | Path) -> None:
        """Write the index and its identity into `directory` (files replaced atomically)."""
        directory = Path(directory)
        tmp = directory / f".{INDEX_FILE}.tmp"
        faiss.write_index(self.index, str(tmp))
        os.replace(tmp, directory / INDEX_FILE)
        meta = {
            "library": f"faiss-cpu {faiss.__version__}",
            "products": self.size,
            "dim": self.index.d,
            "ids_digest": self.ids_digest,
            "M": M,
            "ef_construction": EF_CONSTRUCTION,
        }
        (directory / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path, vectors: Tensor, ids: list[str]) -> AnnIndex | None:
        """The index saved in `directory` if it was built from these products and vectors;
        None when there is none or it is stale (the graph or the model changed since)."""
        directory = Path(directory)
        try:
            meta = json.loads((directory / META_FILE).read_text())
        except (OSError, ValueError):
            return None
        n, dim = vectors.shape
        if meta.get("ids_digest") != ids_digest(ids) or meta.get("dim") != dim:
            log.info("ANN index in %s is stale: other products or dimension", directory)
            return None
        start = time.perf_counter()
        try:
            index = faiss.read_index(str(directory / INDEX_FILE))
        except RuntimeError as exc:
            log.warning("ANN index in %s is unreadable (%s): rebuilding", directory, exc)
            return None
        rows = np.linspace(0, n - 1, min(n, _CHECK_ROWS)).astype(np.int64)
        if (
            index.ntotal != n
            or index.d != dim
            or not np.allclose(
                np.stack([index.reconstruct(int(r)) for r in rows]),
                vectors[rows].float().numpy(),
                atol=_CHECK_TOLERANCE,
            )
        ):
            log.info("ANN index in %s is stale: other vectors", directory)
            return None
        log.info("ANN index of %d products loaded in %.1f s", n, time.perf_counter() - start)
        return cls(index, meta["ids_digest"])


def ids_digest(ids: list[str]) -> str:
    """Identity of a product list, in order (an index row means the product at that row)."""
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def load_or_build(directory: str | Path, vectors: Tensor, ids: list[str]) -> AnnIndex:
    """The index saved in `directory` for these vectors, else a new one, saved there when the
    directory is writable (a read-only checkpoint keeps it in memory only). Server workers
    starting together take turns (a file lock), so one builds and the others load."""
    directory = Path(directory)
    try:
        lock = open(directory / LOCK_FILE, "a")  # noqa: SIM115 — held until the end
    except OSError:
        lock = None
    try:
        if lock is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        index = AnnIndex.load(directory, vectors, ids)
        if index is None:
            index = AnnIndex.build(vectors, ids)
            try:
                index.save(directory)
            except (OSError, RuntimeError) as exc:
                log.warning(
                    "ANN index not saved in %s (%s): the next start builds it", directory, exc
                )
        return index
    finally:
        if lock is not None:
            lock.close()  # releases the lock
