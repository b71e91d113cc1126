"""Answering queries — related items, recommendations, text search — with filters and
knowledge-graph explanations. This is the Python API the CLI and the REST service wrap.

The model side is the small `QueryModel` protocol below
(`fusion.serving.query_model.load_query_model` binds a saved checkpoint to it); the graph side
is a `kg.stores.Store`, which supplies titles, filter attributes, user histories, products added
after training, and explanation paths.
"""

from __future__ import annotations

import math
from collections import ChainMap
from collections.abc import Iterator, Mapping
from functools import cached_property
from pathlib import Path as FsPath
from typing import Protocol, cast

import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field, model_validator
from torch import Tensor

from fusion.config import check_weights, parse_weights
from fusion.model.checkpoint import read_meta
from fusion.serving.ann import AnnIndex
from fusion.serving.query_model import load_query_model
from fusion.serving.rerank import ProductDistance, diversify, label_sets, pool_size
from kg.errors import InvalidArgumentError, NotFoundError
from kg.paths import Neo4jView, Path, category_name, kg_view, text_paths
from kg.reasons import ReasonIndex
from kg.schema import CATEGORY_PATH_SEP, Product
from kg.stores import Store, open_store
from text_encoder.template import render_product_text

# Bound on how far bfloat16 rounding moves the cosine of two unit vectors (`_nearest`): 2⁻⁸
# relative per factor and on the result (torch accumulates bf16 products in float32); 4·2⁻⁸
# leaves a margin.
_BF16_ERROR = 4 * 2**-8
# Width of the table `Recommender.precompute_neighbours` builds: the REST API's largest k.
NEIGHBOURS = 100
# Candidates an ANN search fetches: at least NEIGHBOURS, and ANN_OVERFETCH × k under filters.
ANN_OVERFETCH = 10
# A filter passing fewer than 1/SELECTIVE of the products is answered by scoring those alone.
SELECTIVE = 16


class QueryModel(Protocol):
    """What a trained model must offer to be queried (and published)."""

    product_ids: list[str]  # row order of every product tensor below
    user_ids: list[str]  # row order of `user_scores` queries

    def product_vectors(self) -> Tensor:
        """[N, d] fused product vectors; related = cosine between them."""
        ...

    def user_scores(self, user_idx: Tensor) -> Tensor:
        """[B, N] recommendation scores of every product for users `user_idx` (LongTensor[B])."""
        ...

    def text_to_vectors(self, texts: list[str]) -> Tensor:
        """[B, d] vectors in the product-vector space for query texts or new products' texts."""
        ...


class MultiObjectiveModel(QueryModel, Protocol):
    """A `rank` model: per-objective scores, combined by weights at query time."""

    objectives: list[str]  # what it scores (empty: a single-objective model)
    default_weights: dict[str, float]  # the training loss weights

    def objective_scores(self, user_idx: Tensor) -> dict[str, Tensor]:
        """Per objective, [B, N] scores of every product for users `user_idx`."""
        ...

    def combine(self, scores: dict[str, Tensor], weights: Mapping[str, float]) -> Tensor:
        """Σ weight · score; an objective it does not score is an InvalidArgumentError."""
        ...


class UnknownIdError(NotFoundError):
    """A product or user id that neither the model nor the graph knows."""

    def __init__(self, kind: str, id_: str, why: str = "not in the model nor in the graph") -> None:
        self.kind, self.id = kind, id_
        super().__init__(f"unknown {kind} {id_!r}: {why}")


class Filters(BaseModel):
    """Constraints on answers; products with an unknown price fail any price bound."""

    brand: str | None = None  # brand id, case-insensitive
    category: str | None = None  # category id, path prefix or name, case-insensitive
    min_price: float | None = Field(default=None, ge=0)
    max_price: float | None = Field(default=None, ge=0)
    in_catalogue: bool = False  # only products in the catalogue (no referenced-only stubs)

    @model_validator(mode="after")
    def _price_range(self) -> Filters:
        lo, hi = self.min_price, self.max_price
        if lo is not None and hi is not None and lo > hi:
            raise InvalidArgumentError(f"min_price {lo} > max_price {hi}")
        return self


class Result(BaseModel):
    product_id: str
    title: str
    score: float
    explanations: list[Path] = Field(default_factory=list)
    # A `rank` model's recommendation: the product's score per objective (probabilities;
    # revenue = P(purchase) · price); `score` is their weighted sum.
    objectives: dict[str, float] | None = None


