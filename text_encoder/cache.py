"""On-disk vector cache: re-running a pipeline encodes only new or changed texts.

One safetensors file per encoder fingerprint (model id + revision/content hash + pooling
settings): `keys` (uint8 [count, 16], the blake2b hash of each rendered product text, so the
template and the text are both in the key) and `vectors` (float32 [count, dim]); its metadata
carries the format version, the model fingerprint, dim, the key hash and the sha256 of the
tensors. Files are replaced atomically; anything that does not check out (truncation, bit rot,
another model's file) is reported and rebuilt, never used. A cache in the format before
safetensors (`.textvec`) is read once and rewritten as safetensors on the next save.
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
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes

from text_encoder.encoder import Progress, TextEncoder
from text_encoder.errors import TextEncoderError
from text_encoder.template import ensure_text

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 1 = the `.textvec` layout before safetensors
KEY_BYTES = 16
KEY_HASH = "blake2b-128 of the UTF-8 rendered text"
LEGACY_MAGIC = b"KGREC-TEXTVEC\n"


class CacheInvalidError(TextEncoderError, ValueError):
    """A cache file is corrupt or belongs to another model/format."""


def text_key(text: str) -> bytes:
    """Content hash of one text (the cache's row key)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=KEY_BYTES).digest()


class EmbeddingCache:
    """Text-hash → vector rows for one encoder fingerprint, stored in one file."""

    def __init__(self, cache_dir: str | Path, fingerprint: str, dim: int) -> None:
        self.path = Path(cache_dir) / f"{fingerprint}.safetensors"
        self.legacy_path = self.path.with_suffix(".textvec")
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
        path, read = cache.path, cache._read
        if not path.exists() and cache.legacy_path.exists():
            path, read = cache.legacy_path, cache._read_legacy
        if path.exists():
            try:
                cache.keys, cache.vectors = read()
            except CacheInvalidError as exc:
                cache.rebuilt_reason = str(exc)
                log.warning("text vector cache %s is invalid (%s); rebuilding it", path, exc)
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
        keys = torch.from_numpy(np.frombuffer(b"".join(self.keys), dtype=np.uint8).copy())
        tensors = {"keys": keys.view(-1, KEY_BYTES), "vectors": self.vectors.contiguous()}
        metadata = {
            "format": "kgrec text vectors",
            "version": str(FORMAT_VERSION),
            "fingerprint": self.fingerprint,
            "dim": str(self.dim),
            "key_hash": KEY_HASH,
            "sha256": _checksum(tensors),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(safetensors_bytes(tensors, metadata))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.legacy_path.unlink(missing_ok=True)  # migrated

    def _read(self) -> tuple[list[bytes], torch.Tensor]:
        try:
            with safe_open(self.path, "pt") as f:
                header = f.metadata() or {}
                tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 - not a dict
        except (SafetensorError, OSError) as exc:
            raise CacheInvalidError(f"not a readable safetensors file ({exc})") from exc
        expected = {
            "version": str(FORMAT_VERSION),
            "fingerprint": self.fingerprint,
            "dim": str(self.dim),
            "key_hash": KEY_HASH,
        }
        mismatched = [k for k, v in expected.items() if header.get(k) != v]
        if mismatched:
            raise CacheInvalidError(f"metadata does not match this encoder: {mismatched}")
        keys, vectors = tensors.get("keys"), tensors.get("vectors")
        if keys is None or vectors is None or len(keys) != len(vectors):
            raise CacheInvalidError("keys and vectors do not match")
        if header.get("sha256") != _checksum(tensors):
            raise CacheInvalidError("checksum mismatch")
        blob = keys.numpy().tobytes()
        return [blob[i : i + KEY_BYTES] for i in range(0, len(blob), KEY_BYTES)], vectors

    def _read_legacy(self) -> tuple[list[bytes], torch.Tensor]:
        """A version-1 `.textvec` file: MAGIC, 4-byte header length, JSON header, then `count`
        16-byte keys and a float32 [count, dim] matrix."""
        blob = self.legacy_path.read_bytes()
        if not blob.startswith(LEGACY_MAGIC) or len(blob) < len(LEGACY_MAGIC) + 4:
            raise CacheInvalidError("not a kgrec text vector cache")
        (header_len,) = struct.unpack_from("<I", blob, len(LEGACY_MAGIC))
        start = len(LEGACY_MAGIC) + 4 + header_len
        try:
            header = json.loads(blob[len(LEGACY_MAGIC) + 4 : start])
            count = int(header["count"])
            ok = (header["version"], header["fingerprint"], header["dim"]) == (
                1,
                self.fingerprint,
                self.dim,
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise CacheInvalidError(f"unreadable header ({exc})") from exc
        payload = blob[start:]
        if not ok or len(payload) != count * (KEY_BYTES + 4 * self.dim):
            raise CacheInvalidError("old-format cache does not match this encoder")
        if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
            raise CacheInvalidError("checksum mismatch")
        keys = [payload[i : i + KEY_BYTES] for i in range(0, count * KEY_BYTES, KEY_BYTES)]
        matrix = np.frombuffer(payload, dtype="<f4", offset=count * KEY_BYTES)
        return keys, torch.from_numpy(matrix.reshape(count, self.dim).copy())


def _checksum(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 of the keys' and vectors' bytes (safetensors itself does not check the data)."""
    digest = hashlib.sha256()
    for name in ("keys", "vectors"):
        digest.update(tensors[name].contiguous().numpy().tobytes())
    return digest.hexdigest()


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
    progress: Progress = True,
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
