"""Cache hits, misses, invalidation and corruption handling."""

from __future__ import annotations

import json
import struct

import pytest
import torch

from text_encoder import EmbeddingCache, encode_with_cache
from text_encoder.cache import MAGIC


def _cache_file(tmp_path, enc):
    return tmp_path / f"{enc.fingerprint}.textvec"


def test_miss_then_hit_and_only_new_or_changed_texts_are_encoded(tmp_path, fake_encoder):
    first, stats = encode_with_cache(fake_encoder, ["a", "b", "c"], tmp_path, progress=False)
    assert (stats.total, stats.from_cache, stats.encoded) == (3, 0, 3)
    again, stats = encode_with_cache(fake_encoder, ["a", "b", "c"], tmp_path, progress=False)
    assert (stats.from_cache, stats.encoded) == (3, 0) and stats.rebuilt_reason is None
    assert torch.equal(first, again)
    assert fake_encoder.encoded == ["a", "b", "c"]

    # "b" changed to "b2", "d" is new: only those two reach the model; order follows input.
    mixed, stats = encode_with_cache(fake_encoder, ["d", "a", "b2", "c"], tmp_path, progress=False)
    assert fake_encoder.calls[-1] == ["d", "b2"]
    assert (stats.from_cache, stats.encoded) == (2, 2)
    assert torch.equal(mixed[1], first[0]) and torch.equal(mixed[3], first[2])
    assert torch.equal(mixed, fake_encoder.encode(["d", "a", "b2", "c"]))


def test_duplicates_are_encoded_once(tmp_path, fake_encoder):
    vectors, stats = encode_with_cache(fake_encoder, ["x", "y", "x"], tmp_path, progress=False)
    assert fake_encoder.encoded == ["x", "y"] and stats.encoded == 2
    assert torch.equal(vectors[0], vectors[2])


def test_another_model_gets_its_own_cache(tmp_path, fake_encoder, make_fake_encoder):
    encode_with_cache(fake_encoder, ["a"], tmp_path, progress=False)
    other = make_fake_encoder(fingerprint="fake-v2")
    _, stats = encode_with_cache(other, ["a"], tmp_path, progress=False)
    assert stats.encoded == 1 and other.encoded == ["a"]
    assert {p.name for p in tmp_path.iterdir()} == {"fake-v1.textvec", "fake-v2.textvec"}


def _flip_last_byte(path):
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0xFF
    path.write_bytes(bytes(blob))


def _rewrite_header(path, **changes):
    blob = path.read_bytes()
    (size,) = struct.unpack_from("<I", blob, len(MAGIC))
    start = len(MAGIC) + 4
    header = json.loads(blob[start : start + size]) | changes
    raw = json.dumps(header).encode()
    path.write_bytes(MAGIC + struct.pack("<I", len(raw)) + raw + blob[start + size :])


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_flip_last_byte, "checksum"),
        (lambda p: p.write_bytes(p.read_bytes()[:-7]), "truncated"),
        (lambda p: p.write_bytes(b"garbage"), "not a kgrec"),
        (lambda p: p.write_bytes(MAGIC + struct.pack("<I", 5) + b"{nope"), "unreadable header"),
        (lambda p: _rewrite_header(p, fingerprint="someone-else"), "fingerprint"),
        (lambda p: _rewrite_header(p, dim=4), "dim"),
        (lambda p: _rewrite_header(p, version=0), "version"),
    ],
)
def test_invalid_cache_is_detected_and_rebuilt_never_used(tmp_path, fake_encoder, damage, reason):
    good, _ = encode_with_cache(fake_encoder, ["a", "b"], tmp_path, progress=False)
    damage(_cache_file(tmp_path, fake_encoder))
    vectors, stats = encode_with_cache(fake_encoder, ["a", "b"], tmp_path, progress=False)
    assert reason in stats.rebuilt_reason
    assert (stats.from_cache, stats.encoded) == (0, 2)
    assert torch.equal(vectors, good)
    # The rebuilt file is valid again.
    _, stats = encode_with_cache(fake_encoder, ["a", "b"], tmp_path, progress=False)
    assert stats.rebuilt_reason is None and stats.from_cache == 2


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path, fake_encoder):
    cache = EmbeddingCache.open(tmp_path, "fp", 8)
    cache.add([b"k" * 16], fake_encoder.encode(["k"]))
    cache.save()
    assert [p.name for p in tmp_path.iterdir()] == ["fp.textvec"]
    assert len(EmbeddingCache.open(tmp_path, "fp", 8)) == 1


def test_empty_request(tmp_path, fake_encoder):
    vectors, stats = encode_with_cache(fake_encoder, [], tmp_path, progress=False)
    assert vectors.shape == (0, 8) and stats.total == 0 and not list(tmp_path.iterdir())


def test_real_encoder_cached_vectors_equal_fresh_ones(tmp_path, encoder):
    texts = ["Xtreme Brite Brightening Gel 1oz.", "Prada Candy Eau De Parfum Spray"]
    cold, _ = encode_with_cache(encoder, texts, tmp_path, progress=False)
    warm, stats = encode_with_cache(encoder, texts, tmp_path, progress=False)
    assert stats.from_cache == 2
    assert torch.equal(cold, warm)
    assert torch.allclose(warm, encoder.encode(texts, progress=False), atol=1e-6)
