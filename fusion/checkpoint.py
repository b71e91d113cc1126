"""Checkpoints of a fused model: one directory holding the weights, the config, the graph's id
maps, the text-model id and the metrics, written atomically (a crash leaves either the old
checkpoint or the new one, never a mix).

Loading refuses a checkpoint whose id maps differ from the graph it is loaded onto, or whose
text model differs from the one that produced the text vectors at hand: product index i would
silently mean a different product, or text vectors would live in a different space.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from fusion.model import FusedConfig, FusedModel
from kg.export import load_id_maps, save_id_maps

WEIGHTS, CONFIG, ID_MAPS, META = "weights.pt", "config.json", "id_maps.json", "meta.json"


class CheckpointMismatchError(ValueError):
    """The checkpoint was trained on another graph or with another text model."""


def save_checkpoint(
    model: FusedModel, graph: HeteroData, path: str | Path, metrics: dict[str, Any] | None = None
) -> Path:
    """Write `model` (built on `graph`) to the directory `path`, replacing it atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        torch.save({k: v.cpu() for k, v in model.state_dict().items()}, tmp / WEIGHTS)
        _write_json(tmp / CONFIG, model.config.to_dict())
        save_id_maps(graph, tmp / ID_MAPS)
        _write_json(tmp / META, {"text_model": model.config.text_model, "metrics": metrics or {}})
        # Swap directories: rename the old one aside, move the new one in, drop the old one.
        old = path.with_name(f".{path.name}.old")
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def load_checkpoint(
    path: str | Path,
    graph: HeteroData,
    text: Tensor,
    text_model: str,
    map_location: str | torch.device = "cpu",
) -> FusedModel:
    """The model saved at `path`, rebuilt on `graph` with `text` vectors from `text_model`.

    Raises `CheckpointMismatchError` if `text_model` or the graph's id maps differ from the
    checkpoint's.
    """
    path = Path(path)
    config = FusedConfig(**_read_json(path / CONFIG))
    if config.text_model != text_model:
        raise CheckpointMismatchError(
            f"checkpoint {path} was trained with text model {config.text_model!r}, "
            f"but the text vectors come from {text_model!r}; re-encode or retrain"
        )
    saved = load_id_maps(path / ID_MAPS)
    current = {t: list(graph[t].node_id) for t in graph.node_types}
    for node_type in sorted(set(saved) | set(current)):
        if saved.get(node_type) != current.get(node_type):
            raise CheckpointMismatchError(
                f"checkpoint {path} does not match this graph: {node_type!r} ids differ "
                f"({len(saved.get(node_type, []))} saved vs {len(current.get(node_type, []))} "
                "now); retrain on this graph"
            )
    model = FusedModel(graph, text, config)
    model.load_state_dict(torch.load(path / WEIGHTS, map_location=map_location, weights_only=True))
    return model.eval()


def read_metrics(path: str | Path) -> dict[str, Any]:
    return _read_json(Path(path) / META)["metrics"]


def _write_json(path: Path, obj: Any) -> None:
    with open(path, "w") as f:
        json.dump(obj, f)
        f.flush()
        os.fsync(f.fileno())


def _read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)
