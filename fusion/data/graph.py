"""The inputs of every run: the store's graph as `HeteroData`, the products' text vectors and the
task's leakage-free split."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from fusion.config import SPLITS, TASKS, Progress, TrainOptions
from fusion.data.events import event_split
from fusion.data.replay import Trained, trained_keys
from fusion.data.sideinfo import with_side_information
from fusion.data.splits import INTERACTED, Split, recommend_split, related_split, time_split
from kg import settings
from kg.errors import InvalidArgumentError, MissingDataError
from kg.export import to_heterodata
from kg.schema import Rel
from kg.stores import Store, open_store
from text_encoder import (
    EncodeSummary,
    ProductVectors,
    TextEncoder,
    TextTemplate,
    encode_products,
)

log = logging.getLogger(__name__)


def check_store(store: Store, task: str, relation: str) -> None:
    """Refuse a store that cannot feed the task, from its counts (cheap: no graph export)."""
    counts = store.counts()
    if counts["nodes"]["Product"] == 0:
        raise MissingDataError(f"the store {store.uri} holds no products: run `kgrec build` first")
    rel = Rel(relation.upper()) if task == "related" else Rel.INTERACTED
    if counts["relationships"][str(rel)] == 0:
        raise MissingDataError(f"the store {store.uri} has no {rel.lower()!r} edges to learn from")


def load_graph(
    store_uri: str | None, task: str | None = None, relation: str | None = None
) -> HeteroData:
    """The store's graph; with `task` (and `relation`), checked first that it can feed them."""
    with open_store(store_uri) as store:
        if task is not None:
            check_store(store, task, relation or "")
        return graph_of(store)


def graph_of(store: Store) -> HeteroData:
    """The store's graph as HeteroData; an empty store is an error worth a clear message."""
    data = to_heterodata(store)
    if data["product"].num_nodes == 0:
        raise MissingDataError("the store holds no products: run `kgrec build` first")
    return data


def text_vectors(
    data: HeteroData,
    text_model: str | None = None,
    device: str = "auto",
    progress: bool | Progress = True,
    template: TextTemplate | None = None,
) -> tuple[Tensor, str]:
    """Every product's text vector (through the on-disk cache) and the text model's id;
    `progress` as for `encode_graph_text`."""
    encoder = TextEncoder.from_pretrained(text_model, device=device)
    return encode_graph_text(encoder, data, template, progress), encoder.model_id


def encode_graph_text(
    encoder: TextEncoder,
    data: HeteroData,
    template: TextTemplate | None = None,
    progress: bool | Progress = True,
) -> Tensor:
    """The products' text vectors, as `encode_product_text` makes them (the summary logged);
    `progress`: a progress bar (True), none, or a `Progress` callback (step "encoding")."""
    vectors, summary = encode_product_text(encoder, data, template, progress)
    log.info(f"text vectors: {summary}")
    return vectors.vectors


def encode_product_text(
    encoder: TextEncoder,
    data: HeteroData,
    template: TextTemplate | None = None,
    progress: bool | Progress = True,
    batch_size: int | None = None,
) -> tuple[ProductVectors, EncodeSummary]:
    """The products' texts rendered by `template` and encoded through the shared cache: what
    `kgrec encode` fills and training, evaluation and queries read."""
    product = data["product"]
    report = partial(progress, "encoding") if callable(progress) else progress
    return encode_products(
        encoder,
        product.node_id,
        product.text_fields,
        settings.text_vector_cache(),
        template=template,
        batch_size=batch_size,
        progress=report,
    )


def text_template(fields: tuple[str, ...] | None) -> TextTemplate:
    """The template rendering these product fields, in order (None: the default fields)."""
    return TextTemplate() if fields is None else TextTemplate(fields=tuple(fields))


def template_record(template: TextTemplate) -> dict[str, object]:
    """The template as JSON (what a checkpoint records, and `template_of` reads back)."""
    record = {f.name: getattr(template, f.name) for f in dataclasses.fields(template)}
    return {**record, "fields": list(template.fields), "labels": dict(template.labels)}


def template_of(meta: dict[str, Any]) -> TextTemplate:
    """The template a checkpoint's texts were rendered with (`read_meta`; checkpoints from
    before it was recorded: the default)."""
    record = meta["metrics"].get("text_template")
    if record is None:
        return TextTemplate()
    return TextTemplate(**{**record, "fields": tuple(record["fields"])})


def side_information_of(meta: dict[str, Any]) -> dict[str, Any]:
    """The `relations` and `derive` a checkpoint's run chose (`read_meta`; older checkpoints:
    every crawled relation, nothing derived)."""
    recorded = meta["metrics"].get("options", {})
    relations = recorded.get("relations")
    return {
        "relations": None if relations is None else tuple(relations),
        "derive": tuple(recorded.get("derive") or ()),
    }


def make_split(
    data: HeteroData,
    task: str,
    relation: str,
    trained: Trained | None = None,
    *,
    protocol: str = "leave-last-out",
    cut: float | None = None,
    relations: Sequence[str] | None = None,
    derive: Sequence[str] = (),
) -> Split:
    """The task's split of `data`. `trained`: the pairs a checkpoint was trained on, which a
    related-items split never holds out (the graph may have grown since; recommendation splits
    are by time, so what a model trained on stays training).

    `protocol` (recommend): "leave-last-out" per user, or "time", a global cut at `cut` (a
    timestamp, or a quantile of the interaction times when within (0, 1); the validation
    window is as long, in interactions, just before it). `relations` / `derive`: the
    Product→Product relations the training graph keeps / gets derived from its own (training)
    interactions (`fusion.data.sideinfo`)."""
    if task == "recommend":
        split: Split = (
            recommend_split(data)
            if protocol == "leave-last-out"
            else _time_split(data, protocol, cut)
        )
    elif task == "rank":  # events in time order (fusion.data.events)
        split = event_split(data)
    elif task == "related":
        TrainOptions(task=task, relation=relation)  # a relation outside the schema: refused
        if protocol != "leave-last-out":
            raise InvalidArgumentError("a time split is for task=recommend only")
        if data["product", relation, "product"].num_edges == 0:
            raise MissingDataError(f"the graph has no {relation!r} edges to learn or evaluate")
        seen = None if trained is None else trained_keys(trained, data, "product")
        split = related_split(data, relation, trained=seen)
    else:
        raise InvalidArgumentError(f"task must be one of {TASKS}, got {task!r}")
    keep = (relation,) if task == "related" else ()
    split.train_graph = with_side_information(split.train_graph, relations, derive, keep)
    return split


def _time_split(data: HeteroData, protocol: str, cut: float | None) -> Split:
    """`time_split` at `cut` (None: its default cuts); see `make_split`."""
    if protocol != "time":
        raise InvalidArgumentError(f"--split must be one of {', '.join(SPLITS)}, got {protocol!r}")
    if cut is None:
        return time_split(data)
    ts = data[INTERACTED].ts.double()
    test_from = torch.quantile(ts, cut).item() if 0 < cut < 1 else float(cut)
    share = (ts >= test_from).double().mean().item()  # of the interactions after the cut
    if share in (0.0, 1.0):
        raise InvalidArgumentError(
            f"time cut {cut} leaves {'no' if share == 0 else 'every'} interaction after it "
            f"(times run from {ts.min().item():g} to {ts.max().item():g})"
        )
    valid_from = torch.quantile(ts, max(0.0, 1 - 2 * share)).item()
    return time_split(data, valid_from=min(valid_from, test_from), test_from=test_from)
