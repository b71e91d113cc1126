"""The default encoder against the sentence-transformers reference, errors, fine-tuning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from text_encoder import (
    DEFAULT_MODEL_ID,
    ModelNotFoundError,
    TextEncoder,
    UnreadableTextError,
    resolve_device,
)
from text_encoder.model import default_model_dir, pool

TEXTS = [
    "WAWO 15 Color Professionl Makeup Eyeshadow Camouflage Facial Concealer Neutral Palette",
    "Xtreme Brite Brightening Gel 1oz.",
    "",
    "Crème brûlée lip balm — 日本製 🌸",
    "long " * 400,  # beyond the 256-token limit: both sides must truncate alike
    "Versace Bright Crystal Eau de Toilette Spray for Women, 3 Ounce",
]


def test_default_model_matches_sentence_transformers(encoder):
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(default_model_dir()), device="cpu").encode(
        TEXTS, convert_to_tensor=True, batch_size=2
    )
    ours = encoder.encode(TEXTS, batch_size=2, progress=False)
    assert ours.dtype == torch.float32 and ours.device.type == "cpu"
    assert ours.shape == (len(TEXTS), 384) == (len(TEXTS), encoder.dim)
    assert torch.allclose(ours.norm(dim=1), torch.ones(len(TEXTS)), atol=1e-6)
    assert F.cosine_similarity(ours, reference.cpu()).min() > 1 - 1e-5
    assert encoder.model_id == DEFAULT_MODEL_ID
    assert encoder.spec.pooling == "mean" and encoder.max_length == 256


def test_encode_keeps_input_order_whatever_the_batching(encoder):
    texts = [t for t in TEXTS if len(t) < 200]
    whole = encoder.encode(texts, batch_size=64, progress=False)
    one_by_one = torch.cat([encoder.encode([t], progress=False) for t in texts])
    assert torch.allclose(whole, one_by_one, atol=1e-5)
    assert encoder.encode([], progress=False).shape == (0, encoder.dim)


@pytest.mark.parametrize("bad", [None, 3, b"\xff", "lone \udc80 surrogate"])
def test_unreadable_text_is_a_clear_error(encoder, bad):
    with pytest.raises(UnreadableTextError, match="text #1"):
        encoder.encode(["fine", bad], progress=False)


def test_offline_loading_of_default_and_of_a_cached_hub_id(tmp_path):
    """A fresh process with HF_HUB_OFFLINE=1 and an empty HF cache: the default model loads
    from the package, and a Hub id resolves from a (fake) local Hub cache with its commit."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--kgrec-test--minilm"
    snapshot = repo / "snapshots" / commit
    for src in default_model_dir().rglob("*"):
        if src.is_file():
            (snapshot / src.relative_to(default_model_dir())).parent.mkdir(
                parents=True, exist_ok=True
            )
            (snapshot / src.relative_to(default_model_dir())).symlink_to(src)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    script = textwrap.dedent("""
        import json, torch
        from text_encoder import TextEncoder
        a = TextEncoder.from_pretrained(device="cpu")
        b = TextEncoder.from_pretrained("kgrec-test/minilm", device="cpu")
        va, vb = a.encode(["offline"], progress=False), b.encode(["offline"], progress=False)
        print(json.dumps({"a": a.model_id, "b": b.model_id, "rev": b.spec.revision,
                          "same": bool(torch.allclose(va, vb)),
                          "fp_differs": a.fingerprint != b.fingerprint}))
    """)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "home"),
        "HF_HUB_CACHE": str(tmp_path / "hub"),
    }
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {
        "a": DEFAULT_MODEL_ID,
        "b": "kgrec-test/minilm",
        "rev": commit,
        "same": True,
        "fp_differs": True,
    }


def test_unknown_model_id_says_how_to_supply_one(monkeypatch):
    import huggingface_hub

    # The env var is read at import; patch the flag so the test never waits on the network.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelNotFoundError, match="--text-model"):
        TextEncoder.from_pretrained("no-such-org/no-such-model-kgrec", device="cpu")