class FilterIndex:
    """Per-product filter attributes as tensors and inverted lists, built once."""

    def __init__(self, ids: list[str], products: dict[str, Product]) -> None:
        rows = [products.get(pid) for pid in ids]
        nan = float("nan")
        self.price = torch.tensor([p.price if p and p.price is not None else nan for p in rows])
        self.in_catalogue = torch.tensor([bool(p and p.in_catalogue) for p in rows])
        brands: dict[str, list[int]] = {}
        categories: dict[str, set[int]] = {}
        for i, p in enumerate(rows):
            if p is None:
                continue
            if p.brand:
                brands.setdefault(p.brand.casefold(), []).append(i)
            for key in {k for cat in p.categories for k in _category_keys(cat)}:
                categories.setdefault(key, set()).add(i)
        self._brands = {k: torch.tensor(v) for k, v in brands.items()}
        self._categories = {k: torch.tensor(sorted(v)) for k, v in categories.items()}

    def mask(self, f: Filters) -> Tensor | None:
        """BoolTensor[N] of products passing `f`; None when nothing is filtered."""
        mask: Tensor | None = None
        if f.in_catalogue:
            mask = self.in_catalogue.clone()
        for value, members in ((f.brand, self._brands), (f.category, self._categories)):
            if value is not None:
                hit = torch.zeros_like(self.in_catalogue)
                idx = members.get(value.casefold())
                if idx is not None:
                    hit[idx] = True
                mask = hit if mask is None else mask & hit
        for bound, ok in ((f.min_price, torch.ge), (f.max_price, torch.le)):
            if bound is not None:
                hit = ok(self.price, bound)  # NaN (unknown price) compares False
                mask = hit if mask is None else mask & hit
        return mask


def _category_keys(category_id: str) -> list[str]:
    # A product in "A > B > C" matches "A > B > C", "A > B", "A" and the names "B", "C".
    levels = category_id.split(CATEGORY_PATH_SEP)
    prefixes = [CATEGORY_PATH_SEP.join(levels[: i + 1]) for i in range(len(levels))]
    return [k.casefold() for k in (*prefixes, *levels, category_name(category_id))]


