"""Window + replay: what counts as new since a checkpoint, and each epoch's replay draw."""

from __future__ import annotations

import torch

from fusion.data.replay import ReplaySampler, is_new, occurrence, trained_pairs
from fusion.data.splits import recommend_split


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


def test_every_draw_keeps_every_new_row_and_redraws_the_replay():
    new = torch.zeros(100, dtype=torch.bool)
    new[[3, 50, 97]] = True
    rows = ReplaySampler(new, 2.0)
    assert (rows.window, len(rows)) == (3, 9)
    gen = torch.Generator().manual_seed(0)
    draws = [rows.draw(gen) for _ in range(20)]
    for draw in draws:
        assert len(draw) == 9 and len(set(draw.tolist())) == 9
        assert {3, 50, 97} <= set(draw.tolist())
    replayed = set().union(*(set(d.tolist()) for d in draws)) - {3, 50, 97}
    assert len(replayed) > 60  # 20 draws of 6 cover most of the 97 old rows, not one fixed 6
    again = torch.Generator().manual_seed(0)
    assert all(torch.equal(d, rows.draw(again)) for d in draws)  # seeded
    assert sorted(ReplaySampler(new, 0.0).draw(gen).tolist()) == [3, 50, 97]
    assert len(ReplaySampler(new, 1000.0)) == 100  # at most every old row


def test_a_cold_start_trains_every_row():
    rows = ReplaySampler(torch.ones(7, dtype=torch.bool), 0.0)
    assert rows.window == len(rows) == 7
    assert sorted(rows.draw(torch.Generator().manual_seed(0)).tolist()) == list(range(7))
