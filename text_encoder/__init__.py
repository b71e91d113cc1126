"""Product text → L2-normalised vectors with a Hugging Face model (offline default), cached.

Names load on first use (PEP 562): `text_encoder.errors` and `text_encoder.progress` are
imported by the CLI before it knows whether a command needs torch and transformers at all."""

from importlib import import_module
from typing import Any

_WHERE = {
    "CacheInvalidError": "cache",
    "CacheStats": "cache",
    "EmbeddingCache": "cache",
    "encode_with_cache": "cache",
    "resolve_device": "device",
    "TextEncoder": "encoder",
    "DEFAULT_MODEL_ID": "model",
    "ModelNotFoundError": "model",
    "EncodeSummary": "products",
    "ProductVectors": "products",
    "encode_products": "products",
    "DEFAULT_TEMPLATE": "template",
    "TextTemplate": "template",
    "UnreadableTextError": "template",
    "clean_text": "template",
    "has_descriptive_text": "template",
    "render_product_text": "template",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'text_encoder' has no attribute {name!r}")
    return getattr(import_module(f"text_encoder.{_WHERE[name]}"), name)
