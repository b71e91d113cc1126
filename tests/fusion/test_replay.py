"""Window + replay selection: what counts as new since a checkpoint, and the replay sample."""

from __future__ import annotations

import torch

from fusion.replay import is_new, occurrence, trained_pairs, window_and_replay
from fusion.splits import recommend_split


def test_trained_pairs_are_the_training_pairs_by_id(tiny):
    split = recommend_split(tiny)
    # u0 saw p1, p3 (train), then p2 (valid), p0 (test); u1: p4 (train), p2, p5; u2 only trains.
    assert {u: sorted(ps) for u, ps in trained_pairs(split).items()} == {
        "u0": ["p1", "p3"],
        "u1": ["p4"],
        "u2": ["p0", "p1"],
    }
    assert not is_new(*split.train_edges, trained_pairs(split), split).any()


def test_new_is_by_id_and_counts_repeats(tiny):
    split = recommend_split(tiny)
    users, products = torch.tensor([0, 0, 0, 1, 2]), torch.tensor([1, 1, 3, 4, 0])
    trained = {"u0": ["p1", "p3"], "u1": ["p4"], "gone": ["p0"], "u2": ["removed"]}
    # The second p1 of u0 is a repeat beyond the one trained; u2's record names nothing known.
    assert is_new(users, products, trained, split).tolist() == [False, True, False, False, True]
    assert is_new(users, products, {}, split).all()


def test_occurrence_ranks_equal_keys_in_order():
    assert occurrence(torch.tensor([5, 3, 5, 5, 3, 7])).tolist() == [0, 0, 1, 2, 1, 0]


def test_window_and_replay_keeps_every_new_row_and_a_seeded_sample():
    new = torch.zeros(100, dtype=torch.bool)
    new[[3, 50, 97]] = True
    rows, window = window_and_replay(new, 2.0, seed=0)
    assert window == 3 and len(rows) == 9 and torch.equal(rows, rows.sort().values)
    assert set(new.nonzero().view(-1).tolist()) <= set(rows.tolist())
    assert torch.equal(rows, window_and_replay(new, 2.0, seed=0)[0])
    assert not torch.equal(rows, window_and_replay(new, 2.0, seed=1)[0])
    assert window_and_replay(new, 0.0, seed=0)[0].tolist() == [3, 50, 97]
    assert len(window_and_replay(new, 1000.0, seed=0)[0]) == 100  # at most every old row
