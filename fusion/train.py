"""Training loop for `FusedModel`: mini-batches over the split's training targets, early stopping
on the validation metric, reproducible seeds, CUDA autocast when present.

Only `split.train_graph` (message passing) and `split.train_edges`/`split.history("valid")`
(targets) are trained on; validation targets are read for early stopping only. A warm start
passes the pairs its checkpoint was trained on: the targets are then the new ones plus a replay
sample of the old (`fusion.replay`), and the checkpoint's optimizer state, so that Adam resumes
with the moment estimates it had rather than restarting (fresh second moments would take a full
learning-rate step on every product row, rarely-bought products' included).
"""

from __future__ import annotations

import copy
import math
import random
import resource
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fusion.device import autocast, resolve_device
from fusion.evaluate import evaluate_scorer
from fusion.model import PRODUCT, FusedModel
from fusion.replay import ReplaySampler, Trained, is_new
from fusion.splits import RecSplit, Split

EdgeType = tuple[str, str, str]
Batch = dict[str, Any]


@dataclass
class TrainConfig:
    epochs: int = 30  # the exact count when the split has no validation stage (cold start)
    batch_size: int = 4096
    lr: float = 2e-3
    weight_decay: float = 0.0
    patience: int = 2  # epochs without validation improvement before stopping
    seed: int = 0
    device: str = "auto"
    cold_frac: float = 0.1  # products whose every edge is dropped per epoch (learn the text path)
    max_minutes: float = 20.0  # budget: no epoch starts that would overrun it (by mean epoch time)
    metric: str = ""  # default: ndcg@10 (recommend), recall@20 (related)
    valid_queries: int = 4000  # validation queries sampled (fixed per run) for early stopping
    deterministic: bool = True  # bit-identical reruns for a seed (warns where CUDA cannot)
    # Warm starts: old targets replayed per new one, redrawn each epoch (docs/design.md).
    replay_ratio: float = 8.0


