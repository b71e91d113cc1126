"""One entry point per stage, and `pipeline()` for all of them (PyKEEN-style):
store → HeteroData + text vectors → split → fused model (trained, checkpointed) → evaluation
against the baselines on the same split.

Everything here composes the packages; none of the modelling lives here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor
from torch_geometric.data import HeteroData

from fusion.baselines import LightGCNScorer, PopularityScorer, TextScorer
from fusion.checkpoint import (
    CheckpointMismatchError,
    load_checkpoint,
    load_optimizer_state,
    read_meta,
    read_trained,
    save_checkpoint,
)
from fusion.evaluate import evaluate, to_markdown
from fusion.model import FusedConfig, FusedModel
from fusion.replay import Trained, trained_keys, trained_pairs
from fusion.splits import RecSplit, Split, cold_start_split, recommend_split, related_split
from fusion.train import TrainConfig, TrainResult, attach_histories, fit, seed_everything
from kg.export import to_heterodata
from kg.stores import Store, open_store
from text_encoder import TextEncoder, default_cache_dir, encode_products

Log = Callable[[str], None]
WARM_EPOCHS = 3  # a warm start's default epoch count (a cold one: TrainConfig.epochs)


@dataclass
class TrainOptions:
    task: str = "related"  # related | recommend
    relation: str = "also_bought"  # the Product→Product relation for task=related
    text_model: str | None = None  # None = bundled all-MiniLM-L6-v2
    device: str = "auto"
    # Checkpoint to continue from: trains on what is new since it plus a replay sample of the
    # old (`train.replay_ratio`), resuming its optimizer; set `train.epochs` small (WARM_EPOCHS).
    warm_start: Path | None = None
    model: FusedConfig = field(default_factory=FusedConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def load_graph(store_uri: str | None) -> HeteroData:
    with open_store(store_uri) as store:
        return graph_of(store)


def graph_of(store: Store) -> HeteroData:
    """The store's graph as HeteroData; an empty store is an error worth a clear message."""
    data = to_heterodata(store)
    if data["product"].num_nodes == 0:
        raise ValueError("the store holds no products: run `kgrec build` first")
    return data


def text_vectors(
    data: HeteroData, text_model: str | None = None, device: str = "auto", progress: bool = True
) -> tuple[Tensor, str]:
    """Every product's text vector (through the on-disk cache) and the text model's id."""
    encoder = TextEncoder.from_pretrained(text_model, device=device)
    product = data["product"]
    vectors, _ = encode_products(
        encoder, product.node_id, product.text_fields, default_cache_dir(), progress=progress
    )
    return vectors.vectors, encoder.model_id


def make_split(data: HeteroData, task: str, relation: str, trained: Trained | None = None) -> Split:
    """The task's split of `data`. `trained`: the pairs a checkpoint was trained on, which a
    related-items split never holds out (the graph may have grown since; recommendation splits
    are by time, so what a model trained on stays training)."""
    if task == "recommend":
        return recommend_split(data)
    if task == "related":
        if ("product", relation, "product") not in data.edge_types:
            raise ValueError(f"unknown relation {relation!r}")
        if data["product", relation, "product"].num_edges == 0:
            raise ValueError(f"the graph has no {relation!r} edges to learn or evaluate")
        seen = None if trained is None else trained_keys(trained, data, "product")
        return related_split(data, relation, trained=seen)
    raise ValueError(f"task must be 'related' or 'recommend', got {task!r}")


