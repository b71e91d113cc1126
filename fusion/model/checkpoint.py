"""Checkpoints of a fused model: one directory holding the weights (safetensors), the config,
the graph's id maps, the text-model id, the metrics, the training pairs it was fitted on (what
a warm start treats as old), the optimizer state it ended with (what a warm start resumes) and
a generated model card (`README.md`).

Saving is crash-safe (`fusion.model.atomic_dir`): a crash leaves the old checkpoint or the new
one, and whatever it leaves behind is repaired by the next save or load.

Loading refuses a checkpoint whose id maps differ from the graph it is loaded onto, or whose
text model differs from the one that produced the text vectors at hand: product index i would
silently mean a different product, or text vectors would live in a different space. When new
nodes are allowed (warm starts, serving), it still refuses a graph that holds fewer than half
of the checkpoint's products: that is another catalogue, not a grown one.
"""

from __future__ import annotations

import datetime
import gzip
import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor
from torch_geometric.data import HeteroData

from fusion import __version__
from fusion.config import FusedConfig
from fusion.data.replay import Trained
from fusion.model import atomic_dir
from fusion.model.card import graph_counts, model_card
from fusion.model.fused import FusedModel
from fusion.model.ranking import build_model
from gnn.encoders import EdgeType
from kg.errors import KgrecError
from kg.export import load_id_maps, save_id_maps
from kg.stores.uri import redact

WEIGHTS, CONFIG, ID_MAPS, META = "weights.safetensors", "config.json", "id_maps.json", "meta.json"
TRAINED = "trained.json.gz"  # {query id: [product ids]}: the training pairs fitted on
# Adam's state by parameter name: tensors "<name>/<exp_avg|exp_avg_sq|step>", the parameter
# names and param_groups in the metadata (JSON).
OPTIMIZER = "optimizer.safetensors"
CARD = "README.md"
# Checkpoints written before safetensors (torch.save pickles, read with weights_only=True).
LEGACY_WEIGHTS, LEGACY_OPTIMIZER = "weights.pt", "optimizer.pt"
# Parameters with one row per node of a type, in id-map order.
ID_TABLES = {
    "product": ("item_ids.weight",),
    "brand": ("vocab.made_by.bag.weight",),
    "category": ("vocab.in_category.bag.weight",),
}
# Below this share of the checkpoint's products in the graph, the graph is another catalogue.
MIN_PRODUCT_OVERLAP = 0.5


class CheckpointMismatchError(KgrecError, ValueError):
    """The checkpoint was trained on another graph or with another text model."""


class CheckpointUnreadableError(KgrecError, ValueError):
    """A checkpoint file is damaged: truncated, overwritten, or not one kgrec wrote."""


def save_checkpoint(
    model: FusedModel,
    graph: HeteroData,
    path: str | Path,
    metrics: dict[str, Any] | None = None,
    trained: Trained | None = None,
    optimizer_state: dict[str, Any] | None = None,
    store: str | None = None,
) -> Path:
    """Write `model` (built on `graph`) to the directory `path`, replacing it atomically;
    `trained` = the training pairs it was fitted on (`fusion.data.replay.trained_pairs`),
    `optimizer_state` = the state_dict of its Adam optimizer (`TrainResult.optimizer_state`),
    `store` = where the graph came from (for the model card)."""
    path = Path(path)
    with atomic_dir.replacing(path, _is_complete) as tmp:
        weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(weights, tmp / WEIGHTS, {"format": "kgrec fused model"})
        _write_json(tmp / CONFIG, model.config.to_dict())
        save_id_maps(graph, tmp / ID_MAPS)
        meta = {
            "text_model": model.config.text_model,
            "metrics": metrics or {},
            "relations": [list(et) for et in model.edge_types],
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "kgrec_version": __version__,
            "data": {"store": None if store is None else redact(store), **graph_counts(graph)},
        }
        _write_json(tmp / META, meta)
        if trained is not None:
            with gzip.open(tmp / TRAINED, "wt") as gz:  # ~150k pairs on Beauty: gzip is 10x smaller
                json.dump(trained, gz)
        if optimizer_state is not None:
            names = [name for name, _ in model.named_parameters()]
            _save_optimizer(tmp / OPTIMIZER, names, optimizer_state)
        (tmp / CARD).write_text(model_card(path.name, model.config.to_dict(), meta))
    return path


