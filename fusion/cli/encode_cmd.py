"""`kgrec encode`: product text from the store → text vectors in the shared cache, where
`kgrec train` (same --text-model and --text-fields) finds them instead of encoding again."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fusion.cli.common import StoreUri, user_errors
from fusion.cli.train_cmd import Device, TextFields, TextModel, split_fields
from fusion.config import TrainOptions

DEFAULTS = TrainOptions()


def encode(
    store: StoreUri = None,
    text_model: TextModel = DEFAULTS.text_model,
    text_fields: TextFields = None,
    device: Device = DEFAULTS.device,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Texts per batch (default: 32 on CPU, 128 on CUDA).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Also write the vectors to this file (torch; ids, vectors, model)."),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Encode every product's text ahead of training (reusing cached vectors): training with
    the same --text-model and --text-fields then reads every vector from the cache."""
    # Imported here so other commands do not pay for torch/transformers at start-up.
    from fusion.data.graph import encode_product_text, text_template
    from kg.export import to_heterodata
    from kg.stores import open_store
    from text_encoder import TextEncoder

    with user_errors():
        template = text_template(split_fields(text_fields) if text_fields else None)
        encoder = TextEncoder.from_pretrained(text_model, device=device)
        with open_store(store) as graph:
            data = to_heterodata(graph)
        vectors, summary = encode_product_text(encoder, data, template, progress, batch_size)
        if out:
            vectors.save(out)
    fields = ",".join(template.fields)
    typer.echo(
        f"{summary}\nmodel {encoder.model_id} ({encoder.dim}-d, {encoder.device}); text fields "
        f"{fields}; cached for `kgrec train --text-fields {fields}`"
        + (f"; wrote {out}" if out else "")
    )
