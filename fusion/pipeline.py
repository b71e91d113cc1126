"""One entry point per stage, and `pipeline()` for all of them (PyKEEN-style):
store → HeteroData + text vectors → split → fused model (trained, checkpointed) → evaluation
against the baselines on the same split.

Everything here composes the packages; none of the modelling lives here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from torch import Tensor

from fusion.config import Progress, TrainConfig, TrainOptions
from fusion.data.graph import (
    load_graph,
    make_split,
    template_of,
    template_record,
    text_template,
    text_vectors,
)
from fusion.data.replay import trained_pairs
from fusion.data.splits import RecSplit, Split, cold_start_split
from fusion.evaluation.harness import evaluate
from fusion.model.baselines import LightGCNScorer, PopularityScorer, TextScorer
from fusion.model.checkpoint import (
    CheckpointMismatchError,
    load_checkpoint,
    load_optimizer_state,
    read_meta,
    read_trained,
    save_checkpoint,
)
from fusion.model.fused import FusedModel
from fusion.model.sasrec import SASRecScorer
from fusion.training import distributed
from fusion.training.callbacks import Callback
from fusion.training.device import resolve_device
from fusion.training.loop import fit, seed_everything
from fusion.training.result import TrainResult
from fusion.training.tasks import attach_histories
from text_encoder.model import resolve_model

log = logging.getLogger(__name__)


def train(
    store_uri: str | None,
    options: TrainOptions,
    out: str | Path,
    callbacks: Sequence[Callback] = (),
    progress: Progress | None = None,
) -> tuple[FusedModel, TrainResult, Split]:
    """Train the fused model on the store's graph (held-out edges never seen) and checkpoint it,
    with the training pairs it covered (what the next warm start treats as old) and the
    resolved options and text template (`meta.json` → metrics). `options` is not changed.
    Under torchrun every process runs this: each loads the graph, rank 0 encodes the text
    (through the cache) and sends the vectors to the others, all train data-parallel, rank 0
    checkpoints (and alone reports progress and calls `callbacks`)."""
    check_options(options)
    options = replace(options, device=distributed.device_for(options.device))
    with distributed.process_group(options.device):
        if not distributed.is_main():
            callbacks, progress = (), None
        result = _train(store_uri, options, out, callbacks, progress)
        distributed.barrier()  # the checkpoint is complete before any rank returns
    return result


def _train(
    store_uri: str | None,
    options: TrainOptions,
    out: str | Path,
    callbacks: Sequence[Callback],
    progress: Progress | None,
) -> tuple[FusedModel, TrainResult, Split]:
    trained = optimizer_state = None
    if options.warm_start:
        trained = read_trained(options.warm_start)
        if trained is None:
            log.info(f"{options.warm_start} records no training pairs: all targets count as new")
    data = load_graph(store_uri, options.task, options.relation)
    split = make_split(data, options.task, options.relation, trained)
    template = text_template(options.text_fields)
    if options.warm_start and options.text_fields is None:  # continue with the same texts
        template = template_of(read_meta(options.warm_start))
    text, text_model = None, None
    if distributed.is_main():
        text, text_model = text_vectors(
            data, options.text_model, options.device, progress or True, template=template
        )
    text, text_model = distributed.broadcast((text, text_model))
    model_config = replace(options.model, task=options.task, text_model=text_model)
    if options.warm_start:
        model, optimizer_state = warm_model(options.warm_start, split, text, text_model)
    else:
        seed_everything(options.train.seed)  # the initial weights too, not only the training
        model = FusedModel(split.train_graph, text, model_config)
    train_config = replace(options.train, device=options.device)
    result = fit(model, split, train_config, trained, optimizer_state, progress, callbacks)
    metrics = {
        "relation": options.relation,
        "train": result.to_dict(),
        "options": options.to_dict(),
        "text_template": template_record(template),
    }
    if options.warm_start:
        metrics["warm_start"] = str(options.warm_start)
    if distributed.is_main():
        store = store_uri or "the local Neo4j server"  # what None means, for the model card
        pairs = trained_pairs(split)
        save_checkpoint(model, data, out, metrics, pairs, result.optimizer_state, store)
    return model, result, split


def check_options(options: TrainOptions) -> None:
    """What can be checked before any slow step (graph export, text model, encoding) and is not
    checked by `TrainOptions` itself: the device, the text model (found; not loaded), the
    warm-start checkpoint (present, same task, relation and text fields)."""
    resolve_device(options.device)
    resolve_model(options.text_model)
    if options.warm_start:
        check_warm_start(options.warm_start, options.task, options.relation)
        recorded = template_of(read_meta(options.warm_start)).fields
        if options.text_fields is not None and tuple(options.text_fields) != recorded:
            raise CheckpointMismatchError(
                f"{options.warm_start} was trained on text fields {','.join(recorded)}, "
                f"not {','.join(options.text_fields)}"
            )


def check_warm_start(checkpoint: str | Path, task: str, relation: str) -> None:
    """Refuse to continue a checkpoint of another task or relation (or a missing one)."""
    meta = read_meta(checkpoint)
    trained_task, trained_relation = meta["config"]["task"], meta["metrics"].get("relation")
    if trained_task != task:
        raise CheckpointMismatchError(f"{checkpoint} is a {trained_task!r} model, not {task!r}")
    if task == "related" and trained_relation != relation:
        raise CheckpointMismatchError(
            f"{checkpoint} learned relation {trained_relation!r}, not {relation!r}"
        )


def warm_model(
    checkpoint: str | Path, split: Split, text: Tensor, text_model: str
) -> tuple[FusedModel, dict[str, Any] | None]:
    """The checkpoint rebuilt on the split's graph for further training (same text model and
    graph schema required; new nodes grow the id tables) and its optimizer state (None when
    the checkpoint predates it)."""
    model = load_checkpoint(checkpoint, split.train_graph, text, text_model, allow_new_nodes=True)
    optimizer_state = load_optimizer_state(checkpoint, model, split.train_graph)
    if optimizer_state is None:
        log.info(f"{checkpoint} holds no optimizer state: Adam starts afresh")
    return model.train(), optimizer_state


def evaluate_checkpoint(
    checkpoint: str | Path,
    store_uri: str | None,
    baselines: bool = True,
    cold_start_epochs: int = 0,
    mask_history: bool = True,
) -> list[dict[str, Any]]:
    """The checkpoint and the baselines on the split it was trained on (rebuilt from the same
    seed and the checkpoint's record: nothing it trained on is held out, also after the graph
    grew), full ranking. For related items, `cold_start_epochs > 0` adds the cold-start split,
    with a fused model trained afresh on it (the checkpoint has seen the cold products' edges).
    `mask_history=False` leaves each query's own history in the ranking."""
    meta = read_meta(checkpoint)
    data = load_graph(store_uri)
    text, text_model = text_vectors(
        data, meta["text_model"], progress=False, template=template_of(meta)
    )
    task = meta["config"]["task"]
    split = make_split(data, task, meta["metrics"]["relation"], read_trained(checkpoint))
    model = load_checkpoint(checkpoint, split.train_graph, text, text_model)
    if isinstance(split, RecSplit):
        attach_histories(model, split)
    reports = [evaluate(_scorers(model, split, text, baselines), split, mask_history=mask_history)]
    if cold_start_epochs and task == "related":
        cold = cold_start_split(data, split.relation)
        cold_config = TrainConfig(epochs=cold_start_epochs)
        seed_everything(cold_config.seed)
        cold_model = FusedModel(cold.train_graph, text, model.config)
        fit(cold_model, cold, cold_config)
        scorers = _scorers(cold_model, cold, text, baselines)
        reports.append(evaluate(scorers, cold, mask_history=mask_history))
    return reports


def _scorers(model: FusedModel, split: Split, text: Tensor, baselines: bool):
    scorers: dict[str, Any] = {}
    if baselines:
        sequential = isinstance(split, RecSplit)
        log.info("fitting baselines: popularity, text-only, LightGCN" + ", SASRec" * sequential)
        scorers["popularity"] = PopularityScorer().fit(split)
        scorers["text-only"] = TextScorer(text).fit(split)
        scorers["graph-only (LightGCN)"] = LightGCNScorer().fit(split)
        if sequential:
            scorers["SASRec"] = SASRecScorer().fit(split)
    scorers["fused"] = model
    return scorers
