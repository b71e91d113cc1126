"""`kgrec build`: catalogue files → cleaned knowledge graph in a store, with a summary."""

from __future__ import annotations

import json
from dataclasses import asdict
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
    from kg.build import BuildSummary


def build(
    catalogue: Annotated[Path, typer.Option(help="Catalogue file or directory.")],
    interactions: Annotated[
        Path | None, typer.Option(help="Separate interactions file (reviews / ratings).")
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
    bulk: Annotated[
        bool | None,
        typer.Option(
            help="Write an empty local Neo4j that kgrec manages with neo4j-admin import "
            "(offline; the server is restarted). Default: from 1M relationships on; "
            "--no-bulk: Bolt transactions always.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Read, clean and store a catalogue; re-running is safe (writes are upserts)."""
    from kg.build import build as run_build  # heavy imports only when the command runs

    with user_errors():
        tables = table_columns(columns, interaction_columns, category_sep)
    with user_errors(), progress_bars() as progress:
        summary = run_build(
            catalogue, interactions, format, store, external, strict, rejects, progress, tables,
            bulk=bulk,
        )  # fmt: skip
    if as_json:
        typer.echo(json.dumps(summary.to_json(), indent=2))
    else:
        Console().print(summary_table(summary))
        for line in reconciliation(summary.files):
            err.print(line, highlight=False, soft_wrap=True)
        typer.echo(summary.events.line())  # where every interaction row went
        err.print(f"rejects: {summary.rejected} written to {summary.rejects_path}")


def reconciliation(files: dict[str, dict[str, int]]) -> list[str]:
    """One line per input file: its rows read and what became of each."""
    return [
        f"{name}: {n['rows_read']:,} rows read = {n['loaded']:,} loaded + {n['rejected']:,} "
        f"rejected + {n['duplicates']:,} duplicates + {n['conflicts']:,} conflicts"
        for name, n in files.items()
    ]


def summary_table(summary: BuildSummary) -> Table:
    table = Table(title=f"kgrec build → {summary.store} by {summary.write} ({summary.seconds} s)")
    table.add_column("what")
    table.add_column("count", justify="right")
    for label, n in summary.nodes.items():
        table.add_row(f"nodes: {label}", f"{n:,}")
    for rel, n in summary.relationships.items():
        table.add_row(f"relationships: {rel}", f"{n:,}")
    table.add_row("rejected rows", f"{summary.rejected:,}")
    for name, value in asdict(summary.cleaning).items():
        table.add_row(f"cleaning: {name}", f"{value:,}" if isinstance(value, int) else str(value))
    return table