def recover(path: str | Path) -> Path:
    """The directory to read the checkpoint `path` from, after repairing what a crashed save
    left (`fusion.model.atomic_dir.recover`)."""
    return atomic_dir.recover(Path(path), _is_complete)


def _is_complete(path: Path) -> bool:
    return all((path / name).is_file() for name in (CONFIG, META, ID_MAPS)) and (
        (path / WEIGHTS).is_file() or (path / LEGACY_WEIGHTS).is_file()
    )


def _save_optimizer(file: Path, names: list[str], state: dict[str, Any]) -> None:
    tensors = {
        f"{names[index]}/{key}": value.detach().cpu().contiguous()
        for index, values in state["state"].items()
        for key, value in values.items()
    }
    metadata = {"names": json.dumps(names), "param_groups": json.dumps(state["param_groups"])}
    save_file(tensors, file, metadata)


def _load_optimizer(file: Path) -> dict[str, Any]:
    """`{"names", "state"}`, as `torch.load` returns it from the old format."""
    with safe_open(file, "pt") as f:
        metadata = f.metadata()
    names = json.loads(metadata["names"])
    per_param: dict[int, dict[str, Tensor]] = {}
    for key, tensor in load_file(file).items():
        name, _, moment = key.rpartition("/")
        per_param.setdefault(names.index(name), {})[moment] = tensor
    groups = json.loads(metadata["param_groups"])
    return {"names": names, "state": {"state": per_param, "param_groups": groups}}


def load_checkpoint(
    path: str | Path,
    graph: HeteroData,
    text: Tensor,
    text_model: str,
    map_location: str | torch.device = "cpu",
    allow_new_nodes: bool = False,
) -> FusedModel:
    """The model saved at `path`, rebuilt on `graph` with `text` vectors from `text_model`.

    Raises `CheckpointMismatchError` if `text_model` differs, or if the graph's id maps differ
    and `allow_new_nodes` is off. With it on (serving, warm starts), id-keyed tables follow the
    ids: known products/brands/categories keep their rows, new ones start at zero and are placed
    by their text and neighbours (the inductive path).
    """
    path = recover(path)
    meta = read_meta(path)
    config = FusedConfig(**meta["config"])
    if config.text_model != text_model:
        raise CheckpointMismatchError(
            f"checkpoint {path} was trained with text model {config.text_model!r}, "
            f"but the text vectors come from {text_model!r}; re-encode or retrain"
        )
    saved = _read(path / ID_MAPS, load_id_maps)
    current = {t: list(graph[t].node_id) for t in graph.node_types}
    if set(saved) != set(current):
        raise CheckpointMismatchError(
            f"checkpoint {path} has node types {sorted(saved)}, this graph {sorted(current)}"
        )
    if allow_new_nodes:
        _check_overlap(path, saved["product"], current["product"])
    for node_type in sorted(current):
        if saved[node_type] != current[node_type] and not allow_new_nodes:
            raise CheckpointMismatchError(
                f"checkpoint {path} does not match this graph: {node_type!r} ids differ "
                f"({len(saved[node_type])} saved vs {len(current[node_type])} "
                "now); retrain on this graph"
            )
    if (path / WEIGHTS).is_file():
        state = _read(path / WEIGHTS, lambda f: load_file(f, device=str(map_location)))
    else:  # written before safetensors
        state = _read(
            path / LEGACY_WEIGHTS, lambda f: torch.load(f, map_location, weights_only=True)
        )
    model = build_model(graph, text, config)
    _check_relations(path, meta.get("relations"), model.edge_types)
    model.load_state_dict(_follow_graph(state, saved, current))
    return model.eval()


def _check_overlap(path: Path, saved: list[str], current: list[str]) -> None:
    """Refuse a graph that lost most of the checkpoint's products: another catalogue (every
    product would be "new" and start from zero), not the same one grown or trimmed."""
    kept = len(set(saved) & set(current))
    if saved and kept < MIN_PRODUCT_OVERLAP * len(saved):
        raise CheckpointMismatchError(
            f"checkpoint {path} was trained on another catalogue: only {kept:,} of its "
            f"{len(saved):,} products are in this graph (at least "
            f"{MIN_PRODUCT_OVERLAP:.0%} must be); train a new model on this graph"
        )


