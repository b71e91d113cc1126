"""The multi-objective ranking model (task `rank`): the fused model's user and product vectors
feed `MultiObjectiveHeads`; trained jointly with a weighted loss, scored per objective, and
combined at query time by business weights: score = Σ α_k · f_k(user, product)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData

from fusion.config import FusedConfig
from fusion.data.events import CART, HIGH_RATING, PURCHASE, product_prices
from fusion.model.fused import PRODUCT, FusedModel
from fusion.model.heads import MultiObjectiveHeads, binary_cross_entropy, log_probabilities
from kg.errors import InvalidArgumentError


class RankModel(FusedModel):
    """`FusedModel` (recommend-style user encoder) + per-objective heads."""

    def __init__(self, graph: HeteroData, text: Tensor, config: FusedConfig) -> None:
        super().__init__(graph, text, config)
        self.heads = MultiObjectiveHeads(config.dim, config.experts)
        prices = product_prices(graph)
        self.register_buffer("price", prices.value.nan_to_num(0.0), persistent=False)
        self.register_buffer("price_imputed", prices.imputed, persistent=False)
        self.has_prices = prices.known
        known = prices.value[~prices.imputed & ~prices.value.isnan()]
        # Revenue enters the weighted sum in units of the median known price (saved: the unit
        # stays what training used when the catalogue's prices move).
        self.register_buffer("price_scale", known.median() if known.numel() else torch.tensor(1.0))

    @property
    def objectives(self) -> list[str]:
        """What this model scores: its trained objectives, and revenue where it has purchases
        and prices."""
        trained = list(self.config.objectives)
        if "purchase" in trained and self.has_prices and "revenue" not in trained:
            trained.append("revenue")
        if "revenue" in trained and not self.has_prices:
            trained.remove("revenue")
        return trained

    @property
    def default_weights(self) -> dict[str, float]:
        """The query-time weights when none are given: the training loss weights."""
        return {k: v for k, v in self.config.objectives.items() if k in self.objectives}

    def check_weights(self, weights: Mapping[str, float]) -> None:
        """Refuse weights on an objective this model does not score."""
        for name in weights:
            if name not in self.objectives:
                raise InvalidArgumentError(
                    f"weights: this model does not score {name!r} (it scores "
                    f"{', '.join(self.objectives)})"
                )

    # -- scores ------------------------------------------------------------------------------
    def objective_scores(self, items: Tensor, hist: Tensor) -> dict[str, Tensor]:
        """Per objective, ``[B, N]`` scores of every product for right-aligned histories
        `hist`: probabilities, and revenue = P(purchase) · price (imputed prices included)."""
        users = self.encode_history(items, hist)
        log_p = log_probabilities(self.heads(users, items), self.config.conversion)
        out = {name: log_p[name].exp() for name in self.objectives if name != "revenue"}
        if "revenue" in self.objectives:
            out["revenue"] = log_p["purchase"].exp() * self.price
        return out

    def combine(self, scores: Mapping[str, Tensor], weights: Mapping[str, float]) -> Tensor:
        """Σ weight · score over `weights` (revenue in units of the median price)."""
        self.check_weights(weights)
        total = None
        for name, weight in weights.items():
            if weight:
                term = scores[name] / self.price_scale if name == "revenue" else scores[name]
                total = weight * term if total is None else total + weight * term
        if total is None:
            raise InvalidArgumentError("weights: every weight is zero")
        return total

    @torch.no_grad()
    def full_sort_objectives(self, query_idx: Tensor, stage: str = "test") -> dict[str, Tensor]:
        """`objective_scores` of users `query_idx` from their history before `stage`."""
        if self._items is None or self.training:
            self._items = self.item_embeddings()
        hist = self.histories[stage][query_idx.to(self._items.device)]
        return self.objective_scores(self._items, hist)

    @torch.no_grad()
    def full_sort_predict(self, query_idx: Tensor, stage: str = "test") -> Tensor:
        """The default-weighted score of every product (the scorer contract)."""
        scores = self.full_sort_objectives(query_idx, stage)
        return self.combine(scores, self.default_weights).float()

    # -- training ----------------------------------------------------------------------------
    def calculate_loss(self, batch: dict[str, Tensor]) -> Tensor:
        """Σ_k α_k · (BCE of objective k's target rows + BCE of random products as negatives),
        and for clicks also the softmax cross-entropy of the next product over all products
        on the shared score (what the single-objective model learns: it shapes the ranking,
        the BCE terms the probabilities).
        A batch row is one training event: `query` (the user's earlier items), `target` (its
        product), `kind` and `rating`. Conversion heads under ``viewed_only`` see the event
        rows only; revenue weighs purchase rows by price (imputed prices left out)."""
        items = self.item_embeddings(batch.get("edges"), batch.get("feats"))
        users = self.encode_history(items, batch["query"])
        target, kind, rating = batch["target"], batch["kind"], batch["rating"]
        neg = torch.randint(0, self.num_nodes[PRODUCT], (self.config.rank_negatives,))
        # With a click objective the click head learns from clicks alone (ESMM's products
        # pass it no gradient): the conversion losses then cannot push down the ranking of
        # what was viewed and not bought.
        fixed = "click" in self.config.objectives
        pos_logits = self.heads.pairs(users, items[target])
        neg_items = items[neg.to(items.device)]
        neg_logits = self.heads(users, neg_items)
        if "rating" in self.config.objectives:
            # Satisfaction re-ranks what the interaction heads find: its head learns on the
            # shared vectors without moving them (trained through them, it cost Magazine's
            # interaction ranking more than it added).
            pos_logits["rating"] = self.heads.pairs(users.detach(), items[target].detach())[
                "rating"
            ]
            neg_logits["rating"] = self.heads(users.detach(), neg_items.detach())["rating"]
        pos = log_probabilities(pos_logits, self.config.conversion, fixed)
        negative = log_probabilities(neg_logits, "entire_space", fixed)
        labels = {
            "click": torch.ones_like(rating),
            "cart": (kind == CART).float(),
            "purchase": (kind == PURCHASE).float(),
            "rating": (rating >= HIGH_RATING).float(),
        }
        total = items.new_zeros(())
        for name, alpha in self.config.objectives.items():
            head = "purchase" if name == "revenue" else name
            weight = torch.ones_like(rating)
            if name == "rating":
                weight = (~rating.isnan()).float()
            elif name == "revenue":
                weight = (self.price[target] / self.price_scale).masked_fill(
                    self.price_imputed[target], 0.0
                )
            rows = binary_cross_entropy(pos[head], labels[head])
            loss = (weight * rows).sum() / weight.sum().clamp(min=math.ulp(1.0))
            if head == "click":  # the ranking of the next product, over the whole catalogue
                loss = loss + F.cross_entropy(users @ items.T, target)
            if head == "click" or self.config.conversion == "entire_space":
                log_p = negative[head]
                loss = loss + binary_cross_entropy(log_p, torch.zeros_like(log_p)).mean()
            total = total + alpha * loss
        return total


def build_model(graph: HeteroData, text: Tensor, config: FusedConfig) -> FusedModel:
    """The model class a config asks for: `RankModel` for task rank, else `FusedModel`."""
    return (RankModel if config.task == "rank" else FusedModel)(graph, text, config)
