"""The fused model: product text vectors ⊕ heterogeneous-GNN embeddings ⊕ id embeddings, gated.

Two tasks share the item side and differ in the query side:
- ``recommend`` (User→Product): a user is the recency-weighted pooling of the fused embeddings of
  their most recent items (sequence-aware; users need no parameters, so new users work too);
- ``related`` (Product→Product): ``score(a, b) = scale·cos_text(a, b) + <f_a, f_b>`` — the raw
  text cosine stays in the score so a product the graph knows nothing about still ranks by text.

Both are trained with a softmax over all products, or above 50k products (by default) a sampled
one: in-batch + random negatives.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import HeteroData

from fusion.config import FusedConfig, Progress
from fusion.model.features import GIB, feature_matrix
from gnn import MetapathEncoder, NeighbourEmbedding, default_metapaths, propagate

PRODUCT = "product"
# Rows of propagated features encoded per pass when embedding every product (~256 MiB float32).
ENCODE_CHUNK_BYTES = 256 * 2**20
# Links to small closed vocabularies that get learnable embeddings (averaged onto products).
VOCAB_EDGES = (("product", "made_by", "brand"), ("product", "in_category", "category"))


class GatedFusion(nn.Module):
    """``z ⊙ W·text + (1 − z) ⊙ graph (+ id)`` with an element-wise gate ``z`` computed from
    both views, so each product chooses how much to trust its graph neighbourhood."""

    def __init__(self, text_dim: int, dim: int) -> None:
        super().__init__()
        self.text = nn.Linear(text_dim, dim)
        self.gate = nn.Linear(2 * dim, dim)

    def forward(self, text: Tensor, graph: Tensor, ids: Tensor | None = None) -> Tensor:
        t = self.text(text)
        z = torch.sigmoid(self.gate(torch.cat([t, graph], dim=-1)))
        out = z * t + (1 - z) * graph
        return out if ids is None else out + ids


class FusedModel(nn.Module):
    """Scorer over one graph (the training graph of a split) and its product text vectors."""

    def __init__(self, graph: HeteroData, text: Tensor, config: FusedConfig) -> None:
        super().__init__()
        num_products = graph[PRODUCT].num_nodes
        if text.shape[0] != num_products:
            raise ValueError(f"text vectors {tuple(text.shape)} != {num_products} products")
        self.config = config
        self.register_buffer("text", F.normalize(text.float(), dim=-1), persistent=False)
        edges = message_edges(graph, config.use_interactions)
        self.edge_types = list(edges)
        for et, ei in edges.items():  # buffers, so they follow the model across devices
            self.register_buffer(_key(et), ei, persistent=False)
        self.num_nodes = {t: graph[t].num_nodes for t in node_types(edges)}
        self.metapaths = default_metapaths(self.edge_types, PRODUCT)
        d = config.dim
        self.encoder = MetapathEncoder(len(self.metapaths), text.shape[1], d, config.dropout)
        self.vocab = nn.ModuleDict(
            {
                et[1]: NeighbourEmbedding(self.num_nodes[et[2]], d)
                for et in self.edge_types
                if et in VOCAB_EDGES
            }
        )
        self.fusion = GatedFusion(text.shape[1], d)
        self.item_ids = nn.Embedding(num_products, d) if config.item_id_embedding else None
        if self.item_ids is not None:
            nn.init.normal_(self.item_ids.weight, std=0.01)
        # log(1 + training interactions) per product, for the popularity penalty (recommend).
        self.register_buffer("log_popularity", log_popularity(graph), persistent=False)
        if config.task != "related":  # recommend, rank: users from their history
            # Position logits, most recent first; start close to "mostly the last item".
            self.recency = nn.Parameter(-0.5 * torch.arange(config.max_history, dtype=torch.float))
            self.user_proj = nn.Linear(d, d)
        else:
            self.text_scale = nn.Parameter(torch.tensor(10.0))
        self.histories: dict[str, Tensor] = {}  # stage -> [num_users, max_history], by fit
        self._feats: Tensor | None = None  # metapath features of the model's own graph
        self._items: Tensor | None = None  # item embeddings cached between eval-mode queries
        self.progress: Progress | None = None  # hears about propagation (set while training)

    @property
    def edges(self) -> dict[tuple[str, str, str], Tensor]:
        return {et: getattr(self, _key(et)) for et in self.edge_types}

    def train(self, mode: bool = True) -> FusedModel:
        self._items = None
        # Training builds its own graphs' features; the cached one of the model's graph (for
        # validation) stays only while both fit the memory budget.
        feats = self._feats
        if mode and feats is not None and 2 * feats.nbytes > self.config.memory_budget * GIB:
            self._feats = None
        return super().train(mode)

    def _apply(self, fn, recurse=True):  # noqa: ANN001 - device moves invalidate the caches
        self._feats = self._items = None
        return super()._apply(fn, recurse)

    # -- item side ---------------------------------------------------------------------------
    def propagate(self, edges: dict | None = None) -> Tensor:
        """Metapath features of every product over `edges` (default: the model's graph, cached),
        stored within `config.memory_budget` (`fusion.model.features`)."""
        if edges is None and self._feats is not None:
            return self._feats
        n, f = self.text.shape
        out = feature_matrix(
            n, (1 + len(self.metapaths)) * f, self.config.memory_budget, self.text.device
        )
        report = partial(self.progress, "propagating") if self.progress else None
        feats = propagate(
            self.text,
            self.edges if edges is None else edges,
            self.num_nodes,
            self.metapaths,
            out,
            report,
        )
        if edges is None:
            self._feats = feats
        return feats

    def item_embeddings(
        self, edges: dict | None = None, feats: Tensor | None = None, index: Tensor | None = None
    ) -> Tensor:
        """Fused product embeddings ``[num_products, dim]`` over `edges` (default: the graph
        the model was built on); `feats` = `propagate(edges)` when the caller already has it.
        With `index`, only those products' rows (in that order): a sampled-softmax step then
        costs O(batch), not O(products)."""
        feats = self.propagate(edges) if feats is None else feats
        edges = self.edges if edges is None else edges
        text, ids = self.text, None if self.item_ids is None else self.item_ids.weight
        if index is not None:
            feats, text = feats[index], text[index]
            ids = None if ids is None else ids[index]
        rows = max(1, ENCODE_CHUNK_BYTES // (4 * feats.shape[1]))
        graph = torch.cat([self.encoder(part) for part in feats.split(rows)])
        n = self.num_nodes[PRODUCT]
        for et in self.edge_types:
            if et[1] in self.vocab:
                vocab = self.vocab[et[1]](edges[et], n)  # a cheap bag over small vocabularies
                graph = graph + (vocab if index is None else vocab[index])
        return self.fusion(text, graph, ids)

    @torch.no_grad()
    def embed_text_only(self, text: Tensor) -> Tensor:
        """Fused embeddings of products known by their text alone (no edges, no id): the
        inductive path for free-text queries and products the graph cannot place."""
        text = F.normalize(text.float().to(self.text.device), dim=-1)
        feats = torch.cat([text, text.new_zeros(len(text), len(self.metapaths) * text.shape[1])], 1)
        return self.fusion(text, self.encoder(feats))

    # -- query side --------------------------------------------------------------------------
    def encode_history(self, items: Tensor, hist: Tensor) -> Tensor:
        """User vectors from right-aligned histories ``[B, L]`` (most recent last, -1 = pad)."""
        hist = hist[:, -self.config.max_history :].flip(1)  # most recent first
        mask = hist >= 0
        w = self.recency[: hist.shape[1]].expand_as(hist).masked_fill(~mask, float("-inf"))
        w = torch.softmax(w, dim=1).nan_to_num(0.0)  # empty history -> zero vector
        pooled = (w.unsqueeze(-1) * items[hist.clamp(min=0)]).sum(1)
        return pooled + self.user_proj(pooled)

    def scores(
        self,
        items: Tensor,
        query: Tensor,
        candidates: Tensor | None = None,
        text: Tensor | None = None,
    ) -> Tensor:
        """Scores ``[B, C]`` of queries against `candidates` (default: every row of `items`).
        `query` is a history matrix (recommend) or product rows (related); `text` holds the
        text vectors of the same rows as `items` (default: every product's)."""
        cand = items if candidates is None else items[candidates]
        if self.config.task != "related":
            return self.encode_history(items, query) @ cand.T
        text = self.text if text is None else text
        cand_text = text if candidates is None else text[candidates]
        return self.text_scale * (text[query] @ cand_text.T) + items[query] @ cand.T

    # -- scorer contract ---------------------------------------------------------------------
    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        """The training loss (what `DistributedDataParallel` calls)."""
        return self.calculate_loss(batch)

    def calculate_loss(self, batch: dict[str, Tensor]) -> Tensor:
        """Softmax cross-entropy of `batch["target"]` given `batch["query"]` (history matrix or
        source products); `batch["edges"]` (and its `feats` = `propagate(edges)`) optionally
        override the message-passing graph."""
        edges, feats = batch.get("edges"), batch.get("feats")
        query, target = batch["query"], batch["target"]
        k = self.config.negatives(self.num_nodes[PRODUCT])
        if k == 0:
            return F.cross_entropy(self.scores(self.item_embeddings(edges, feats), query), target)
        # Sampled softmax: the batch's targets are each other's negatives, plus k random ones;
        # only the products the batch touches are embedded, in local row numbers.
        rand = torch.randint(0, self.num_nodes[PRODUCT], (k,), device=target.device)
        cand, label = torch.unique(torch.cat([target, rand]), return_inverse=True)
        rows = torch.unique(torch.cat([query[query >= 0], cand]))
        local = torch.where(query >= 0, torch.searchsorted(rows, query.clamp(min=0)), -1)
        items = self.item_embeddings(edges, feats, index=rows)
        scores = self.scores(items, local, torch.searchsorted(rows, cand), self.text[rows])
        return F.cross_entropy(scores, label[: len(target)])

    @torch.no_grad()
    def full_sort_predict(self, query_idx: Tensor, stage: str = "test") -> Tensor:
        """``FloatTensor[B, num_products]``: scores of every product for users (recommend; from
        their history before `stage`'s target) or for source products (related)."""
        if self._items is None or self.training:
            self._items = self.item_embeddings()
        items = self._items
        query = query_idx.to(items.device)
        if self.config.task != "related":
            if stage not in self.histories:
                raise RuntimeError(f"no {stage!r} user histories: call fit() or use_histories()")
            query = self.histories[stage][query]
        return self.ranking_scores(items, query)

    def ranking_scores(self, items: Tensor, query: Tensor) -> Tensor:
        """`scores` of every product as answers are ranked: for recommendations less the
        popularity penalty (`FusedConfig.popularity_penalty`) of each product."""
        scores = self.scores(items, query).float()
        penalty = self.config.popularity_penalty if self.config.task == "recommend" else None
        return scores - penalty * self.log_popularity if penalty else scores

    def use_histories(self, histories: dict[str, Tensor]) -> None:
        """Per stage, the ``[num_users, L]`` right-aligned history matrix (-1 = padding) that
        recommendation queries are encoded from."""
        self.histories = histories


def message_edges(graph: HeteroData, use_interactions: bool) -> dict:
    """Edge types used for message passing: every relation, users only when asked."""
    return {
        et: graph[et].edge_index
        for et in graph.edge_types
        if use_interactions or "user" not in (et[0], et[2])
    }


def log_popularity(graph: HeteroData) -> Tensor:
    """log(1 + interaction events) of every product in `graph` (zeros without interactions)."""
    n = graph[PRODUCT].num_nodes
    et = ("user", "interacted", PRODUCT)
    if et not in graph.edge_types:
        return torch.zeros(n)
    return torch.log1p(torch.bincount(graph[et].edge_index[1], minlength=n).float())


def _key(edge_type: tuple[str, str, str]) -> str:
    return "edge__" + "__".join(edge_type)


def node_types(edges: dict) -> list[str]:
    return sorted({t for et in edges for t in (et[0], et[2])} | {PRODUCT})
