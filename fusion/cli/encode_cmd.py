"""`kgrec encode`: product text from the store → text vectors where training finds them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fusion.cli.common import StoreUri, user_errors


def encode(
    store: StoreUri = None,
    text_model: Annotated[
        str | None,
        typer.Option(
            help="Hugging Face model id or local model directory (default: bundled "
            "all-MiniLM-L6-v2, works offline)."
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    out: Annotated[
        Path | None, typer.Option(help="Vectors file (default: artifacts/text/product_vectors.pt).")
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="Vector cache (default: $KGREC_CACHE/text_vectors, ~/.cache/kgrec/…)."),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Texts per batch (default: 32 on CPU, 128 on CUDA).")
    ] = None,
    text_fields: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated fields making a product's text, in order "
            "(default: title,brand,categories,description)."
        ),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Encode every product's text (reusing cached vectors) and write the vectors file."""
    # Imported here so other commands do not pay for torch/transformers at start-up.
    from kg.export import to_heterodata
    from kg.stores import open_store
    from text_encoder import (
        DEFAULT_VECTORS_PATH,
        TextEncoder,
        TextTemplate,
        default_cache_dir,
        encode_products,
    )

    template = (
        TextTemplate(fields=tuple(f.strip() for f in text_fields.split(",") if f.strip()))
        if text_fields
        else None
    )
    with user_errors():
        encoder = TextEncoder.from_pretrained(text_model, device=device)
        with open_store(store) as graph:
            product = to_heterodata(graph)["product"]
        vectors, summary = encode_products(
            encoder,
            product.node_id,
            product.text_fields,
            cache_dir or default_cache_dir(),
            template=template,
            batch_size=batch_size,
            progress=progress,
        )
    path = out or DEFAULT_VECTORS_PATH
    vectors.save(path)
    typer.echo(
        f"{summary}\nmodel {encoder.model_id} ({encoder.dim}-d, {encoder.device}); wrote {path}"
    )
