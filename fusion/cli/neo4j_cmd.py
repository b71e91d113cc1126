"""`kgrec neo4j start|status|stop`: the local Neo4j server that kgrec uses by default."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kg import server
from kg.server_conf import ServerConfig

app = typer.Typer(
    help="Run a local Neo4j 5.26 Community server (127.0.0.1 only, authentication on). "
    "Not needed when NEO4J_URI/NEO4J_USER/NEO4J_PASSWORD name an existing server.",
    no_args_is_help=True,
)

Home = Annotated[
    Path | None,
    typer.Option(
        "--home",
        help="Server home (conf, data, logs, password) "
        "[default: $KGREC_NEO4J_HOME, else ${KGREC_HOME:-~/.local/share/kgrec}/neo4j]",
        show_default=False,
    ),
]


def _fail(error: Exception) -> typer.Exit:
    typer.secho(f"error: {error}", err=True, fg=typer.colors.RED)
    return typer.Exit(1)


def _print_status(status: server.ServerStatus) -> None:
    typer.echo(f"Neo4j {status.version}: {'running' if status.running else 'stopped'}")
    typer.echo(f"  uri:  {status.uri}")
    typer.echo(f"  pid:  {status.pid if status.pid is not None else '-'}")
    typer.echo(f"  home: {status.home}")
    if status.cut_off_import:
        typer.echo(
            "  warning: an offline import (kgrec build's bulk path) was cut off; the database "
            "may be partial: run the build again, it imports over it"
        )


def _note_external() -> bool:
    """Say so when NEO4J_URI is set: kgrec then ignores the local server."""
    external = server.external_settings()
    if external:
        typer.echo(f"NEO4J_URI is set: kgrec uses {external.uri}; the local server is not used.")
    return external is not None


@app.command()
def start(
    home: Home = None,
    bolt_port: Annotated[
        int | None, typer.Option(help="Bolt port [default: $KGREC_NEO4J_BOLT_PORT or 7687]")
    ] = None,
    http_port: Annotated[
        int | None, typer.Option(help="HTTP port [default: $KGREC_NEO4J_HTTP_PORT or 7474]")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for Bolt to answer")] = 180.0,
) -> None:
    """Provision (first time: download with Maven) and start the server; reuse a running one."""
    try:
        if _note_external():
            typer.echo("Nothing provisioned.")
            return
        config = ServerConfig.from_env(home, bolt_port, http_port)
        if server.status(config).running:
            typer.echo("Already running.")
        elif server.is_provisioned(config):
            typer.echo("Starting Neo4j...")
        else:
            typer.echo(f"Downloading Neo4j with Maven into {config.dist_dir}, then starting...")
        status = server.start(config, timeout)
    except server.ServerError as error:
        raise _fail(error) from None
    _print_status(status)
    typer.echo(f"  user: {server.USER}, password in {config.password_file}")


@app.command()
def status(home: Home = None) -> None:
    """Print whether the server runs, and its uri, pid, version and home."""
    try:
        _note_external()
        _print_status(server.status(ServerConfig.from_env(home)))
    except server.ServerError as error:
        raise _fail(error) from None


@app.command()
def stop(
    home: Home = None,
    timeout: Annotated[float, typer.Option(help="Seconds before SIGTERM becomes SIGKILL")] = 60.0,
) -> None:
    """Stop the server gracefully (SIGTERM, then SIGKILL after --timeout)."""
    try:
        pid = server.stop(ServerConfig.from_env(home), timeout)
    except server.ServerError as error:
        raise _fail(error) from None
    typer.echo(f"Stopped (pid {pid})." if pid is not None else "Not running.")
