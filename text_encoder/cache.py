"""On-disk vector cache: re-running a pipeline encodes only new or changed texts.

One file per encoder fingerprint (model id + revision/content hash + pooling settings), holding
text-hash → vector rows. Layout: MAGIC, 4-byte header length, JSON header (fingerprint, dim,
count, sha256 of the payload), then the payload: `count` 16-byte keys and a float32
[count, dim] matrix. Files are replaced atomically; anything that does not check out
(truncation, bit rot, another model's file, old format) is reported and rebuilt, never used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kgrec.errors import KgrecError
from text_encoder.encoder import TextEncoder
from text_encoder.template import ensure_text

log = logging.getLogger(__name__)

MAGIC = b"KGREC-TEXTVEC\n"
FORMAT_VERSION = 1
KEY_BYTES = 16


class CacheInvalidError(KgrecError, ValueError):
    """A cache file is corrupt or belongs to another model/format."""


def text_key(text: str) -> bytes:
    """Content hash of one text (the cache's row key)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=KEY_BYTES).digest()


class EmbeddingCache:
    """Text-hash → vector rows for one encoder fingerprint, stored in one file."""

    def __init__(self, cache_dir: str | Path, fingerprint: str, dim: int) -> None:
        self.path = Path(cache_dir) / f"{fingerprint}.textvec"
        self.fingerprint = fingerprint
        self.dim = dim
        self.keys: list[bytes] = []
        self.vectors = torch.empty(0, dim)
        self.rebuilt_reason: str | None = None  # why an existing file was discarded
        self._index: dict[bytes, int] = {}

    @classmethod
    def open(cls, cache_dir: str | Path, fingerprint: str, dim: int) -> EmbeddingCache:
        """Load the cache if it checks out; otherwise start empty and say why."""
        cache = cls(cache_dir, fingerprint, dim)
        if cache.path.exists():
            try:
                cache.keys, cache.vectors = cache._read()
            except CacheInvalidError as exc:
                cache.rebuilt_reason = str(exc)
                log.warning("text vector cache %s is invalid (%s); rebuilding it", cache.path, exc)
        cache._index = {key: row for row, key in enumerate(cache.keys)}
        return cache

    def __len__(self) -> int:
        return len(self.keys)

    def lookup(self, keys: Sequence[bytes]) -> list[int | None]:
        """Row of each key, or None when it is not cached."""
        return [self._index.get(key) for key in keys]

    def add(self, keys: Sequence[bytes], vectors: torch.Tensor) -> None:
        fresh = []
        for i, key in enumerate(keys):
            if key not in self._index:  # checked per key, so repeats within `keys` add one row
                self._index[key] = len(self.keys)
                self.keys.append(key)
                fresh.append(i)
        self.vectors = torch.cat([self.vectors, vectors[fresh].float().cpu()])

    def save(self) -> None:
        """Write atomically (temp file + rename) so readers never see a half-written cache."""
        payload = b"".join(self.keys) + self.vectors.numpy().astype("<f4").tobytes()
        header = json.dumps(
            {
                "version": FORMAT_VERSION,
                "fingerprint": self.fingerprint,
                "dim": self.dim,
                "count": len(self.keys),
                "key_bytes": KEY_BYTES,
                "sha256": hashlib.sha256(payload).hexdigest(),
            }
        ).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(MAGIC + struct.pack("<I", len(header)) + header + payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _read(self) -> tuple[list[bytes], torch.Tensor]:
        blob = self.path.read_bytes()
        if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 4:
            raise CacheInvalidError("not a kgrec text vector cache")
        (header_len,) = struct.unpack_from("<I", blob, len(MAGIC))
        start = len(MAGIC) + 4 + header_len
        try:
            header = json.loads(blob[len(MAGIC) + 4 : start])
            count, dim = int(header["count"]), int(header["dim"])
            expected = {
                "version": FORMAT_VERSION,
                "fingerprint": self.fingerprint,
                "dim": self.dim,
                "key_bytes": KEY_BYTES,
            }
            mismatched = [k for k, v in expected.items() if header[k] != v]
            checksum = header["sha256"]
        except (ValueError, KeyError, TypeError) as exc:
            raise CacheInvalidError(f"unreadable header ({exc})") from exc
        if mismatched:
            raise CacheInvalidError(f"header does not match this encoder: {mismatched}")
        payload = blob[start:]
        if len(payload) != count * (KEY_BYTES + 4 * dim):
            raise CacheInvalidError("file is truncated or has trailing bytes")
        if hashlib.sha256(payload).hexdigest() != checksum:
            raise CacheInvalidError("checksum mismatch")
        keys = [payload[i : i + KEY_BYTES] for i in range(0, count * KEY_BYTES, KEY_BYTES)]
        matrix = np.frombuffer(payload, dtype="<f4", offset=count * KEY_BYTES)
        return keys, torch.from_numpy(matrix.reshape(count, dim).copy())


@dataclass(frozen=True)
class CacheStats:
    """What one `encode_with_cache` call did."""

    total: int  # texts asked for
    from_cache: int  # of those, served from the cache
    encoded: int  # distinct texts run through the model
    seconds: float
    rebuilt_reason: str | None = None  # set when an invalid cache file was discarded

    @property
    def items_per_s(self) -> float:
        return self.total / self.seconds if self.seconds > 0 else float("inf")


def encode_with_cache(
    encoder: TextEncoder,
    texts: Sequence[str],
    cache_dir: str | Path,
    batch_size: int | None = None,
    progress: bool = True,
) -> tuple[torch.Tensor, CacheStats]:
    """`encoder.encode(texts)` that reuses vectors cached for the same encoder fingerprint."""
    start = time.perf_counter()
    texts = [ensure_text(t, f"text #{i}") for i, t in enumerate(texts)]
    keys = [text_key(t) for t in texts]
    cache = EmbeddingCache.open(cache_dir, encoder.fingerprint, encoder.dim)
    rows = cache.lookup(keys)
    # Distinct missing texts, so duplicates in one call are encoded once.
    missing = {keys[i]: texts[i] for i, row in enumerate(rows) if row is None}
    if missing:
        cache.add(list(missing), encoder.encode(list(missing.values()), batch_size, progress))
        cache.save()
        rows = cache.lookup(keys)
    vectors = cache.vectors[rows] if texts else torch.empty(0, encoder.dim)
    stats = CacheStats(
        total=len(texts),
        from_cache=len(texts) - sum(k in missing for k in keys),
        encoded=len(missing),
        seconds=time.perf_counter() - start,
        rebuilt_reason=cache.rebuilt_reason,
    )
    return vectors, stats
