"""`kgrec` command line: one Typer app; each command group lives in its own module, and heavy
libraries (torch, transformers) load only when a command that needs them runs."""

from __future__ import annotations

from typing import Annotated

import typer

import fusion
from fusion.cli import (
    build_cmd,
    encode_cmd,
    explain_cmd,
    forget_cmd,
    neo4j_cmd,
    query_cmd,
    train_cmd,
    update_cmd,
)
from fusion.cli.common import setup

app = typer.Typer(
    name="kgrec",
    help="Knowledge-graph recommender: build a Neo4j product graph, train a fused GNN + text "
    "model, and query related items and recommendations.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"kgrec {fusion.__version__}")
        raise typer.Exit()


@app.callback()
def _start(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    setup()


app.add_typer(neo4j_cmd.app, name="neo4j")
app.command("build")(build_cmd.build)
app.command("update")(update_cmd.update)
app.command("forget")(forget_cmd.forget)
app.command("encode")(encode_cmd.encode)
app.command("train")(train_cmd.train)
app.command("evaluate")(train_cmd.evaluate)
app.command("pipeline")(train_cmd.pipeline)
app.command("explain")(explain_cmd.explain)
query_cmd.register(app)  # related, recommend, search, publish, serve


def main() -> None:
    app()
