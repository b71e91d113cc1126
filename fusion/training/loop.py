"""Training loop for `FusedModel`: mini-batches over the split's training targets, early stopping
on the validation metric, reproducible seeds, CUDA autocast when present.

Only `split.train_graph` (message passing) and `split.train_edges`/`split.history("valid")`
(targets) are trained on; validation targets are read for early stopping only. A warm start
passes the pairs its checkpoint was trained on: the targets are then the new ones plus a replay
sample of the old (`fusion.data.replay`), and the checkpoint's optimizer state, so that Adam resumes
with the moment estimates it had rather than restarting (fresh second moments would take a full
learning-rate step on every product row, rarely-bought products' included).
"""

from __future__ import annotations

import copy
import logging
import math
import random
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from fusion.config import Progress, TrainConfig
from fusion.data.replay import Trained
from fusion.data.splits import Split
from fusion.evaluation.harness import evaluate_scorer
from fusion.model.fused import FusedModel
from fusion.training import distributed
from fusion.training.callbacks import Callback
from fusion.training.device import autocast, resolve_device
from fusion.training.result import TrainResult
from fusion.training.stop import (
    TIME_BUDGET,
    PropagationAbandoned,
    StopFlag,
    abandoning,
    stop_on_signals,
)
from fusion.training.tasks import task_for
from kg.errors import MissingDataError

log = logging.getLogger(__name__)

SCORE_BLOCK_BYTES = 256 * 2**20  # validation scores held at once (~256 MiB)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def fit(
    model: FusedModel,
    split: Split,
    config: TrainConfig | None = None,
    trained: Trained | None = None,
    optimizer_state: dict[str, Any] | None = None,
    progress: Progress | None = None,
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """Train `model` on `split`, keep the weights of the best validation epoch, and leave the
    model in eval mode, ready for `full_sort_predict`. A warm start passes `trained` (the pairs
    the model was already trained on, `fusion.data.replay`), which restricts each epoch's targets to
    the new pairs plus `config.replay_ratio` × as many old ones, and the `optimizer_state` it
    ended with (`TrainResult.optimizer_state`, rows aligned with the model's id tables).

    `config.max_minutes` is checked after every step and inside each propagation, and
    SIGINT/SIGTERM (main thread) ask for the same graceful end: the epoch in progress stops, is
    validated once (unless it stopped before its first step and an earlier epoch was validated),
    and the best weights are kept (`TrainResult.stopped_by` says why). `progress(step, done,
    total)` hears about propagation, each epoch's steps and validation; `callbacks` see each
    epoch's metrics and the result (`fusion.training.callbacks`). Under torchrun the model trains
    with DDP (`fusion.training.distributed`): each rank takes its shard of every batch, rank 0
    validates."""
    config = config or TrainConfig()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    # CPU index_add_/index_put backward are otherwise run-to-run nondeterministic.
    torch.use_deterministic_algorithms(config.deterministic, warn_only=True)
    try:
        with stop_on_signals(StopFlag(config.max_minutes)) as stop:
            result = _fit(model, split, config, trained, optimizer_state, progress, stop, callbacks)
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    for callback in callbacks:
        callback.on_train_end(result)
    return result


