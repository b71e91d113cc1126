"""The global time split: cut by timestamp, later users cold, no interaction from the future."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import HeteroData

from fusion.data.splits import INTERACTED, rev, time_split


def _lists(by_query: dict[int, torch.Tensor]) -> dict[int, list[int]]:
    return {q: t.tolist() for q, t in by_query.items()}


def test_cut_by_hand(tiny: HeteroData) -> None:
    # tiny: u0 saw 1, 3, 2, 0 at ts 0..3; u1 saw 4, 2, 5 at ts 0..2; u2 saw 0, 1 at ts 0, 1.
    split = time_split(tiny, valid_from=1, test_from=2)
    assert split.train_edges.tolist() == [[0, 1, 2], [1, 4, 0]]
    assert _lists(split.valid) == {0: [3], 1: [2], 2: [1]}
    assert _lists(split.test) == {0: [0, 2], 1: [5]}
    assert _lists(split.history("test")) == {0: [1, 3], 1: [4, 2], 2: [0, 1]}
    assert _lists(split.exclusions("test")) == {0: [1, 3], 1: [2, 4]}
    assert _lists(split.exclusions("valid")) == {0: [1], 1: [4], 2: [0]}
    # Message passing sees only interactions before the validation cut, both directions.
    for edge_type in (INTERACTED, rev(INTERACTED)):
        assert bool((split.train_graph[edge_type].ts < 1).all())
        assert split.train_graph[edge_type].num_edges == 3
    assert tiny[INTERACTED].num_edges == 9  # the input graph is untouched


def test_later_users_are_cold_and_repeats_stay(tiny: HeteroData) -> None:
    data = tiny.clone()
    for edge_type in (INTERACTED, rev(INTERACTED)):
        store = data[edge_type]
        user = store.edge_index[0 if edge_type == INTERACTED else 1]
        store.ts = torch.where(user == 2, store.ts + 10, store.ts)  # u2 arrives at ts 10
    split = time_split(data, valid_from=2, test_from=5)
    assert 2 not in split.valid and 2 not in split.test  # no history before either window
    assert sorted(split.valid) == [0, 1] and sorted(split.test) == []
    with pytest.raises(ValueError, match="after the test cut"):
        time_split(data, valid_from=5, test_from=2)


def test_default_cuts_and_missing_timestamps(beauty: HeteroData) -> None:
    split = time_split(beauty)
    ts = beauty[INTERACTED].ts
    held = ts.numel() - split.train_edges.size(1)
    assert 0.15 * ts.numel() <= held <= 0.25 * ts.numel()
    for stage in ("valid", "test"):
        history = split.history(stage)
        assert all(q in history and history[q].numel() for q in split.targets(stage))
    data = beauty.clone()
    data[INTERACTED].ts[0] = float("nan")
    with pytest.raises(ValueError, match="1 lack one"):
        time_split(data)
