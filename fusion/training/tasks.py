"""Training tasks: which targets an epoch trains on and the message-passing graph each batch is
scored on (next-item prediction for users, link prediction for product relations)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from fusion.config import TrainConfig
from fusion.data.events import RankSplit
from fusion.data.histories import history_matrix, right_aligned
from fusion.data.replay import ReplaySampler, Trained, is_new
from fusion.data.splits import RecSplit, Split
from fusion.model.fused import PRODUCT, FusedModel
from fusion.training import distributed
from kg.errors import MissingDataError
from kg.export import INTERACTION_KINDS

EdgeType = tuple[str, str, str]
Batch = dict[str, Any]


def drop_products(
    edges: dict[EdgeType, Tensor], num_products: int, frac: float, gen: torch.Generator
) -> dict[EdgeType, Tensor]:
    """Remove every edge touching a random `frac` of products: simulated cold-start nodes, so
    the inductive path (text + brand/category) is trained too."""
    if frac <= 0:
        return edges
    cold = torch.rand(num_products, generator=gen) < frac
    out = {}
    for et, ei in edges.items():
        keep = torch.ones(ei.shape[1], dtype=torch.bool)
        for side, node_type in ((0, et[0]), (1, et[2])):
            if node_type == PRODUCT:
                keep &= ~cold[ei[side].cpu()]
        out[et] = ei[:, keep.to(ei.device)]
    return out


class RecommendTask:
    """Next-item prediction over every prefix of each user's training sequence. On a warm start
    each epoch's targets are the window + a replay draw; their prefixes stay whole."""

    metric = "ndcg@10"

    def __init__(
        self,
        model: FusedModel,
        split: RecSplit,
        trained: Trained | None = None,
        config: TrainConfig | None = None,
    ) -> None:
        self.device = next(model.parameters()).device
        history = split.history("valid")
        users = torch.tensor(list(history), dtype=torch.long)
        lengths = torch.tensor([len(seq) for seq in history.values()], dtype=torch.long)
        items = torch.cat(list(history.values())) if history else torch.empty(0, dtype=torch.long)
        is_target, self.prefixes = next_item_rows(items, lengths, model.config.max_history)
        self.users = torch.repeat_interleave(users, lengths)[is_target]
        self.targets = items[is_target]
        self.rows = sampler(self.users, self.targets, split, trained, config)
        self.window = None if trained is None else self.rows.window
        attach_histories(model, split)

    def __len__(self) -> int:
        return len(self.rows)

    def num_steps(self, size: int) -> int:
        """Steps per epoch with batches of `size` targets."""
        return len(batch_sizes(len(self), size))

    def batches(
        self, model: FusedModel, size: int, gen: torch.Generator, cold_frac: float
    ) -> Iterator[Batch]:
        """One epoch of mini-batches, each carrying the message-passing graph it is scored on
        (`edges` and their propagated `feats`)."""
        edges = drop_products(model.edges, model.num_nodes[PRODUCT], cold_frac, gen)
        feats = model.propagate(edges)
        for idx in batches_of(self.rows.draw(gen), size):
            yield {**self.rows_of(idx), "edges": edges, "feats": feats}

    def rows_of(self, idx: Tensor) -> Batch:
        """The target rows `idx` of a batch, on the model's device."""
        return {
            "query": self.prefixes[idx].to(self.device),
            "target": self.targets[idx].to(self.device),
        }


def next_item_rows(items: Tensor, lengths: Tensor, max_history: int) -> tuple[Tensor, Tensor]:
    """Sequences laid end to end (`lengths` each): which positions are targets — every one but
    a sequence's first, predicted from the items before it — and those right-aligned prefixes."""
    starts = torch.repeat_interleave(torch.cumsum(lengths, 0) - lengths, lengths)
    position = torch.arange(items.numel())
    is_target = position > starts
    return is_target, right_aligned(items, starts[is_target], position[is_target], max_history)


class RankTask(RecommendTask):
    """Multi-objective ranking: one target row per training event that has an earlier event of
    the same user — its product, kind and rating, predicted from the user's items before it
    (`fusion.model.ranking.RankModel.calculate_loss`). No warm starts."""

    def __init__(
        self,
        model: FusedModel,
        split: RankSplit,
        trained: Trained | None = None,
        config: TrainConfig | None = None,
    ) -> None:
        if trained is not None:
            raise MissingDataError("task rank has no warm start: train it afresh")
        check_objectives(model.config.objectives, split)
        self.device = next(model.parameters()).device
        events = split.events
        lengths = torch.bincount(events["user"])  # events are sorted by user, then time
        is_target, self.prefixes = next_item_rows(events["item"], lengths, model.config.max_history)
        self.targets = events["item"][is_target]
        self.kind, self.rating = events["kind"][is_target], events["rating"][is_target]
        self.rows = ReplaySampler(torch.ones(self.targets.numel(), dtype=torch.bool), 0.0)
        self.window = None
        attach_histories(model, split)

    def rows_of(self, idx: Tensor) -> Batch:
        """As `RecommendTask.rows_of`, each row with its event's kind and rating."""
        return {
            **super().rows_of(idx),
            "kind": self.kind[idx].to(self.device),
            "rating": self.rating[idx].to(self.device),
        }