def train(
    store_uri: str | None,
    options: TrainOptions,
    out: str | Path,
    log: Log | None = None,
) -> tuple[FusedModel, TrainResult, Split]:
    """Train the fused model on the store's graph (held-out edges never seen) and checkpoint it,
    with the training pairs it covered (what the next warm start treats as old)."""
    trained = optimizer_state = None
    if options.warm_start:  # a missing or mismatched checkpoint fails before any loading
        check_warm_start(options.warm_start, options.task, options.relation)
        trained = read_trained(options.warm_start)
        if trained is None and log:
            log(f"{options.warm_start} records no training pairs: all targets count as new")
    data = load_graph(store_uri)
    text, text_model = text_vectors(data, options.text_model, options.device)
    split = make_split(data, options.task, options.relation, trained)
    options.model.task, options.model.text_model = options.task, text_model
    options.train.device = options.device
    if options.warm_start:
        model, optimizer_state = warm_model(options.warm_start, split, text, text_model, log)
    else:
        seed_everything(options.train.seed)  # the initial weights too, not only the training
        model = FusedModel(split.train_graph, text, options.model)
    result = fit(model, split, options.train, log, trained, optimizer_state)
    metrics = {"relation": options.relation, "train": result.to_dict()}
    if options.warm_start:
        metrics["warm_start"] = str(options.warm_start)
    save_checkpoint(model, data, out, metrics, trained_pairs(split), result.optimizer_state)
    return model, result, split


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
    checkpoint: str | Path, split: Split, text: Tensor, text_model: str, log: Log | None = None
) -> tuple[FusedModel, dict[str, Any] | None]:
    """The checkpoint rebuilt on the split's graph for further training (same text model and
    graph schema required; new nodes grow the id tables) and its optimizer state (None when
    the checkpoint predates it)."""
    model = load_checkpoint(checkpoint, split.train_graph, text, text_model, allow_new_nodes=True)
    optimizer_state = load_optimizer_state(checkpoint, model, split.train_graph)
    if optimizer_state is None and log:
        log(f"{checkpoint} holds no optimizer state: Adam starts afresh")
    return model.train(), optimizer_state


def evaluate_checkpoint(
    checkpoint: str | Path,
    store_uri: str | None,
    baselines: bool = True,
    cold_start_epochs: int = 0,
    log: Log | None = None,
) -> list[dict[str, Any]]:
    """The checkpoint and the baselines on the split it was trained on (rebuilt from the same
    seed and the checkpoint's record: nothing it trained on is held out, also after the graph
    grew), full ranking. For related items, `cold_start_epochs > 0` adds the cold-start split,
    with a fused model trained afresh on it (the checkpoint has seen the cold products' edges)."""
    meta = read_meta(checkpoint)
    data = load_graph(store_uri)
    text, text_model = text_vectors(data, meta["text_model"], progress=False)
    task = meta["config"]["task"]
    split = make_split(data, task, meta["metrics"]["relation"], read_trained(checkpoint))
    model = load_checkpoint(checkpoint, split.train_graph, text, text_model)
    if isinstance(split, RecSplit):
        attach_histories(model, split)
    reports = [evaluate(_scorers(model, split, text, baselines, log), split)]
    if cold_start_epochs and task == "related":
        cold = cold_start_split(data, split.relation)
        cold_config = TrainConfig(epochs=cold_start_epochs)
        seed_everything(cold_config.seed)
        cold_model = FusedModel(cold.train_graph, text, model.config)
        cold_model.fit(cold, cold_config, log)
        reports.append(evaluate(_scorers(cold_model, cold, text, baselines, log), cold))
    return reports


def _scorers(model: FusedModel, split: Split, text: Tensor, baselines: bool, log: Log | None):
    scorers: dict[str, Any] = {}
    if baselines:
        if log:
            log("fitting baselines: popularity, text-only, LightGCN")
        scorers["popularity"] = PopularityScorer().fit(split)
        scorers["text-only"] = TextScorer(text).fit(split)
        scorers["graph-only (LightGCN)"] = LightGCNScorer().fit(split)
    scorers["fused"] = model
    return scorers


def write_reports(reports: list[dict[str, Any]], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(reports, indent=2))
    return path


def markdown(reports: list[dict[str, Any]]) -> str:
    return "\n\n".join(to_markdown(r) for r in reports)
