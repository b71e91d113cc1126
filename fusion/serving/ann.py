"""Approximate nearest neighbours for related items in large catalogues: an HNSW graph (hnswlib,
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
from importlib.metadata import version
from pathlib import Path

import hnswlib
import numpy as np
import torch
from torch import Tensor

log = logging.getLogger(__name__)

INDEX_FILE, META_FILE, LOCK_FILE = "ann_hnsw.bin", "ann_hnsw.json", "ann_hnsw.lock"
# Graph degree and build breadth (benchmarks/results/ann_choice.json).
M, EF_CONSTRUCTION = 16, 100
# Search breadth; a search for n candidates uses max(n, EF_SEARCH). `related` fetches ≥ 100.
EF_SEARCH = 256
# Rows compared when checking that a saved index holds these vectors.
_CHECK_ROWS = 256
_CHECK_TOLERANCE = 1e-4


class AnnIndex:
    """Cosine search over fixed unit vectors (row i = product i), approximate."""

    def __init__(self, index: hnswlib.Index, ids_digest: str) -> None:
        self.index, self.ids_digest = index, ids_digest
        self.index.set_ef(EF_SEARCH)

    @property
    def size(self) -> int:
        return self.index.get_current_count()

    @classmethod
    def build(cls, vectors: Tensor, ids: list[str], threads: int = -1) -> AnnIndex:
        """An index of the unit row vectors `vectors` of products `ids`."""
        start = time.perf_counter()
        n, dim = vectors.shape
        index = hnswlib.Index(space="ip", dim=dim)
        index.init_index(
            max_elements=max(n, 1), M=M, ef_construction=EF_CONSTRUCTION, random_seed=0
        )
        index.add_items(vectors.float().numpy(), np.arange(n), num_threads=threads)
        log.info("ANN index of %d products built in %.1f s", n, time.perf_counter() - start)
        return cls(index, ids_digest(ids))

    def search(self, query: Tensor, count: int) -> Tensor:
        """Rows of the (about) `count` products nearest the unit vector `query`, best first."""
        count = min(count, self.size)
        # hnswlib searches with breadth max(ef, count): no per-call set_ef (not thread-safe).
        labels, _ = self.index.knn_query(query.float().numpy()[None], k=count, num_threads=1)
        return torch.from_numpy(labels[0].astype(np.int64))

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
            labels, _ = self.index.knn_query(block.float().numpy(), k=fetch)
            candidates = torch.from_numpy(labels.astype(np.int64))
            scores = torch.einsum("bd,bcd->bc", block, vectors[candidates])
            rows = torch.arange(start, start + len(block)).unsqueeze(1)
            scores = scores.masked_fill(candidates == rows, float("-inf"))
            top, pos = torch.topk(scores, k, dim=1)
            yield start, top, candidates.gather(1, pos)

    def save(self, directory: str | Path) -> None:
        """Write the index and its identity into `directory` (files replaced atomically)."""
        directory = Path(directory)
        tmp = directory / f".{INDEX_FILE}.tmp"
        self.index.save_index(str(tmp))
        os.replace(tmp, directory / INDEX_FILE)
        meta = {
            "library": f"hnswlib {version('hnswlib')}",
            "products": self.size,
            "dim": self.index.dim,
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
        index = hnswlib.Index(space="ip", dim=dim)
        try:
            index.load_index(str(directory / INDEX_FILE), max_elements=n)
        except RuntimeError as exc:
            log.warning("ANN index in %s is unreadable (%s): rebuilding", directory, exc)
            return None
        rows = np.linspace(0, n - 1, min(n, _CHECK_ROWS)).astype(np.int64)
        saved = np.asarray(index.get_items(rows), dtype=np.float32)
        if index.get_current_count() != n or not np.allclose(
            saved, vectors[rows].float().numpy(), atol=_CHECK_TOLERANCE
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
