"""`TextEncoder`: texts → L2-normalised sentence vectors; fast inference, trainable on demand."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from text_encoder.device import resolve_device
from text_encoder.model import ModelSpec, load_model, pool, resolve_model
from text_encoder.progress import progress_bar
from text_encoder.template import ensure_text

# A progress bar (True), none (False), or a callable told (done, total) after each batch.
Progress = bool | Callable[[int, int], None]
CPU_BATCH_SIZE = 32
CUDA_BATCH_SIZE = 128  # GPUs are only busy with wide batches; length sorting keeps padding low


class TextEncoder(nn.Module):
    """A Hugging Face transformer with the pooling it was trained for and L2 normalisation.

    All weights are frozen on load; `trainable_top_layers(n)` opts the top n layers into
    fine-tuning, after which `forward(texts)` is differentiable. `encode` is the fast,
    no-grad path used to precompute vectors.
    """

    def __init__(self, spec: ModelSpec, tokenizer, model: nn.Module, max_length: int) -> None:
        super().__init__()
        self.spec = spec
        self.tokenizer = tokenizer
        self.model = model
        self.max_length = max_length
        self.model.requires_grad_(False)
        self.eval()  # nn.Module starts in training mode; dropout must be opt-in

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path | None = None,
        device: str = "auto",
        revision: str | None = None,
    ) -> TextEncoder:
        """Load a model (None = bundled all-MiniLM-L6-v2, works offline) onto `device`."""
        dev = resolve_device(device)
        spec = resolve_model(name_or_path, revision)
        tokenizer, model, max_length = load_model(spec)
        return cls(spec, tokenizer, model.to(dev), max_length)

    @property
    def model_id(self) -> str:
        return self.spec.model_id

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def precision(self) -> str:
        """Compute dtype `encode` uses: autocast on CUDA, exact fp32 elsewhere."""
        if self.device.type != "cuda":
            return "float32"
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"

    @property
    def fingerprint(self) -> str:
        """Identifies everything that decides a vector except the text itself (cache key)."""
        facts = {
            "model": self.model_id,
            "revision": self.spec.revision,
            "pooling": self.spec.pooling,
            "max_length": self.max_length,
            "lower": self.spec.do_lower_case,
            "precision": self.precision,
            "l2": True,
        }
        return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:24]

    def tokenize(self, texts: Sequence[str], padding: bool = True) -> dict[str, torch.Tensor]:
        """Tokenise, truncated to the model's limit, as tensors on the model's device."""
        if self.spec.do_lower_case:
            texts = [t.lower() for t in texts]
        batch = self.tokenizer(
            list(texts),
            padding=padding,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return {k: v.to(self.device) for k, v in batch.items()}

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        """Differentiable [B, dim] normalised vectors on the model's device (for fine-tuning)."""
        batch = self.tokenize(texts)
        hidden = self.model(**batch).last_hidden_state
        pooled = pool(hidden, batch["attention_mask"], self.spec.pooling)
        return F.normalize(pooled.float(), p=2, dim=-1)

    def encode(
        self, texts: Sequence[str], batch_size: int | None = None, progress: Progress = True
    ) -> torch.Tensor:
        """[N, dim] float32 CPU tensor of L2-normalised vectors, in input order."""
        texts = [ensure_text(t, f"text #{i}") for i, t in enumerate(texts)]
        out = torch.empty(len(texts), self.dim)
        if not texts:
            return out
        if batch_size is None:
            batch_size = CUDA_BATCH_SIZE if self.device.type == "cuda" else CPU_BATCH_SIZE
        # Longest first so batches hold similar lengths (little padding) and memory peaks early.
        lengths = [
            len(ids)
            for ids in self.tokenizer(texts, truncation=True, max_length=self.max_length)[
                "input_ids"
            ]
        ]
        order = sorted(range(len(texts)), key=lengths.__getitem__, reverse=True)
        was_training = self.training
        self.eval()
        report = progress if callable(progress) else None
        bar = progress_bar(progress is True)
        try:
            with bar, torch.inference_mode(), self._autocast():
                task = bar.add_task("encoding", total=len(texts))
                for start in range(0, len(order), batch_size):
                    rows = order[start : start + batch_size]
                    out[rows] = self([texts[i] for i in rows]).cpu()
                    bar.advance(task, len(rows))
                    if report:
                        report(start + len(rows), len(texts))
        finally:
            self.train(was_training)
        return out

    def trainable_top_layers(self, n: int) -> list[nn.Parameter]:
        """Unfreeze only the top `n` transformer layers (0 = freeze all); returns their params."""
        layers = self._layer_stack()
        if not 0 <= n <= len(layers):
            raise ValueError(f"{self.model_id!r} has {len(layers)} layers; cannot train top {n}")
        self.model.requires_grad_(False)
        params = [p for layer in layers[len(layers) - n :] for p in layer.parameters()]
        for p in params:
            p.requires_grad_(True)
        return params

    def _layer_stack(self) -> nn.ModuleList:
        """The transformer's block list (BERT `encoder.layer`, GPT `h`, Llama `layers`, …)."""
        n_layers = getattr(self.model.config, "num_hidden_layers", None)
        for module in self.model.modules():
            if isinstance(module, nn.ModuleList) and len(module) == n_layers:
                return module
        raise ValueError(f"cannot find the transformer layers of {self.model_id!r}")

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "float32":
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=getattr(torch, self.precision))
