"""Side information: crawled relations kept or dropped, links derived from training interactions
only (a held-out interaction never creates a derived edge), and the time split via make_split."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import HeteroData

from fusion.config import DERIVABLE, TrainOptions
from fusion.data.graph import make_split
from fusion.data.sideinfo import DERIVED_KINDS, derived_links, with_side_information
from fusion.data.splits import INTERACTED, PAIR_SHIFT, PRODUCT_RELS, rev
from kg.errors import InvalidArgumentError, MissingDataError
from kg.export import INTERACTION_KINDS

CO_PURCHASE = ("product", "co_purchase", "product")


def _pairs(edges: torch.Tensor) -> set[tuple[int, int]]:
    return set(map(tuple, edges.T.tolist()))


def test_derived_links_by_hand(tiny: HeteroData) -> None:
    # u0: 0, 1, 2, 3; u1: 4, 2, 5; u2: 0, 1 -> (0, 1) shared by two users, the rest by one.
    links = derived_links(tiny, "co_purchase")
    expected = {(a, b) for a in range(4) for b in range(4) if a != b}
    expected |= {(a, b) for a in (2, 4, 5) for b in (2, 4, 5) if a != b} | {(0, 1), (1, 0)}
    assert _pairs(links) == expected
    # One partner each: the pair two users share wins, and links stay symmetric.
    strongest = _pairs(derived_links(tiny, "co_purchase", max_neighbours=1))
    assert {(0, 1), (1, 0)} <= strongest
    assert all((b, a) in strongest for a, b in strongest)


def test_derived_links_never_see_held_out_interactions(beauty: HeteroData) -> None:
    """PyKEEN-style leakage check: whatever the held-out interactions are, the training graph's
    derived links are the same; and each one is backed by a user's two training items."""
    split = make_split(beauty, "recommend", "interacted", derive=("co_purchase",))
    derived = split.train_graph[CO_PURCHASE].edge_index
    assert derived.size(1) > 0
    # Move every held-out target to a product its user never had: nothing derived may change.
    moved = beauty.clone()
    n = moved["product"].num_nodes
    users, items = moved[INTERACTED].edge_index
    owned: dict[int, set[int]] = {}
    for u, p in zip(users.tolist(), items.tolist(), strict=True):
        owned.setdefault(u, set()).add(p)
    new_target = {}
    for stage in ("valid", "test"):
        for u, targets in split.targets(stage).items():
            for t in targets.tolist():
                other = (t + 7919) % n
                while other in owned[u]:
                    other = (other + 1) % n
                new_target[u, t] = other
    for edge_type in (INTERACTED, rev(INTERACTED)):
        store = moved[edge_type]
        pairs = store.edge_index if edge_type == INTERACTED else store.edge_index.flip(0)
        moved_items = torch.tensor(
            [new_target.get((u, p), p) for u, p in pairs.T.tolist()], dtype=torch.long
        )
        new = torch.stack([pairs[0], moved_items])
        store.edge_index = new if edge_type == INTERACTED else new.flip(0)
    moved_split = make_split(moved, "recommend", "interacted", derive=("co_purchase",))
    assert torch.equal(moved_split.train_graph[CO_PURCHASE].edge_index, derived)
    # Every derived pair: some user has both products among their training pairs.
    by_user: dict[int, set[int]] = {}
    for u, p in split.train_edges.T.tolist():
        by_user.setdefault(u, set()).add(p)
    together = {a * PAIR_SHIFT + b for items in by_user.values() for a in items for b in items}
    assert all(a * PAIR_SHIFT + b in together for a, b in derived.T.tolist())
    # Derived from the whole graph (held-out interactions too) the links differ, so the
    # checks above would catch a derivation that read them.
    full = derived_links(beauty, "co_purchase")
    assert not torch.equal(full, derived)  # the held-out interactions would have added links


def test_relations_ablation(beauty: HeteroData) -> None:
    none = make_split(beauty, "recommend", "interacted", relations=())
    assert not any(et[1].removeprefix("rev_") in PRODUCT_RELS for et in none.train_graph.edge_types)
    assert ("product", "made_by", "brand") in none.train_graph.edge_types  # not a relation list
    some = make_split(beauty, "recommend", "interacted", relations=("also_viewed",))
    kept = {et[1] for et in some.train_graph.edge_types if et[0] == et[2] == "product"}
    assert kept == {"also_viewed", "rev_also_viewed"}
    # A related-items model always sees the relation it learns.
    related = make_split(beauty, "related", "also_bought", relations=())
    kept = {et[1] for et in related.train_graph.edge_types if et[0] == et[2] == "product"}
    assert kept == {"also_bought", "rev_also_bought"}
    assert ("product", "also_viewed", "product") in beauty.edge_types  # the input is untouched
    assert with_side_information(beauty) is beauty


def test_co_view_needs_view_events(tiny: HeteroData) -> None:
    with pytest.raises(MissingDataError, match="co_view needs view events"):
        derived_links(tiny, "co_view")
    data = tiny.clone()
    view = INTERACTION_KINDS.index("view")
    for edge_type in (INTERACTED, rev(INTERACTED)):
        data[edge_type].kind = torch.full_like(data[edge_type].kind, view)
    assert derived_links(data, "co_view").size(1) > 0
    with pytest.raises(MissingDataError, match="co_purchase needs"):
        derived_links(data, "co_purchase")  # views only: nothing was bought


def test_options_check_the_names() -> None:
    assert tuple(DERIVED_KINDS) == DERIVABLE
    with pytest.raises(InvalidArgumentError, match="unknown relation"):
        TrainOptions(task="recommend", relations=("bought_with",))
    with pytest.raises(InvalidArgumentError, match="unknown relation"):
        TrainOptions(task="recommend", derive=("co_like",))
    with pytest.raises(InvalidArgumentError, match="time split is for task=recommend"):
        TrainOptions(task="related", split="time")


def test_time_split_through_make_split(beauty: HeteroData) -> None:
    ts = beauty[INTERACTED].ts
    by_quantile = make_split(beauty, "recommend", "interacted", protocol="time", cut=0.9)
    held = ts.numel() - by_quantile.train_edges.size(1)
    assert 0.15 * ts.numel() <= held <= 0.25 * ts.numel()  # test 10% and validation 10%
    cut = torch.quantile(ts.double(), 0.9).item()
    by_time = make_split(beauty, "recommend", "interacted", protocol="time", cut=cut)
    assert by_time.test.keys() == by_quantile.test.keys()
    assert bool((by_time.train_graph[INTERACTED].ts < cut).all())
    with pytest.raises(InvalidArgumentError, match="leaves no interaction"):
        make_split(beauty, "recommend", "interacted", protocol="time", cut=ts.max().item() + 1)
    with pytest.raises(InvalidArgumentError, match="must be one of"):
        make_split(beauty, "recommend", "interacted", protocol="random")
