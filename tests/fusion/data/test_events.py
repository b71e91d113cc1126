"""The rank task's split on the real REES46 events: per user, the last events held out in time
order, targets per objective from the held-out kinds, no held-out event in training, and
prices for revenue; the Magazine-style case without times is a seeded shuffle."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch_geometric.data import HeteroData

from fusion.data.events import PURCHASE, event_split
from fusion.data.splits import INTERACTED, rev
from kg.build import build
from kg.export import to_heterodata
from kg.stores import open_store

REES46 = Path(os.environ["KGREC_DATA"]) / "rees46-2019-oct-sample" / "events-2019-10-01.csv.gz"


@pytest.fixture(scope="module")
def rees46(tmp_path_factory: pytest.TempPathFactory) -> HeteroData:
    work = tmp_path_factory.mktemp("rees46")
    uri = f"embedded:{work / 'g'}"
    build(REES46, store_uri=uri, rejects_path=work / "r.jsonl")
    with open_store(uri) as store:
        return to_heterodata(store)


def test_each_users_last_events_are_held_out_in_time_order(rees46):
    split = event_split(rees46, frac=0.2)
    store = rees46[INTERACTED]
    train = split.train_graph[INTERACTED]
    assert train.num_edges < store.num_edges
    users = torch.bincount(store.edge_index[0], minlength=rees46["user"].num_nodes)
    kept = torch.bincount(train.edge_index[0], minlength=rees46["user"].num_nodes)
    expected = torch.where(users >= 3, users - 2 * (0.2 * users).round().clamp(min=1), users)
    assert torch.equal(kept, expected)
    # Time order: a user's training events all precede their held-out ones.
    last_train = torch.full((rees46["user"].num_nodes,), -torch.inf).scatter_reduce(
        0, train.edge_index[0], train.ts, "amax"
    )
    for u, items in split.objective_targets["test"]["click"].items():
        user_events = store.edge_index[0] == u
        held_ts = store.ts[user_events & torch.isin(store.edge_index[1], items)]
        assert held_ts.max() >= last_train[u]
    # The reverse edges follow the forward ones.
    assert split.train_graph[rev(INTERACTED)].num_edges == train.num_edges


def test_targets_per_objective_come_from_the_held_out_kinds(rees46):
    split = event_split(rees46)
    targets = split.objective_targets["test"]
    assert targets["purchase"] and targets["cart"] and not targets["rating"]
    assert targets["revenue"].keys() == targets["purchase"].keys()
    store = rees46[INTERACTED]
    for user, items in targets["purchase"].items():
        bought = store.edge_index[1][(store.edge_index[0] == user) & (store.kind == PURCHASE)]
        assert set(items.tolist()) <= set(bought.tolist())
        assert set(items.tolist()) <= set(targets["click"][user].tolist())
    # Nothing is masked: a product viewed in training can be the purchase target.
    assert all(e.numel() == 0 for e in split.exclusions_by_stage["test"].values())
    # Every REES46 event has a price: none imputed.
    assert split.prices.known and not bool(split.prices.imputed.any())
    assert not bool(split.prices.value.isnan().any())


def test_events_without_time_are_held_out_by_a_seeded_shuffle(tiny):
    store = tiny[INTERACTED]
    store.ts = torch.full((store.num_edges,), float("nan"))
    store.price = torch.full((store.num_edges,), float("nan"))
    a, b, c = event_split(tiny, seed=0), event_split(tiny, seed=0), event_split(tiny, seed=3)
    assert a.objective_targets == b.objective_targets
    # u0 has 4 events: 1 test, 1 validation; u1 has 3; u2 only 2 (all training).
    assert set(a.targets("test")) == {0, 1} and 2 not in a.targets("valid")
    assert any(
        not torch.equal(a.targets("test")[u], c.targets("test")[u]) for u in (0, 1)
    ) or not torch.equal(a.events["item"], c.events["item"])
    assert not a.prices.known  # no price anywhere: revenue cannot be computed
