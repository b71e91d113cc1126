"""`kgrec update`: apply a catalogue delta (and removals) to an existing store, with a summary
of what changed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from fusion.cli.common import (
    DEFAULT_REJECTS,
    AsJson,
    CategorySep,
    Columns,
    External,
    Format,
    InteractionColumns,
    Rejects,
    StoreUri,
    Strict,
    err,
    progress_bars,
    table_columns,
    user_errors,
)

if TYPE_CHECKING:
    from kg.update import UpdateSummary


def update(
    catalogue: Annotated[
        Path | None,
        typer.Option(help="Delta: catalogue file in any supported layout (new/changed rows)."),
    ] = None,
    interactions: Annotated[
        Path | None, typer.Option(help="New interactions (reviews / ratings) for the delta.")
    ] = None,
    remove: Annotated[
        Path | None,
        typer.Option(help="File of product ids to remove, one per line (unknown ids reported)."),
    ] = None,
    format: Format = "auto",
    store: StoreUri = None,
    external: External = "stub",
    strict: Strict = False,
    rejects: Rejects = DEFAULT_REJECTS,
    columns: Columns = None,
    interaction_columns: InteractionColumns = None,
    category_sep: CategorySep = None,
    as_json: AsJson = False,
) -> None:
    """Apply a catalogue delta (new/changed products, edges, interactions; removals).

    Upserts new and changed products (changed = any field differs
    from the stored one; its brand/category links are replaced), the delta's product edges and
    interactions. Products are removed only through --remove: each is deleted with all its
    relationships (users, brands and categories stay), and delta rows naming it are ignored.
    Same cleaning and rejects as build. Re-running, also after an interrupted run, is safe."""
    from kg.update import update as run_update  # heavy imports only when the command runs

    with user_errors():
        tables = table_columns(columns, interaction_columns, category_sep)
    with user_errors(), progress_bars() as progress:
        summary = run_update(
            catalogue,
            interactions,
            remove,
            format,
            store,
            external,
            strict,
            rejects,
            progress,
            tables,
        )
    if as_json:
        typer.echo(json.dumps(summary.to_json(), indent=2))
    else:
        Console().print(_summary_table(summary))
        if summary.unknown_removals:
            err.print(f"not in the store, not removed: {', '.join(summary.unknown_removals)}")
        typer.echo(summary.events.line())  # where every interaction row went
        err.print(f"rejects: {summary.rejected} written to {summary.rejects_path}")


def _summary_table(summary: UpdateSummary) -> Table:
    table = Table(title=f"kgrec update → {summary.store} ({summary.seconds} s)")
    table.add_column("what")
    table.add_column("count", justify="right")
    rows = [
        ("products: new", summary.products_new),
        ("products: changed", summary.products_changed),
        ("products: unchanged", summary.products_unchanged),
        ("products: removed", summary.products_removed),
        ("products: unknown removals", len(summary.unknown_removals)),
        *((f"new nodes: {label}", n) for label, n in summary.nodes_added.items()),
        *((f"new relationships: {rel}", n) for rel, n in summary.relationships_added.items()),
        ("new interactions (events)", summary.interactions_new),
        *((f"removed relationships: {r}", n) for r, n in summary.relationships_removed.items()),
        ("delta rows ignored (removed ids)", summary.ignored_for_removal),
        ("rejected rows", summary.rejected),
    ]
    for what, n in rows:
        table.add_row(what, f"{n:,}")
    return table