def _check_relations(path: Path, saved: list[list[str]] | None, current: list[EdgeType]) -> None:
    """The model's weights are per relation (one per metapath): another graph schema (another
    kgrec version's) cannot be loaded. Checkpoints from before the record are not checked."""
    if saved is None or {tuple(et) for et in saved} == set(current):
        return
    missing = sorted(tuple(et) for et in saved if tuple(et) not in current)
    extra = sorted(set(current) - {tuple(et) for et in saved})
    raise CheckpointMismatchError(
        f"checkpoint {path} was trained on another graph schema (relations only it has: "
        f"{missing or 'none'}; only this graph has: {extra or 'none'}); retrain on this graph"
    )


def load_optimizer_state(
    path: str | Path, model: FusedModel, graph: HeteroData
) -> dict[str, Any] | None:
    """The optimizer state saved with the checkpoint at `path`, for `model` (loaded from it onto
    `graph`): id-table rows follow the graph's ids like the weights' (new rows start at zero).
    None if the checkpoint has none."""
    path = recover(path)
    if (path / OPTIMIZER).is_file():
        saved = _read(path / OPTIMIZER, _load_optimizer)
    elif (path / LEGACY_OPTIMIZER).is_file():  # written before safetensors
        saved = _read(path / LEGACY_OPTIMIZER, lambda f: torch.load(f, "cpu", weights_only=True))
    else:
        return None
    names, state = saved["names"], saved["state"]
    if names != [name for name, _ in model.named_parameters()]:
        raise CheckpointMismatchError(f"optimizer state in {path} does not match its model")
    maps = (
        _read(path / ID_MAPS, load_id_maps),
        {t: list(graph[t].node_id) for t in graph.node_types},
    )
    per_param = state["state"]  # {parameter index: {"step", "exp_avg", "exp_avg_sq"}}
    for moment in ("exp_avg", "exp_avg_sq"):
        by_name = {names[i]: values[moment] for i, values in per_param.items()}
        for name, tensor in _follow_graph(by_name, *maps).items():
            per_param[names.index(name)][moment] = tensor
    return state


def _follow_graph(
    tensors: dict[str, Tensor], saved: dict[str, list[str]], current: dict[str, list[str]]
) -> dict[str, Tensor]:
    """`tensors` (by parameter name) with every id table's rows following the current ids."""
    out = dict(tensors)
    for node_type, ids in current.items():
        if saved[node_type] != ids:
            for key in ID_TABLES.get(node_type, ()):
                if key in out:
                    out[key] = _follow_ids(out[key], saved[node_type], ids)
    return out


def _follow_ids(table: Tensor, saved: list[str], current: list[str]) -> Tensor:
    """Rows of `table` (indexed like `saved`) re-ordered like `current`; new ids get zeros."""
    where = {id_: row for row, id_ in enumerate(saved)}
    pairs = [(new, where[id_]) for new, id_ in enumerate(current) if id_ in where]
    out = table.new_zeros(len(current), table.shape[1])
    if pairs:
        new_rows, old_rows = (list(x) for x in zip(*pairs, strict=True))
        out[new_rows] = table[old_rows]
    return out


def read_meta(path: str | Path) -> dict[str, Any]:
    """`{"config", "text_model", "metrics", …}` of the checkpoint at `path` (no weights
    loaded); a checkpoint left aside by an interrupted save is restored first."""
    path = recover(path)
    if not (path / CONFIG).is_file():
        raise FileNotFoundError(
            f"no checkpoint at {path}: train one with `kgrec train` (or pass --checkpoint)"
        )
    return {"config": _read(path / CONFIG, _read_json), **_read(path / META, _read_json)}


def read_metrics(path: str | Path) -> dict[str, Any]:
    return read_meta(path)["metrics"]


def read_trained(path: str | Path) -> Trained | None:
    """The training pairs the checkpoint at `path` was fitted on; None if it has no record."""
    file = recover(path) / TRAINED
    if not file.is_file():
        return None
    return _read(file, _read_gzip_json)


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj))


def _read(file: Path, load: Callable[[Path], Any]) -> Any:
    """`load(file)`, a damaged file (or a missing one inside the checkpoint) named in the error."""
    try:
        return load(file)
    except (
        OSError,
        EOFError,
        ValueError,
        KeyError,
        RuntimeError,
        pickle.UnpicklingError,
        SafetensorError,
    ) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointUnreadableError(
            f"checkpoint file {file} is unreadable ({reason}); retrain or restore it"
        ) from exc


def _read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)


def _read_gzip_json(path: Path) -> Any:
    with gzip.open(path, "rt") as f:
        return json.load(f)
