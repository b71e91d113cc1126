"""Product text → L2-normalised vectors with a Hugging Face model (offline default), cached."""

from text_encoder.cache import CacheInvalidError, CacheStats, EmbeddingCache, encode_with_cache
from text_encoder.device import resolve_device
from text_encoder.encoder import TextEncoder
from text_encoder.model import DEFAULT_MODEL_ID, ModelNotFoundError
from text_encoder.products import (
    EncodeSummary,
    ProductVectors,
    encode_products,
)
from text_encoder.template import (
    DEFAULT_TEMPLATE,
    TextTemplate,
    UnreadableTextError,
    clean_text,
    has_descriptive_text,
    render_product_text,
)

__all__ = [
    "DEFAULT_MODEL_ID",
    "DEFAULT_TEMPLATE",
    "CacheInvalidError",
    "CacheStats",
    "EmbeddingCache",
    "EncodeSummary",
    "ModelNotFoundError",
    "ProductVectors",
    "TextEncoder",
    "TextTemplate",
    "UnreadableTextError",
    "clean_text",
    "encode_products",
    "encode_with_cache",
    "has_descriptive_text",
    "render_product_text",
    "resolve_device",
]
