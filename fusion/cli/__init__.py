"""`kgrec` command line: one Typer app; each command group lives in its own module."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="kgrec",
    help="Knowledge-graph recommender: build a Neo4j product graph, train a fused GNN + text "
    "model, and query related items and recommendations.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def main() -> None:
    app()