class Recommender:
    """A trained model bound to a graph store; answers are ranked by one matmul + top-k."""

    def __init__(self, model: QueryModel, store: Store, name: str = "kgrec") -> None:
        self.model, self.store, self.name = model, store, name
        self.product_ids = list(model.product_ids)
        self._product_idx = {pid: i for i, pid in enumerate(self.product_ids)}
        self._user_idx = {uid: i for i, uid in enumerate(model.user_ids)}
        with torch.no_grad():
            vectors = model.product_vectors().detach().float()
        # Normalised here (whatever the model returns) so scores are cosines, as in Neo4j.
        self.vectors = F.normalize(vectors, dim=-1).contiguous()
        self._shortlist_vectors = self.vectors.bfloat16()  # see `_nearest`
        self.products = store.get_products(self.product_ids)
        self.filters = FilterIndex(self.product_ids, self.products)
        self.view = kg_view(store)
        self._neighbours: tuple[Tensor, Tensor] | None = None  # see `precompute_neighbours`
        self._distance: ProductDistance | None = None  # built on the first diversified query
        self.ann: AnnIndex | None = None  # see `use_ann`

    @classmethod
    def load(cls, checkpoint_dir: str | FsPath, store: Store | str | None = None) -> Recommender:
        """The model saved in `checkpoint_dir` over `store`, a Store or a store URI (default:
        the local Neo4j server)."""
        read_meta(checkpoint_dir)  # first: a missing checkpoint opens no store
        if not isinstance(store, Store):
            store = open_store(store)
        try:
            model = load_query_model(checkpoint_dir, store)
        except BaseException:
            store.close()
            raise
        return cls(model, store, name=FsPath(checkpoint_dir).name)

    @cached_property
    def reasons(self) -> ReasonIndex:
        """Word and category counts over the products, built on the first explained answer."""
        return ReasonIndex(self.products.values())

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Recommender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def precompute_neighbours(self, width: int = NEIGHBOURS) -> None:
        """Rank every product's `width` nearest products once (exact cosines, O(N²·d) — a few
        seconds for 10⁴ products), so that `related` with k <= `width` is a table lookup, and
        stays one under filters while k of the `width` pass them. For a long-running server;
        a one-off query does not pay for it."""
        scores, idx = zip(*((s, i) for _, s, i in top_related(self.vectors, width)), strict=True)
        self._neighbours = torch.cat(scores), torch.cat(idx)

    def use_ann(self, index: AnnIndex) -> None:
        """Answer `related` from an approximate index of `self.vectors` (large catalogues, where
        the neighbour table costs too much and a scan takes milliseconds): its candidates are
        re-scored exactly, so scores are true cosines; recall@10 ≥ 0.98 against the scan."""
        if index.size != len(self.product_ids):
            raise ValueError(f"ANN index of {index.size} products for {len(self.product_ids)}")
        self.ann = index

    def related(
        self,
        product_id: str,
        k: int = 10,
        filters: Filters | None = None,
        explain: bool = True,
        diversity: float = 0.0,
    ) -> list[Result]:
        """Products most similar to `product_id`; a product added to the graph after training is
        placed by its text. `diversity` λ in [0, 1] trades similarity for variety of
        categories among the answers (`fusion.serving.rerank`; 0: none)."""
        own, pool = self._product_idx.get(product_id), pool_size(k, diversity)
        hits = None if own is None else self._precomputed(own, pool, filters)
        if hits is None:
            query = self._product_vector(product_id)
            exclude = [] if own is None else [own]
            hits = self._approximate(query, pool, filters, exclude)
            if hits is None:
                hits = self._nearest(query, pool, filters, exclude)
        hits = self._diversified(hits, k, diversity)
        paths = {}
        if explain:
            results = [pid for pid, _ in hits]
            products = self._with(product_id)
            paths = self.view.explain([product_id], results, None, products, self.reasons)
        return self._results(hits, paths)

    def recommend(
        self,
        user_id: str,
        k: int = 10,
        filters: Filters | None = None,
        explain: bool = True,
        diversity: float = 0.0,
        weights: Mapping[str, float] | str | None = None,
    ) -> list[Result]:
        """Products for `user_id`, excluding those the user already has in the graph;
        `diversity` as for `related`. A `rank` model ranks by Σ weight · objective score,
        `weights` ({objective: weight} or "purchase=1,revenue=0.3"; default: its training
        weights), and returns each answer's per-objective scores."""
        pool = pool_size(k, diversity)
        weights = self._weights(weights)
        items = self.view.user_items(user_id)
        known = [self._product_idx[p] for p in items or [] if p in self._product_idx]
        user = self._user_idx.get(user_id)
        per_objective: dict[str, Tensor] = {}
        if user is not None:
            with torch.no_grad():
                if weights is None:
                    scores = self.model.user_scores(torch.tensor([user]))[0]
                else:
                    model = cast(MultiObjectiveModel, self.model)
                    per_objective = model.objective_scores(torch.tensor([user]))
                    scores = model.combine(per_objective, weights)[0]
            hits = self._top(self._masked(scores, pool, filters, known), pool)
        elif known:  # a user new to the model: their items' centroid
            centroid = F.normalize(self.vectors[known].mean(0), dim=0)
            hits = self._nearest(centroid, pool, filters, known)
        elif items is None:
            raise UnknownIdError("user", user_id)
        else:
            raise UnknownIdError("user", user_id, "none of the user's products is in the model")
        hits = self._diversified(hits, k, diversity)
        paths = {}
        if explain and items:
            results = [pid for pid, _ in hits]
            paths = self.view.explain(items, results, user_id, self.products, self.reasons)
        answers = self._results(hits, paths)
        for answer in answers if per_objective else ():
            row = self._product_idx[answer.product_id]
            answer.objectives = {name: s[0, row].item() for name, s in per_objective.items()}
        return answers

    @property
    def objectives(self) -> list[str]:
        """The objectives the model scores (empty unless it is a `rank` model)."""
        return list(getattr(self.model, "objectives", []))

    def _weights(self, weights: Mapping[str, float] | str | None) -> dict[str, float] | None:
        """Query-time weights checked (None: a single-objective model); a rank model's
        defaults when none are given."""
        if not self.objectives:
            if weights:
                raise InvalidArgumentError(
                    "weights need a multi-objective model (kgrec train --task rank); this one "
                    "has a single score"
                )
            return None
        if weights is None:
            return dict(cast(MultiObjectiveModel, self.model).default_weights)
        if isinstance(weights, str):
            weights = parse_weights(weights)
        else:
            check_weights(weights)
        unknown = sorted(set(weights) - set(self.objectives))
        if unknown:
            raise InvalidArgumentError(
                f"weights: this model does not score {', '.join(unknown)} (it scores "
                f"{', '.join(self.objectives)})"
            )
        return dict(weights)

    def search(
        self, text: str, k: int = 10, filters: Filters | None = None, explain: bool = True
    ) -> list[Result]:
        """Products matching a free-text query."""
        if not text.strip():
            raise InvalidArgumentError("search text is empty")
        with torch.no_grad():
            query = F.normalize(self.model.text_to_vectors([text])[0].float(), dim=0)
        hits = self._nearest(query, k, filters, [])
        paths = {}
        if explain:
            paths = {
                pid: text_paths(text, self.products[pid]) for pid, _ in hits if pid in self.products
            }
        return self._results(hits, paths)

    def _with(self, product_id: str) -> Mapping[str, Product]:
        """The known products, plus `product_id` read from the store when it is new since
        loading (its title and text then explain its answers too)."""
        if product_id in self.products:
            return self.products
        return ChainMap(self.products, self.store.get_products([product_id]))

    def knows(self, product_id: str) -> bool:
        """Whether the model has a vector for `product_id` (else `related` encodes its text)."""
        return product_id in self._product_idx

    @property
    def store_in_memory(self) -> bool:
        """Whether explanations and user histories come from memory, not a Neo4j round trip."""
        return not isinstance(self.view, Neo4jView)

    def _product_vector(self, product_id: str) -> Tensor:
        idx = self._product_idx.get(product_id)
        if idx is not None:
            return self.vectors[idx]
        product = self.store.get_products([product_id]).get(product_id)
        if product is None:
            raise UnknownIdError("product", product_id)
        text = render_product_text(
            {
                "title": product.title,
                "description": product.description,
                "brand": product.brand,
                "categories": product.categories,
            }
        )
        if not text:
            raise UnknownIdError("product", product_id, "not in the model and has no text")
        with torch.no_grad():
            return F.normalize(self.model.text_to_vectors([text])[0].float(), dim=0)

    def _precomputed(
        self, row: int, k: int, filters: Filters | None
    ) -> list[tuple[str, float]] | None:
        """Product `row`'s top-k from the neighbour table, or None when the table cannot answer
        (none built, k beyond its width, too few of its products pass `filters`). The filtered
        table is the exact filtered top-k: any passing product outside it scores lower."""
        if self._neighbours is None:
            return None
        _check_k(k)
        scores, idx = self._neighbours[0][row], self._neighbours[1][row]
        complete = idx.numel() == len(self.product_ids) - 1  # the table holds every product
        mask = self.filters.mask(filters) if filters else None
        if mask is not None:
            keep = mask[idx]
            scores, idx = scores[keep], idx[keep]
        if idx.numel() < k and not complete:
            return None
        return [
            (self.product_ids[i], s)
            for s, i in zip(scores[:k].tolist(), idx[:k].tolist(), strict=True)
        ]

    def _approximate(
        self, query: Tensor, k: int, filters: Filters | None, exclude: list[int]
    ) -> list[tuple[str, float]] | None:
        """The top-k of the ANN index's candidates by exact cosine, or None when there is no
        index or fewer than k candidates pass `filters` (then the scan answers)."""
        if self.ann is None:
            return None
        _check_k(k)
        fetch = max(NEIGHBOURS, ANN_OVERFETCH * k if filters else k) + len(exclude)
        rows = self.ann.search(query, fetch)
        mask = self.filters.mask(filters) if filters else None
        keep = torch.ones_like(rows, dtype=torch.bool) if mask is None else mask[rows]
        keep &= ~torch.isin(rows, torch.tensor(exclude, dtype=torch.long))
        rows = rows[keep]
        if rows.numel() < k:
            return None
        return self._top(self.vectors[rows] @ query, k, rows)

    def _nearest(
        self, query: Tensor, k: int, filters: Filters | None, exclude: list[int]
    ) -> list[tuple[str, float]]:
        """The top-k products by exact cosine with the unit vector `query`, in two passes.

        Scoring every product is memory-bound, so a bfloat16 pass (half the bytes) shortlists and
        exact float32 cosines rank the shortlist (~50 products): on Beauty (d=448) 0.7 ms of CPU
        instead of 2.0 for one float32 pass. With unit vectors, bf16 rounding moves a cosine by at
        most ~3·2⁻⁸ < _BF16_ERROR, so every true top-k product scores within 2·_BF16_ERROR of the
        k-th best approximate score.
        """
        mask = self._mask(k, filters, exclude)
        if mask is not None:
            passing = torch.nonzero(mask)[:, 0]
            if passing.numel() * SELECTIVE < mask.numel():  # few pass: score only those
                return self._top(self.vectors[passing] @ query, k, passing)
        approx = (self._shortlist_vectors @ query.bfloat16()).float()
        approx = approx if mask is None else approx.masked_fill(~mask, -math.inf)
        kth = torch.topk(approx, min(k, approx.shape[0])).values[-1]
        shortlist = torch.nonzero((approx >= kth - 2 * _BF16_ERROR) & (approx > -math.inf))[:, 0]
        return self._top(self.vectors[shortlist] @ query, k, shortlist)

    def _mask(self, k: int, filters: Filters | None, exclude: list[int]) -> Tensor | None:
        """BoolTensor[N] of the products passing `filters` and not in `exclude` (None: all);
        every ranking starts here, so `k` is checked here."""
        _check_k(k)
        mask = self.filters.mask(filters) if filters else None
        if exclude:
            mask = torch.ones_like(self.filters.in_catalogue) if mask is None else mask
            mask[exclude] = False
        return mask

    def _masked(
        self, scores: Tensor, k: int, filters: Filters | None, exclude: list[int]
    ) -> Tensor:
        """`scores` with products failing `filters` or in `exclude` set to -inf."""
        mask = self._mask(k, filters, exclude)
        return scores if mask is None else scores.masked_fill(~mask, -math.inf)

    def _top(self, scores: Tensor, k: int, rows: Tensor | None = None) -> list[tuple[str, float]]:
        """The k best finite `scores`; score i belongs to product `rows[i]` (default: i)."""
        values, idx = torch.topk(scores, min(k, scores.shape[0]))
        if rows is not None:
            idx = rows[idx]
        return [
            (self.product_ids[i], v)
            for v, i in zip(values.tolist(), idx.tolist(), strict=True)
            if v != -math.inf
        ]

    def _diversified(
        self, hits: list[tuple[str, float]], k: int, diversity: float
    ) -> list[tuple[str, float]]:
        """The k of `hits` (relevance-ranked) `diversify` picks; the first k when `diversity`
        is 0."""
        if diversity == 0 or len(hits) <= 1:
            return hits[:k]
        if self._distance is None:
            categories = label_sets([p.categories if p else () for p in self._rows()])
            self._distance = ProductDistance(self.vectors, categories)
        idx = torch.tensor([self._product_idx[pid] for pid, _ in hits])
        relevance = torch.tensor([score for _, score in hits])
        return [hits[i] for i in diversify(relevance, self._distance(idx), k, diversity)]

    def _rows(self) -> list[Product | None]:
        return [self.products.get(pid) for pid in self.product_ids]

    def _results(self, hits: list[tuple[str, float]], paths: dict[str, list[Path]]) -> list[Result]:
        return [
            Result(
                product_id=pid,
                title=_display_title(self.products.get(pid)),
                score=score,
                explanations=paths.get(pid, []),
            )
            for pid, score in hits
        ]


def _check_k(k: int) -> None:
    if k < 1:
        raise InvalidArgumentError(f"k must be at least 1, got {k}")


def top_related(vectors: Tensor, k: int, chunk: int = 1024) -> Iterator[tuple[int, Tensor, Tensor]]:
    """(start row, scores [B, k], indices [B, k]) per chunk of unit `vectors`: exact cosine
    top-k, each product itself excluded."""
    n = vectors.shape[0]
    k = min(k, n - 1)
    for start in range(0, n, chunk):
        block = vectors[start : start + chunk] @ vectors.T
        rows = torch.arange(block.shape[0])
        block[rows, rows + start] = float("-inf")
        scores, idx = torch.topk(block, k, dim=1)
        yield start, scores, idx


def _display_title(product: Product | None) -> str:
    return "" if product is None else product.display_title
