"""A trained checkpoint as the query layer's `QueryModel`, over the store's *current* graph.

The model is rebuilt on today's graph, not the training one: products, brands and categories
added since training get fused vectors through the inductive path (their text, brand, category
and neighbours) with no training step; known ones keep their learned id rows.

Large catalogues pay for that rebuild once: the first load (`kgrec publish`, the first
`kgrec serve`) saves the product vectors next to the checkpoint with the store's version, and
while the store is unchanged later loads read them from disk; the full model is then loaded on
the first query that needs it (a user, a text, a product added since).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor
from torch_geometric.data import HeteroData

from fusion.data.graph import encode_graph_text, graph_of, side_information_of, template_of
from fusion.data.histories import history_matrix
from fusion.data.sideinfo import with_side_information
from fusion.data.splits import user_histories
from fusion.model.checkpoint import ID_MAPS, load_checkpoint, read_meta
from fusion.model.fused import FusedModel
from fusion.model.ranking import RankModel
from kg.stores import Store
from text_encoder import TextEncoder

log = logging.getLogger(__name__)

VECTORS_FILE = "product_vectors.safetensors"
# Catalogues above this size keep their product vectors next to the checkpoint (the size above
# which serving answers related items through an ANN index); smaller ones rebuild in seconds.
SAVED_VECTORS_MIN_PRODUCTS = 50_000


class FusedQueryModel:
    """Related items rank by the cosine of one vector per product: for a related-items model
    ``[√scale·text, fused]``, whose dot product is the model's own score."""

    def __init__(self, model: FusedModel, graph: HeteroData, encoder: TextEncoder | None) -> None:
        self.model, self.encoder = model, encoder
        self.product_ids = list(graph["product"].node_id)
        self.user_ids = list(graph["user"].node_id)
        with torch.no_grad():
            self.items = model.item_embeddings()
            self.vectors = self._vectors(model.text, self.items)
        self.histories = history_matrix(
            user_histories(graph), len(self.user_ids), model.config.max_history
        )

    def _vectors(self, text: Tensor, fused: Tensor) -> Tensor:
        if self.model.config.task == "related":
            return torch.cat([math.sqrt(self.model.text_scale.item()) * text, fused], dim=1)
        return fused

    def product_vectors(self) -> Tensor:
        return self.vectors

    @property
    def objectives(self) -> list[str]:
        """What a `rank` model scores per product (empty for other models)."""
        return self.model.objectives if isinstance(self.model, RankModel) else []

    @property
    def default_weights(self) -> dict[str, float]:
        return self.model.default_weights if isinstance(self.model, RankModel) else {}

    @torch.no_grad()
    def objective_scores(self, user_idx: Tensor) -> dict[str, Tensor]:
        """Per objective, [B, N] scores of every product (a `rank` model only)."""
        return self.model.objective_scores(self.items, self.histories[user_idx])

    def combine(self, scores: dict[str, Tensor], weights: Mapping[str, float]) -> Tensor:
        """Σ weight · score (a `rank` model; unknown objectives refused)."""
        return self.model.combine(scores, weights)

    @torch.no_grad()
    def user_scores(self, user_idx: Tensor) -> Tensor:
        hist = self.histories[user_idx]
        if isinstance(self.model, RankModel):
            return self.combine(self.objective_scores(user_idx), self.default_weights)
        if self.model.config.task == "recommend":
            return self.model.ranking_scores(self.items, hist)
        # A related-items model has no user side: the user is the mean of their items.
        known = (hist >= 0).unsqueeze(-1)
        mean = (self.vectors[hist.clamp(min=0)] * known).sum(1) / known.sum(1).clamp(min=1)
        return mean @ self.vectors.T

    @torch.no_grad()
    def text_to_vectors(self, texts: list[str]) -> Tensor:
        if self.encoder is None:
            raise RuntimeError("this query model was built without a text encoder")
        text = self.encoder.encode(texts, progress=False)
        return self._vectors(text, self.model.embed_text_only(text))


class SavedVectorsQueryModel:
    """Product vectors read from a checkpoint's `VECTORS_FILE`; anything else (users, texts)
    loads the full model on first use."""

    def __init__(
        self, vectors: Tensor, ids: dict[str, list[str]], full: Callable[[], FusedQueryModel]
    ) -> None:
        self.vectors, self._full, self._model = vectors, full, None
        self.product_ids, self.user_ids = ids["product"], ids["user"]

    def product_vectors(self) -> Tensor:
        return self.vectors

    def _loaded(self) -> FusedQueryModel:
        if self._model is None:
            log.info("loading the full model (a query needs more than the saved vectors)")
            self._model = self._full()
        return self._model

    def user_scores(self, user_idx: Tensor) -> Tensor:
        return self._loaded().user_scores(user_idx)

    def text_to_vectors(self, texts: list[str]) -> Tensor:
        return self._loaded().text_to_vectors(texts)


def _save_vectors(checkpoint_dir: Path, vectors: Tensor, store_version: str) -> None:
    path = checkpoint_dir / VECTORS_FILE
    tmp = path.with_name(f".{VECTORS_FILE}.tmp")
    try:
        save_file({"vectors": vectors.float().contiguous()}, tmp, {"store_version": store_version})
        tmp.replace(path)
    except OSError as exc:  # a read-only checkpoint: the next start rebuilds
        log.warning("product vectors not saved in %s (%s)", checkpoint_dir, exc)


def _saved_vectors(checkpoint_dir: Path, store: Store) -> Tensor | None:
    """The saved product vectors when the store is still at the version they were written for."""
    path = checkpoint_dir / VECTORS_FILE
    if not path.is_file():
        return None
    with safe_open(path, "pt") as f:
        saved_at = (f.metadata() or {}).get("store_version")
        if saved_at is None or saved_at != store.version():
            log.info("%s: the store changed since it was written; recomputing", path)
            return None
        return f.get_tensor("vectors")


def load_query_model(
    checkpoint_dir: str | Path, store: Store
) -> FusedQueryModel | SavedVectorsQueryModel:
    """The checkpoint over `store`'s current graph (new nodes allowed), ready to answer: from
    its saved product vectors while they are current, else rebuilt."""
    vectors = _saved_vectors(Path(checkpoint_dir), store)
    if vectors is None:
        version = store.version()  # before the graph is read: a write meanwhile makes it stale
        model = _full_query_model(checkpoint_dir, store)
        if len(model.product_ids) > SAVED_VECTORS_MIN_PRODUCTS and version is not None:
            _save_vectors(Path(checkpoint_dir), model.vectors, version)
        return model
    ids = json.loads((Path(checkpoint_dir) / ID_MAPS).read_text(encoding="utf-8"))
    return SavedVectorsQueryModel(vectors, ids, lambda: _full_query_model(checkpoint_dir, store))


def _full_query_model(checkpoint_dir: str | Path, store: Store) -> FusedQueryModel:
    meta = read_meta(checkpoint_dir)
    side = side_information_of(meta)
    keep = (meta["metrics"].get("relation"),) if meta["config"]["task"] == "related" else ()
    # The relations the model was trained with; derived ones from every interaction so far.
    graph = with_side_information(graph_of(store), keep=keep, **side)
    encoder = TextEncoder.from_pretrained(meta["text_model"], device="cpu")
    text = encode_graph_text(encoder, graph, template_of(meta), progress=False)
    model = load_checkpoint(checkpoint_dir, graph, text, encoder.model_id, allow_new_nodes=True)
    return FusedQueryModel(model, graph, encoder)
