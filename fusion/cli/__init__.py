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

from fusion.cli import encode_cmd  # noqa: E402  (commands register on the app above)

app.command("encode")(encode_cmd.encode)

from fusion.cli import neo4j_cmd  # noqa: E402

app.add_typer(neo4j_cmd.app, name="neo4j")

from fusion.cli import query_cmd  # noqa: E402

query_cmd.register(app)  # related, recommend, search, publish, serve

from fusion.cli import build_cmd  # noqa: E402

app.command("build")(build_cmd.build)

from fusion.cli import update_cmd  # noqa: E402

app.command("update")(update_cmd.update)


def main() -> None:
    app()