def check_objectives(objectives: dict[str, float], split: RankSplit) -> None:
    """Refuse objectives the training events cannot teach: no carts, purchases, ratings or
    prices among them."""
    kinds = set(INTERACTION_KINDS[k] for k in split.events["kind"].unique().tolist())
    missing = {
        "cart": "cart" not in kinds,
        "purchase": "purchase" not in kinds,
        "revenue": "purchase" not in kinds or not split.prices.known,
        "rating": bool(split.events["rating"].isnan().all()),
    }
    lacking = [name for name in objectives if missing.get(name)]
    if lacking:
        raise MissingDataError(
            f"objectives {', '.join(lacking)}: the training events have no "
            "carts/purchases/prices/ratings to learn them from"
        )


class RelatedTask:
    """Product→Product link prediction on the split's training edges. Each epoch splits its
    targets into `chunks`; a chunk's edges leave message passing while they are the targets, so
    the model cannot just read the edge it is asked to predict."""

    metric = "recall@20"
    chunks = 4

    def __init__(
        self,
        model: FusedModel,
        split: Split,
        trained: Trained | None = None,
        config: TrainConfig | None = None,
    ) -> None:
        self.device = next(model.parameters()).device
        self.pairs = split.train_edges
        self.rows = sampler(*self.pairs, split, trained, config)
        self.window = None if trained is None else self.rows.window
        self.n = model.num_nodes[PRODUCT]
        self.edge_types = [
            (PRODUCT, split.relation, PRODUCT),
            (PRODUCT, f"rev_{split.relation}", PRODUCT),
        ]

    def __len__(self) -> int:
        return len(self.rows)

    def num_steps(self, size: int) -> int:
        """Steps per epoch with batches of `size` targets."""
        parts = torch.arange(len(self)).chunk(self.chunks)
        return sum(len(batch_sizes(len(part), size)) for part in parts)

    def batches(
        self, model: FusedModel, size: int, gen: torch.Generator, cold_frac: float
    ) -> Iterator[Batch]:
        """As `RecommendTask.batches`, one message-passing graph per chunk (every rank leaves
        the whole chunk out of message passing; each trains on its shard of the chunk)."""
        for part in self.rows.draw(gen).chunk(self.chunks):
            src, dst = self.pairs[:, part]
            edges = drop_products(self._without(model.edges, src, dst), self.n, cold_frac, gen)
            feats = None  # the previous chunk's, freed before the next is built
            feats = model.propagate(edges)
            for idx in batches_of(torch.arange(len(part)), size):
                yield {
                    "query": src[idx].to(self.device),
                    "target": dst[idx].to(self.device),
                    "edges": edges,
                    "feats": feats,
                }

    def _without(self, edges: dict, src: Tensor, dst: Tensor) -> dict[EdgeType, Tensor]:
        """`edges` without the pairs (src, dst), in either direction, in the split's relation."""
        held = torch.cat([src * self.n + dst, dst * self.n + src]).to(self.device)
        out = dict(edges)
        for et in self.edge_types:
            if et in out:
                ei = out[et]
                out[et] = ei[:, ~torch.isin(ei[0] * self.n + ei[1], held)]
        return out


def task_for(split: Split, model: FusedModel) -> type[RankTask | RecommendTask | RelatedTask]:
    """The training task a split and a model call for (a single-objective model trains on a
    rank split's events as next-item prediction)."""
    if isinstance(split, RankSplit) and model.config.task == "rank":
        return RankTask
    return RecommendTask if isinstance(split, RecSplit) else RelatedTask


def batch_sizes(n: int, size: int) -> list[int]:
    """Sizes of the global batches `n` targets make. Under data parallelism a batch smaller than
    the number of ranks would leave one empty, so that last remnant is dropped."""
    sizes = [len(b) for b in torch.arange(n).split(size)]
    return sizes[:-1] if sizes and sizes[-1] < distributed.world_size() else sizes


def batches_of(rows: Tensor, size: int) -> Iterator[Tensor]:
    """This rank's shard of each global batch of `size` rows (all of it in one process)."""
    for batch in rows.split(size)[: len(batch_sizes(len(rows), size))]:
        yield distributed.shard(batch)


def sampler(
    queries: Tensor,
    products: Tensor,
    split: Split,
    trained: Trained | None,
    config: TrainConfig | None,
) -> ReplaySampler:
    """Which of the (query, product) target rows an epoch trains on: all of them, or on a warm
    start the ones beyond `trained` plus a replay draw of the rest."""
    if trained is None:
        return ReplaySampler(torch.ones(queries.numel(), dtype=torch.bool), 0.0)
    ratio = (config or TrainConfig()).replay_ratio
    return ReplaySampler(is_new(queries, products, trained, split), ratio)


def attach_histories(model: FusedModel, split: RecSplit) -> None:
    """Give `model` the users' histories before each stage's target (what it scores from)."""
    device = next(model.parameters()).device
    num_users = split.train_graph["user"].num_nodes
    model.use_histories(
        {
            stage: history_matrix(split.history(stage), num_users, model.config.max_history).to(
                device
            )
            for stage in ("valid", "test")
        }
    )
