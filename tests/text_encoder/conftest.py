"""Shared fixtures: the real default encoder (loaded once) and a fast fake for cache logic."""

from __future__ import annotations

import hashlib

import pytest
import torch
import torch.nn.functional as F

from text_encoder import TextEncoder


@pytest.fixture(scope="session")
def encoder() -> TextEncoder:
    return TextEncoder.from_pretrained(device="cpu")


class FakeEncoder:
    """Deterministic text → unit vector, counting what it is asked to encode."""

    model_id = "fake"
    dim = 8
    device = "cpu"

    def __init__(self, fingerprint: str = "fake-v1") -> None:
        self.fingerprint = fingerprint
        self.calls: list[list[str]] = []

    def encode(self, texts, batch_size=None, progress=True) -> torch.Tensor:
        self.calls.append(list(texts))
        raw = [list(hashlib.sha256(t.encode()).digest()[: self.dim]) for t in texts]
        return F.normalize(torch.tensor(raw, dtype=torch.float).reshape(-1, self.dim) + 1, dim=-1)

    @property
    def encoded(self) -> list[str]:
        return [t for call in self.calls for t in call]


@pytest.fixture
def make_fake_encoder():
    return FakeEncoder


@pytest.fixture
def fake_encoder() -> FakeEncoder:
    return FakeEncoder()
