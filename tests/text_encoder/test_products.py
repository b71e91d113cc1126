"""Catalogue-level encoding, the vectors file and the `kgrec encode` command (which fills the
cache training reads)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import typer
from typer.testing import CliRunner

from fusion.cli.encode_cmd import encode
from fusion.data.graph import encode_graph_text, text_template
from text_encoder import (
    ProductVectors,
    TextEncoder,
    UnreadableTextError,
    encode_products,
    render_product_text,
)

IDS = ["p1", "p2", "p3"]
FIELDS = [
    {"title": "Rose Lip Balm", "description": "Soft.", "brand": "Acme", "categories": ["Lips"]},
    {"title": None, "description": "", "brand": "Acme", "categories": [["Beauty", "Nails"]]},
    {"title": "", "description": None, "brand": None, "categories": []},
]


def test_encode_products_counts_empty_text_and_uses_the_cache(tmp_path, fake_encoder):
    vectors, summary = encode_products(fake_encoder, IDS, FIELDS, tmp_path, progress=False)
    assert vectors.node_id == IDS and vectors.vectors.shape == (3, 8)
    assert summary.empty_text == 2 and summary.cache.encoded == 3
    # Products without text still get the vector of their brand/category text.
    assert torch.equal(vectors.vectors[1], fake_encoder.encode([render_product_text(FIELDS[1])])[0])
    _, summary = encode_products(fake_encoder, IDS, FIELDS, tmp_path, progress=False)
    assert summary.cache.from_cache == 3
    assert "3 products: 0 encoded, 3 from cache, 2 with empty text" in str(summary)


def test_unreadable_product_text_names_the_product(tmp_path, fake_encoder):
    with pytest.raises(UnreadableTextError, match="'p2'.*title"):
        encode_products(fake_encoder, IDS[:2], [FIELDS[0], {"title": b"\xff"}], tmp_path)


def test_vectors_file_round_trip(tmp_path):
    saved = ProductVectors(["a", "b"], torch.eye(2), "model", "fp")
    saved.save(tmp_path / "out" / "vectors.pt")
    loaded = ProductVectors.load(tmp_path / "out" / "vectors.pt")
    assert loaded.node_id == ["a", "b"] and torch.equal(loaded.vectors, torch.eye(2))
    assert (loaded.model_id, loaded.fingerprint) == ("model", "fp")


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(encode)
    return app


@pytest.fixture
def cli(monkeypatch, fake_encoder):
    """`kgrec encode` against a fake store/export (the kg layer is tested on its own)."""
    import kg.export
    import kg.stores

    class FakeStore:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

    opened = []
    monkeypatch.setattr(kg.stores, "open_store", lambda uri: opened.append(uri) or FakeStore())
    monkeypatch.setattr(
        kg.export,
        "to_heterodata",
        lambda store: {"product": SimpleNamespace(node_id=IDS, text_fields=FIELDS)},
    )
    monkeypatch.setattr(
        TextEncoder, "from_pretrained", classmethod(lambda cls, name, device: fake_encoder)
    )
    return lambda *args: CliRunner().invoke(_app(), list(args)), opened


def test_cli_fills_the_cache_training_reads(tmp_path, cli, monkeypatch, fake_encoder):
    run, opened = cli
    monkeypatch.setenv("KGREC_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "vectors.pt"
    args = ["--store", "embedded:/x", "--out", str(out), "--no-progress"]
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert opened == ["embedded:/x"]
    assert "3 products: 3 encoded, 0 from cache, 2 with empty text" in result.output
    assert ProductVectors.load(out).node_id == IDS
    assert "0 encoded, 3 from cache" in run(*args).output
    # Training's encoding step (same template, same cache) finds every vector.
    data = {"product": SimpleNamespace(node_id=IDS, text_fields=FIELDS)}
    assert torch.equal(encode_graph_text(fake_encoder, data), ProductVectors.load(out).vectors)
    assert len(list((tmp_path / "cache").rglob("*"))) > 0


def test_cli_text_fields_make_the_text_training_uses(tmp_path, cli, monkeypatch, fake_encoder):
    run, _ = cli
    monkeypatch.setenv("KGREC_CACHE", str(tmp_path / "cache"))
    result = run("--text-fields", "brand, title", "--no-progress", "--out", tmp_path / "v.pt")
    assert result.exit_code == 0, result.output
    assert "text fields brand,title" in result.output
    template = text_template(("brand", "title"))
    expected = fake_encoder.encode([render_product_text(f, template) for f in FIELDS])
    assert torch.equal(ProductVectors.load(tmp_path / "v.pt").vectors, expected)
    data = {"product": SimpleNamespace(node_id=IDS, text_fields=FIELDS)}
    assert torch.equal(encode_graph_text(fake_encoder, data, template), expected)


def test_cli_bad_model_is_a_clear_error(tmp_path):
    # The model is loaded before the store is opened, so no store is needed here.
    result = CliRunner().invoke(_app(), ["--text-model", str(tmp_path / "nope"), "--no-progress"])
    assert result.exit_code == 1
    assert "does not exist" in result.output and "--text-model" in result.output