@dataclass
class TrainResult:
    metric: str
    best: float
    best_epoch: int
    epochs: int
    seconds: float
    peak_memory_mb: float
    history: list[dict[str, float]] = field(default_factory=list)
    targets: int = 0  # training targets per epoch
    window: int | None = None  # warm start: how many of them are new (the rest are replay)
    stopped_by: str = "all epochs"  # or "early stopping" or "time budget"
    # Adam's state at the best epoch (what a warm start resumes); not part of the report.
    optimizer_state: dict[str, Any] | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "optimizer_state"}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def fit(
    model: FusedModel,
    split: Split,
    config: TrainConfig | None = None,
    log: Callable[[str], None] | None = None,
    trained: Trained | None = None,
    optimizer_state: dict[str, Any] | None = None,
) -> TrainResult:
    """Train `model` on `split`, keep the weights of the best validation epoch, and leave the
    model in eval mode, ready for `full_sort_predict`. A warm start passes `trained` (the pairs
    the model was already trained on, `fusion.replay`), which restricts each epoch's targets to
    the new pairs plus `config.replay_ratio` × as many old ones, and the `optimizer_state` it
    ended with (`TrainResult.optimizer_state`, rows aligned with the model's id tables)."""
    config = config or TrainConfig()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    # CPU index_add_/index_put backward are otherwise run-to-run nondeterministic.
    torch.use_deterministic_algorithms(config.deterministic, warn_only=True)
    try:
        return _fit(model, split, config, log, trained, optimizer_state)
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def _fit(
    model: FusedModel,
    split: Split,
    config: TrainConfig,
    log: Callable[[str], None] | None,
    trained: Trained | None,
    optimizer_state: dict[str, Any] | None,
) -> TrainResult:
    seed_everything(config.seed)
    device = resolve_device(config.device)
    model.to(device)
    kind = RecommendTask if isinstance(split, RecSplit) else RelatedTask
    task = kind(model, split, trained, config)
    if task.window == 0:
        raise ValueError("nothing new to train on: every training target is in the checkpoint")
    if log and task.window is not None:
        log(f"warm start: {task.window} new targets + {len(task) - task.window} replayed")
    valid = split.sample_queries("valid", config.valid_queries, config.seed)
    # Without a validation stage (cold start) the best epoch is the lowest training loss.
    metric = (config.metric or task.metric) if valid.numel() else "-loss"
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    if optimizer_state is not None:
        opt.load_state_dict(optimizer_state)
        for group in opt.param_groups:  # this run's settings, not the checkpoint's
            group.update(lr=config.lr, weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(config.seed)
    start, best, best_epoch, best_state, best_opt = time.perf_counter(), -math.inf, 0, None, None
    history: list[dict[str, float]] = []
    epoch, stopped_by = 0, "all epochs"
    for epoch in range(1, config.epochs + 1):
        model.train()
        total, steps = 0.0, 0
        for batch in task.batches(model, config.batch_size, gen, config.cold_frac):
            with autocast(device):
                loss = model.calculate_loss(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, steps = total + loss.item(), steps + 1
        model.eval()
        score = validate(model, split, valid, metric) if valid.numel() else -total / steps
        history.append(
            {
                "epoch": epoch,
                "loss": total / steps,
                metric: score,
                "seconds": time.perf_counter() - start,
            }
        )
        if log:
            log(f"epoch {epoch}: loss {total / steps:.4f} {metric} {score:.4f}")
        if score > best:
            best, best_epoch = score, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            best_opt = copy.deepcopy(opt.state_dict())
        elif epoch - best_epoch >= config.patience and valid.numel():
            stopped_by = "early stopping"
            break
        # Stop when another epoch as long as the mean so far would overrun the budget.
        elapsed = time.perf_counter() - start
        if epoch < config.epochs and elapsed * (epoch + 1) / epoch > 60 * config.max_minutes:
            stopped_by = "time budget"
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return TrainResult(
        metric,
        best,
        best_epoch,
        epoch,
        time.perf_counter() - start,
        peak_memory_mb(device),
        history,
        targets=len(task),
        window=task.window,
        stopped_by=stopped_by,
        optimizer_state=best_opt,
    )


def validate(model: FusedModel, split: Split, queries: Tensor, metric: str) -> float:
    """Mean `metric` (a `fusion.metrics` name) over `queries` at the validation stage."""
    k = int(metric.split("@")[1]) if "@" in metric else 10
    return evaluate_scorer(model, split, "valid", ks=(k,), batch_size=1024, queries=queries)[metric]


def peak_memory_mb(device: torch.device) -> float:
    """Peak CUDA allocation on GPU; the process's peak resident set size on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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
        starts = torch.repeat_interleave(torch.cumsum(lengths, 0) - lengths, lengths)
        # Every position but a user's first is a target, predicted from the items before it.
        position = torch.arange(items.numel())
        is_target = position > starts
        self.users = torch.repeat_interleave(users, lengths)[is_target]
        self.targets = items[is_target]
        self.prefixes = right_aligned(
            items, starts[is_target], position[is_target], model.config.max_history
        )
        self.rows = sampler(self.users, self.targets, split, trained, config)
        self.window = None if trained is None else self.rows.window
        attach_histories(model, split)

    def __len__(self) -> int:
        return len(self.rows)

    def batches(
        self, model: FusedModel, size: int, gen: torch.Generator, cold_frac: float
    ) -> Iterator[Batch]:
        """One epoch of mini-batches, each carrying the message-passing graph it is scored on
        (`edges` and their propagated `feats`)."""
        edges = drop_products(model.edges, model.num_nodes[PRODUCT], cold_frac, gen)
        feats = model.propagate(edges)
        for idx in self.rows.draw(gen).split(size):
            yield {
                "query": self.prefixes[idx].to(self.device),
                "target": self.targets[idx].to(self.device),
                "edges": edges,
                "feats": feats,
            }


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

    def batches(
        self, model: FusedModel, size: int, gen: torch.Generator, cold_frac: float
    ) -> Iterator[Batch]:
        """As `RecommendTask.batches`, one message-passing graph per chunk."""
        for part in self.rows.draw(gen).chunk(self.chunks):
            src, dst = self.pairs[:, part]
            edges = drop_products(self._without(model.edges, src, dst), self.n, cold_frac, gen)
            feats = model.propagate(edges)
            for idx in torch.arange(len(part)).split(size):
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


def history_matrix(history: dict[int, Tensor], num_users: int, length: int) -> Tensor:
    """``[num_users, length]`` right-aligned matrix of each user's last `length` items."""
    lengths = torch.zeros(num_users, dtype=torch.long)
    lengths[list(history)] = torch.tensor([len(seq) for seq in history.values()], dtype=torch.long)
    items = torch.empty(int(lengths.sum()), dtype=torch.long)
    ends = torch.cumsum(lengths, 0)
    for user, seq in history.items():
        items[ends[user] - len(seq) : ends[user]] = seq
    return right_aligned(items, ends - lengths, ends, length)


def right_aligned(items: Tensor, starts: Tensor, ends: Tensor, length: int) -> Tensor:
    """``[len(starts), length]``: row r holds the last `length` of ``items[starts[r]:ends[r]]``,
    right-aligned, -1 padded on the left."""
    cols = ends.unsqueeze(1) - length + torch.arange(length)
    inside = cols >= starts.unsqueeze(1)
    out = torch.full(cols.shape, -1, dtype=torch.long)
    out[inside] = items[cols[inside]]
    return out
