"""Cache hits, misses, invalidation and corruption handling; the safetensors file and its
metadata; an old-format cache is migrated."""

from __future__ import annotations

import hashlib
import json
import struct

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from text_encoder import EmbeddingCache, encode_with_cache
from text_encoder.cache import KEY_BYTES, LEGACY_MAGIC, text_key


def _cache_file(tmp_path, enc):
    return tmp_path / f"{enc.fingerprint}.safetensors"


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
    assert {p.name for p in tmp_path.iterdir()} == {"fake-v1.safetensors", "fake-v2.safetensors"}


def _flip_last_byte(path):
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0xFF
    path.write_bytes(bytes(blob))


def _rewrite_metadata(path, **changes):
    with safe_open(path, "pt") as f:
        metadata = f.metadata()
    save_file(load_file(path), path, metadata | changes)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_flip_last_byte, "checksum"),
        (lambda p: p.write_bytes(p.read_bytes()[:-7]), "not a readable safetensors"),
        (lambda p: p.write_bytes(b"garbage"), "not a readable safetensors"),
        (lambda p: _rewrite_metadata(p, fingerprint="someone-else"), "fingerprint"),
        (lambda p: _rewrite_metadata(p, dim="4"), "dim"),
        (lambda p: _rewrite_metadata(p, version="1"), "version"),
        (lambda p: save_file({"vectors": load_file(p)["vectors"]}, p, {}), "metadata"),
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
    assert [p.name for p in tmp_path.iterdir()] == ["fp.safetensors"]
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


def test_the_file_is_safetensors_with_its_fingerprints(tmp_path, fake_encoder):
    vectors, _ = encode_with_cache(fake_encoder, ["a", "b"], tmp_path, progress=False)
    path = _cache_file(tmp_path, fake_encoder)
    with safe_open(path, "pt") as f:
        metadata = f.metadata()
    assert metadata["fingerprint"] == "fake-v1" and metadata["dim"] == "8"
    assert "blake2b" in metadata["key_hash"]
    tensors = load_file(path)
    assert torch.equal(tensors["vectors"], vectors)
    assert bytes(tensors["keys"][1].tolist()) == text_key("b")


def _legacy_cache(path, keys, vectors):
    """A cache file in the format before safetensors (version 1)."""
    payload = b"".join(keys) + vectors.numpy().astype("<f4").tobytes()
    header = {"version": 1, "fingerprint": "fake-v1", "dim": 8, "count": len(keys)}
    header |= {"key_bytes": KEY_BYTES, "sha256": hashlib.sha256(payload).hexdigest()}
    raw = json.dumps(header).encode()
    path.write_bytes(LEGACY_MAGIC + struct.pack("<I", len(raw)) + raw + payload)


def test_an_old_format_cache_is_used_and_migrated(tmp_path, make_fake_encoder):
    old = make_fake_encoder().encode(["a", "b"])
    _legacy_cache(tmp_path / "fake-v1.textvec", [text_key("a"), text_key("b")], old)
    encoder = make_fake_encoder()
    vectors, stats = encode_with_cache(encoder, ["b", "a", "c"], tmp_path, progress=False)
    assert (stats.from_cache, stats.encoded, stats.rebuilt_reason) == (2, 1, None)
    assert encoder.encoded == ["c"] and torch.equal(vectors[:2], old.flip(0))
    assert [p.name for p in tmp_path.iterdir()] == ["fake-v1.safetensors"]
    _, stats = encode_with_cache(encoder, ["a", "b", "c"], tmp_path, progress=False)
    assert stats.from_cache == 3


def test_a_damaged_old_format_cache_is_rebuilt(tmp_path, fake_encoder):
    (tmp_path / "fake-v1.textvec").write_bytes(LEGACY_MAGIC + b"\0\0")
    _, stats = encode_with_cache(fake_encoder, ["a"], tmp_path, progress=False)
    assert stats.encoded == 1 and "not a kgrec" in stats.rebuilt_reason
    assert [p.name for p in tmp_path.iterdir()] == ["fake-v1.safetensors"]
