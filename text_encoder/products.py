"""Catalogue-level encoding: product fields → vectors, through the shared cache."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from text_encoder.cache import CacheStats, encode_with_cache
from text_encoder.encoder import Progress, TextEncoder
from text_encoder.template import (
    TextTemplate,
    UnreadableTextError,
    has_descriptive_text,
    render_product_text,
)


@dataclass(frozen=True)
class EncodeSummary:
    cache: CacheStats
    empty_text: int  # products with no title/description (vector from brand/category only)

    def __str__(self) -> str:
        c = self.cache
        note = f"; cache rebuilt: {c.rebuilt_reason}" if c.rebuilt_reason else ""
        return (
            f"{c.total} products: {c.encoded} encoded, {c.from_cache} from cache, "
            f"{self.empty_text} with empty text; {c.items_per_s:,.0f} items/s{note}"
        )


@dataclass(frozen=True)
class ProductVectors:
    """Text vectors in `node_id` order, with the encoder that made them."""

    node_id: list[str]
    vectors: torch.Tensor  # [N, dim] float32, L2-normalised
    model_id: str
    fingerprint: str

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(
            {
                "node_id": self.node_id,
                "vectors": self.vectors,
                "model_id": self.model_id,
                "fingerprint": self.fingerprint,
            },
            tmp,
        )
        os.replace(tmp, path)  # atomic: training never reads a half-written file

    @classmethod
    def load(cls, path: str | Path) -> ProductVectors:
        return cls(**torch.load(path, weights_only=True))


def encode_products(
    encoder: TextEncoder,
    node_ids: Sequence[str],
    text_fields: Sequence[Mapping[str, object]],
    cache_dir: str | Path,
    template: TextTemplate | None = None,
    batch_size: int | None = None,
    progress: Progress = True,
) -> tuple[ProductVectors, EncodeSummary]:
    """Render, encode (through the cache) and package the vectors of every product."""
    if len(node_ids) != len(text_fields):
        raise ValueError(f"{len(node_ids)} product ids but {len(text_fields)} text_fields")
    texts, empty = [], 0
    for node_id, fields in zip(node_ids, text_fields, strict=True):
        try:
            texts.append(render_product_text(fields, template))
            empty += not has_descriptive_text(fields)
        except UnreadableTextError as exc:
            raise UnreadableTextError(f"product {node_id!r}: {exc}") from exc
    vectors, stats = encode_with_cache(encoder, texts, cache_dir, batch_size, progress)
    result = ProductVectors(list(node_ids), vectors, encoder.model_id, encoder.fingerprint)
    return result, EncodeSummary(stats, empty)
