"""Saved product vectors (large catalogues): the first load saves them, later loads read them
instead of rebuilding the model while the store is unchanged, answer the same, and rebuild once
the store has changed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from fusion.serving import query_model
from fusion.serving.query_model import (
    VECTORS_FILE,
    FusedQueryModel,
    SavedVectorsQueryModel,
    load_query_model,
)
from kg.stores import EmbeddedStore


@pytest.fixture
def copied(recommend_checkpoint, tmp_path: Path) -> tuple[EmbeddedStore, Path]:
    graph_dir, model_dir = recommend_checkpoint
    shutil.copytree(graph_dir, tmp_path / "graph")
    shutil.copytree(model_dir, tmp_path / "model")
    with EmbeddedStore(tmp_path / "graph") as store:
        yield store, tmp_path / "model"


def test_small_catalogues_save_nothing(copied) -> None:
    store, checkpoint = copied
    assert isinstance(load_query_model(checkpoint, store), FusedQueryModel)
    assert not (checkpoint / VECTORS_FILE).exists()
    assert isinstance(load_query_model(checkpoint, store), FusedQueryModel)


def test_saved_vectors_answer_as_the_rebuilt_model_until_the_store_changes(
    copied, monkeypatch
) -> None:
    store, checkpoint = copied
    monkeypatch.setattr(query_model, "SAVED_VECTORS_MIN_PRODUCTS", 0)
    rebuilt = load_query_model(checkpoint, store)  # the first load rebuilds, and saves
    assert isinstance(rebuilt, FusedQueryModel)
    assert (checkpoint / VECTORS_FILE).is_file()

    saved = load_query_model(checkpoint, store)
    assert isinstance(saved, SavedVectorsQueryModel)
    assert saved.product_ids == rebuilt.product_ids and saved.user_ids == rebuilt.user_ids
    assert torch.equal(saved.product_vectors(), rebuilt.product_vectors())
    users = torch.tensor([0, 1])
    assert torch.allclose(saved.user_scores(users), rebuilt.user_scores(users))  # full model
    assert torch.allclose(
        saved.text_to_vectors(["lipstick"]), rebuilt.text_to_vectors(["lipstick"])
    )

    store.remove_user(saved.user_ids[0])  # any write: the saved vectors may be stale
    assert isinstance(load_query_model(checkpoint, store), FusedQueryModel)