@pytest.mark.parametrize("path", ["/nonexistent/model", "./missing-model"])
def test_missing_model_directory_is_a_clear_error(path):
    with pytest.raises(ModelNotFoundError, match="does not exist.*--text-model"):
        TextEncoder.from_pretrained(path, device="cpu")


def test_directory_without_config_is_not_a_model(tmp_path):
    with pytest.raises(ModelNotFoundError, match="config.json"):
        TextEncoder.from_pretrained(tmp_path, device="cpu")


def _model_copy(tmp_path: Path, pooling: dict | None = None, modules: list | None = None) -> Path:
    """The bundled model via symlinks, with its sentence-transformers configs overridden."""
    root = tmp_path / "model"
    for src in default_model_dir().rglob("*"):
        dst = root / src.relative_to(default_model_dir())
        if src.is_file() and src.parent.name != "1_Pooling" and src.name != "modules.json":
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(src)
    (root / "1_Pooling").mkdir()
    (root / "1_Pooling" / "config.json").write_text(json.dumps(pooling or {"pooling_mode": "mean"}))
    (root / "modules.json").write_text(
        json.dumps(
            modules
            or [
                {
                    "idx": 0,
                    "name": "0",
                    "path": "",
                    "type": "sentence_transformers.models.Transformer",
                },
                {
                    "idx": 1,
                    "name": "1",
                    "path": "1_Pooling",
                    "type": "sentence_transformers.models.Pooling",
                },
            ]
        )
    )
    return root


def test_pooling_is_read_from_the_model_config(tmp_path, encoder):
    cls_encoder = TextEncoder.from_pretrained(
        _model_copy(tmp_path, {"pooling_mode": "cls"}), device="cpu"
    )
    assert cls_encoder.spec.pooling == "cls"
    assert cls_encoder.fingerprint != encoder.fingerprint
    batch = encoder.tokenize(["pooling check"])
    with torch.inference_mode():
        hidden = encoder.model(**batch).last_hidden_state
    expected = F.normalize(hidden[:, 0], dim=-1)
    assert torch.allclose(
        cls_encoder.encode(["pooling check"], progress=False), expected, atol=1e-6
    )


def test_unsupported_sentence_transformers_module_is_refused(tmp_path):
    modules = [
        {"idx": 0, "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
    ]
    with pytest.raises(ModelNotFoundError, match="Dense"):
        TextEncoder.from_pretrained(_model_copy(tmp_path, modules=modules), device="cpu")


def test_pool_modes_ignore_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert pool(hidden, mask, "mean").tolist() == [[2.0, 3.0]]
    assert pool(hidden, mask, "max").tolist() == [[3.0, 4.0]]
    assert pool(hidden, mask, "cls").tolist() == [[1.0, 2.0]]
    assert pool(hidden, mask, "lasttoken").tolist() == [[3.0, 4.0]]
    assert torch.allclose(
        pool(hidden, mask, "mean_sqrt_len_tokens"), torch.tensor([[4.0, 6.0]]) / 2**0.5
    )


def test_weights_frozen_by_default_and_top_layers_trainable_on_request(encoder):
    assert not any(p.requires_grad for p in encoder.parameters())
    params = encoder.trainable_top_layers(2)
    try:
        trainable = {n for n, p in encoder.named_parameters() if p.requires_grad}
        assert trainable and all(".layer.4." in n or ".layer.5." in n for n in trainable)
        assert {id(p) for p in params} == {id(p) for p in encoder.parameters() if p.requires_grad}
        encoder.train()
        encoder(["a trainable sentence", "another one"]).sum().backward()
        assert all(p.grad is not None for p in params)
        encoder.encode(["still works"], progress=False)
        assert encoder.training  # encode restores the caller's mode
        with pytest.raises(ValueError, match="6 layers"):
            encoder.trainable_top_layers(7)
    finally:
        assert encoder.trainable_top_layers(0) == []
        encoder.zero_grad(set_to_none=True)
        encoder.eval()


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu-please")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_encoder_loads_in_eval_mode(encoder):
    assert not encoder.training and not encoder.model.training
    with torch.inference_mode():
        assert torch.equal(encoder(["same twice"]), encoder(["same twice"]))
