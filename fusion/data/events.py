"""The rank task's split: each user's interaction events in time order, the last ones held out,
with a target set per objective (clicks, carts, purchases, high ratings) and every product's
price for revenue (missing prices imputed explicitly and flagged)."""

from __future__ import annotations

import copy
import statistics
from dataclasses import dataclass

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from fusion.data.splits import INTERACTED, RecSplit, Stage, _group, rev
from kg.export import INTERACTION_KINDS

CART, PURCHASE = INTERACTION_KINDS.index("cart"), INTERACTION_KINDS.index("purchase")
HIGH_RATING = 4.0  # a rating of at least this is a satisfied customer


@dataclass
class Prices:
    """Per product: the price revenue is computed with, and whether it was imputed."""

    value: Tensor  # FloatTensor[N]; NaN only when the graph has no price at all
    imputed: Tensor  # BoolTensor[N]

    @property
    def known(self) -> bool:
        return bool((~self.value.isnan()).any())


@dataclass
class RankSplit(RecSplit):
    """A `RecSplit` (targets: every product interacted with in the stage's window) plus
    per-objective targets and the training events the heads learn from."""

    objective_targets: dict[str, dict[str, dict[int, Tensor]]]  # stage -> objective -> user
    events: dict[str, Tensor]  # training events by (user, time): user, item, kind, rating
    prices: Prices

    def objective_queries(self, stage: Stage, objective: str) -> Tensor:
        """Sorted users with at least one `objective` target at `stage`."""
        return torch.tensor(sorted(self.objective_targets[stage][objective]), dtype=torch.long)


def event_split(data: HeteroData, frac: float = 0.2, seed: int = 0) -> RankSplit:
    """Per user with at least 3 events, in time order: the last max(1, round(`frac`·n)) events
    are the test window, as many before them the validation window, the rest train. Ties in
    time — and events without a time (Magazine ratings) — are ordered by a seeded shuffle, so
    "later" is a random hold-out there. A window's targets per objective: every product
    interacted with (click), put in the cart (cart), bought (purchase, revenue), rated
    >= `HIGH_RATING` (rating). Nothing is masked: buying what one viewed is the point."""
    store = data[INTERACTED]
    num_events = store.num_edges
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(num_events, generator=gen)
    order = order[torch.argsort(store.ts[order].nan_to_num(nan=0.0), stable=True)]
    users = store.edge_index[0, order]
    order = order[torch.argsort(users, stable=True)]
    users, items = store.edge_index[0, order], store.edge_index[1, order]
    kind, rating = store.kind[order], store.rating[order]

    counts = torch.bincount(users, minlength=data["user"].num_nodes)
    from_end = torch.cumsum(counts, 0)[users] - torch.arange(num_events)  # 1 = user's last
    held = torch.where(counts >= 3, (frac * counts).round().clamp(min=1), 0)[users]
    window = {"test": from_end <= held, "valid": (from_end > held) & (from_end <= 2 * held)}
    train = ~(window["test"] | window["valid"])
    seen = {"valid": train, "test": train | window["valid"]}
    labels = {
        "click": torch.ones_like(train),
        "cart": kind == CART,
        "purchase": kind == PURCHASE,
        "revenue": kind == PURCHASE,
        "rating": rating >= HIGH_RATING,  # NaN (no rating) compares False
    }
    objective_targets = {
        stage: {
            name: {u: t.unique() for u, t in _group(users[w & is_], items[w & is_]).items()}
            for name, is_ in labels.items()
        }
        for stage, w in window.items()
    }
    histories = {s: _group(users[m], items[m], keep_order=True) for s, m in seen.items()}
    targets = {stage: by["click"] for stage, by in objective_targets.items()}
    return RankSplit(
        task="rank",
        relation="interacted",
        train_graph=_training_graph(data, order[train]),
        train_edges=torch.stack([users[train], items[train]]),
        targets_by_stage=targets,
        exclusions_by_stage={
            stage: {u: torch.empty(0, dtype=torch.long) for u in t} for stage, t in targets.items()
        },
        histories=histories,
        objective_targets=objective_targets,
        events={
            "user": users[train],
            "item": items[train],
            "kind": kind[train],
            "rating": rating[train],
        },  # fmt: skip
        prices=product_prices(data),
    )


def _training_graph(data: HeteroData, keep: Tensor) -> HeteroData:
    """A copy of `data` whose interaction edges (and their reverses) are the events `keep`
    (edge positions), still sorted by (src, dst)."""
    graph = copy.copy(data)
    keep = keep.sort().values  # edge order is (src, dst) order
    store = graph[INTERACTED]
    attrs = {k: v for k, v in store.items() if isinstance(v, Tensor) and k != "edge_index"}
    kept = {k: v[keep] for k, v in attrs.items() if v.size(0) == store.num_edges}
    edge_index = store.edge_index[:, keep]
    store.edge_index = edge_index
    for key, value in kept.items():
        store[key] = value
    reverse = rev(INTERACTED)
    if reverse in graph.edge_types:
        num_users = data["user"].num_nodes
        perm = torch.argsort(edge_index[1] * num_users + edge_index[0], stable=True)
        graph[reverse].edge_index = edge_index.flip(0)[:, perm]
        for key, value in kept.items():
            graph[reverse][key] = value[perm]
    return graph


def product_prices(data: HeteroData) -> Prices:
    """Each product's catalogue price, else the median price of its events, else (imputed)
    the median over its categories of their products' known prices, else (imputed) the
    median known price. With no price anywhere, NaN: revenue cannot be computed."""
    product = data["product"]
    price = product.price.clone().float()
    if INTERACTED in data.edge_types and "price" in data[INTERACTED]:
        store = data[INTERACTED]
        at_event: dict[int, list[float]] = {}
        for p, value in zip(store.edge_index[1].tolist(), store.price.tolist(), strict=True):
            if value == value:  # not NaN
                at_event.setdefault(p, []).append(value)
        for p, values in at_event.items():
            if price[p].isnan():
                price[p] = statistics.median(values)
    known = ~price.isnan()
    imputed = torch.zeros_like(known)
    if not bool(known.any()):
        return Prices(price, imputed)
    in_category = ("product", "in_category", "category")
    members: dict[int, list[int]] = {}
    if in_category in data.edge_types:
        for p, c in data[in_category].edge_index.t().tolist():
            members.setdefault(p, []).append(c)
    by_category: dict[int, list[float]] = {}
    for p, cats in members.items():
        if known[p]:
            for c in cats:
                by_category.setdefault(c, []).append(price[p].item())
    overall = price[known].median().item()
    for p in (~known).nonzero().view(-1).tolist():
        cats = [c for c in members.get(p, ()) if c in by_category]
        medians = [statistics.median(by_category[c]) for c in cats]
        price[p] = statistics.median(medians) if medians else overall
        imputed[p] = True
    return Prices(price, imputed)
