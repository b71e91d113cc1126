"""`kgrec forget --user ID`: remove a person from the graph store and from a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fusion.cli.common import DEFAULT_CHECKPOINT, Checkpoint, StoreUri, user_errors


def forget(
    user: Annotated[str, typer.Option("--user", help="The user id to forget.")],
    store: StoreUri = None,
    checkpoint: Checkpoint = DEFAULT_CHECKPOINT,
) -> None:
    """Remove USER's interactions and User node from the store, and their id and training
    pairs from the checkpoint (if there is one), so the next warm start trains without them.
    Text vector caches hold product texts only. A running `kgrec serve` forgets them at its
    next reload (POST /admin/reload)."""
    from fusion.model.checkpoint import read_meta
    from fusion.model.forget import forget_user_in_checkpoint
    from kg.errors import NotFoundError
    from kg.stores import open_store

    with user_errors():
        has_checkpoint = Path(checkpoint).exists()
        if has_checkpoint:
            read_meta(checkpoint)  # a damaged checkpoint fails before the store is changed
        with open_store(store) as graph:
            removed = graph.remove_user(user)
        in_checkpoint = has_checkpoint and forget_user_in_checkpoint(checkpoint, user)
        if removed is None and not in_checkpoint:
            raise NotFoundError(f"unknown user {user!r}: not in the store nor in {checkpoint}")
    done = (
        [] if removed is None else [f"{removed} interactions and the user removed from the store"]
    )
    if in_checkpoint:
        done.append(f"removed from the checkpoint {checkpoint}")
    typer.echo(f"forgot {user}: " + "; ".join(done))