def _fit(
    model: FusedModel,
    split: Split,
    config: TrainConfig,
    trained: Trained | None,
    optimizer_state: dict[str, Any] | None,
    progress: Progress | None,
    stop: StopFlag,
    callbacks: Sequence[Callback],
) -> TrainResult:
    seed_everything(config.seed)
    device = resolve_device(config.device)
    model.to(device)
    model.progress = progress
    kind = task_for(split, model)
    task = kind(model, split, trained, config)
    if task.window == 0:
        raise MissingDataError(
            "nothing new to train on: every training target is in the checkpoint"
        )
    if task.window is not None:
        log.info(f"warm start: {task.window} new targets + {len(task) - task.window} replayed")
    valid = split.sample_queries("valid", config.valid_queries, config.seed)
    # Without a validation stage (cold start) the best epoch is the lowest training loss.
    metric = (config.metric or task.metric) if valid.numel() else "-loss"
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    if optimizer_state is not None:
        opt.load_state_dict(optimizer_state)
        for group in opt.param_groups:  # this run's settings, not the checkpoint's
            group.update(lr=config.lr, weight_decay=config.weight_decay)
    step_loss = data_parallel(model, device)
    gen = torch.Generator().manual_seed(config.seed)
    start, best, best_epoch, best_state, best_opt = stop.start, -math.inf, 0, None, None
    history: list[dict[str, float]] = []
    epoch, stopped_by = 0, "all epochs"
    for epoch in range(1, config.epochs + 1):
        model.train()
        total, steps, num_steps = 0.0, 0, task.num_steps(config.batch_size)
        # Under DDP the ranks must agree on stopping, which they do after each step instead.
        model.progress = progress if distributed.active() else abandoning(progress, stop)
        try:
            for batch in task.batches(model, config.batch_size, gen, config.cold_frac):
                with autocast(device):
                    loss = step_loss(batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total, steps = total + loss.item(), steps + 1
                del batch  # the next chunk's features are built without this one's alive
                if progress:
                    progress("epoch", steps, num_steps)
                if distributed.any_rank(stop.check() is not None, device):
                    stop.request("stopped by another rank")  # its clock or a signal
                    break
        except PropagationAbandoned:
            pass  # stop.reason says why
        model.progress = progress  # validation's own propagation runs to the end
        if steps == 0 and history:  # nothing trained since the last validation
            stopped_by = stop.reason or stopped_by
            break
        model.eval()
        mean_loss = total / steps if steps else math.nan
        score = validated(model, split, valid, metric, progress) if valid.numel() else -mean_loss
        # Steps taken of the epoch's total: an epoch cut short by the time cap is extrapolated.
        metrics = {"loss": mean_loss, metric: score, "seconds": time.perf_counter() - start}
        metrics |= {"steps": steps, "epoch_steps": num_steps}
        history.append({"epoch": epoch, **metrics})
        log.info(f"epoch {epoch}: loss {mean_loss:.4f} {metric} {score:.4f}")
        for callback in callbacks:
            callback.on_epoch_end(epoch, metrics)
        if score > best:
            best, best_epoch = score, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            best_opt = copy.deepcopy(opt.state_dict())
        elif epoch - best_epoch >= config.patience and valid.numel():
            stopped_by = "early stopping"
            break
        if stop.reason is not None:
            stopped_by = stop.reason
            break
        # Stop when another epoch as long as the mean so far would overrun the budget.
        elapsed = time.perf_counter() - start
        if epoch < config.epochs and elapsed * (epoch + 1) / epoch > 60 * config.max_minutes:
            stopped_by = TIME_BUDGET
            break
    model.progress = None
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    if (
        valid.numel()
        and model.config.task == "recommend"
        and model.config.popularity_penalty is None
    ):
        penalty = choose_popularity_penalty(model, split, valid, metric, progress)
        log.info(f"popularity penalty {penalty} (chosen on validation {metric})")
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


def data_parallel(model: FusedModel, device: torch.device) -> Callable[[dict], Tensor]:
    """The training step's loss function: the model itself, or under torchrun its DDP wrapper
    (gradients averaged across ranks). The graph and text buffers are the same on every rank
    and never change, so DDP neither broadcasts nor checks them."""
    if not distributed.active():
        return model.calculate_loss
    buffers = [name for name, _ in model.named_buffers()]
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, buffers)
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)


def validated(
    model: FusedModel, split: Split, queries: Tensor, metric: str, progress: Progress | None
) -> float:
    """`validate` on rank 0; the other ranks wait for its score (all then agree on the best
    epoch and on early stopping)."""
    score = validate(model, split, queries, metric, progress) if distributed.is_main() else None
    return distributed.broadcast(score)


def validate(
    model: FusedModel,
    split: Split,
    queries: Tensor,
    metric: str,
    progress: Progress | None = None,
) -> float:
    """Mean `metric` (a `fusion.evaluation.metrics` name) over `queries` at the validation stage."""
    k = int(metric.split("@")[1]) if "@" in metric else 10
    # Queries per batch: up to 1024, fewer on large catalogues (a [batch, products] score block).
    batch_size = max(1, min(1024, SCORE_BLOCK_BYTES // (4 * split.num_products)))
    return evaluate_scorer(
        model, split, "valid", ks=(k,), batch_size=batch_size, queries=queries, progress=progress
    )[metric]


# β tried for the popularity penalty (`FusedConfig.popularity_penalty`): 0, 0.1, …, 1.
PENALTIES = tuple(i / 10 for i in range(11))


def choose_popularity_penalty(
    model: FusedModel, split: Split, queries: Tensor, metric: str, progress: Progress | None
) -> float:
    """The β of PENALTIES with the best validation `metric` over `queries` (ties: the smaller),
    recorded in `model.config` (so the checkpoint, and serving, keep it). A softmax over every
    product learns how often each is the next one, which ranking one user's next product
    over-weights; subtracting β·log-popularity (logit adjustment) ranks better and shows more of
    the catalogue (Beauty, fused seed 0: validation NDCG@10 best at β = 0.3; test NDCG@10
    0.0619 → 0.0655, coverage@10 0.52 → 0.67). Eval mode caches the item embeddings, so a try
    costs one scoring pass. Rank 0 chooses; every rank takes its choice."""
    best_score, best = -math.inf, 0.0
    if distributed.is_main():
        for penalty in PENALTIES:
            model.config = replace(model.config, popularity_penalty=penalty)
            score = validate(model, split, queries, metric, progress)
            if score > best_score:
                best_score, best = score, penalty
    best = distributed.broadcast(best)
    model.config = replace(model.config, popularity_penalty=best)
    return best


def peak_memory_mb(device: torch.device) -> float:
    """Peak CUDA allocation on GPU; the process's peak resident set size on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
