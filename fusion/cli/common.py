"""What every command shares: the stderr console, the --store option, progress bars, and one
way of turning expected failures into a one-line message and exit code 1."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Literal

import typer
from neo4j.exceptions import DriverError, Neo4jError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from kg.server_conf import ServerError
from kg.stores.base import StoreError
from kg.stores.uri import redact

err = Console(stderr=True)

StoreUri = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="Graph store: embedded:PATH, bolt://… or neo4j://… (default: the local server).",
    ),
]

# Where training writes and queries read a model, unless told otherwise.
DEFAULT_CHECKPOINT = Path("artifacts/model")
Checkpoint = Annotated[
    Path,
    typer.Option(envvar="KGREC_CHECKPOINT", help="Trained model directory (or $KGREC_CHECKPOINT)."),
]

# Options shared by `build` and `update`.
Format = Annotated[str, typer.Option("--format", help="Source layout, or auto to detect it.")]
External = Annotated[
    Literal["stub", "drop"],
    typer.Option(help="Products referenced but not known: flagged stub nodes, or dropped."),
]
Strict = Annotated[bool, typer.Option(help="Stop at the first bad input row.")]
Rejects = Annotated[Path, typer.Option(help="Where rejected rows are written (JSON lines).")]
DEFAULT_REJECTS = Path("kgrec-rejects.jsonl")
AsJson = Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")]

# Bad input (BadInputError, checkpoint/model mismatches are ValueErrors), missing files and
# models (OSError), unknown ids (LookupError), an unreachable store or server, Neo4j refusals.
USER_ERRORS = (ValueError, OSError, LookupError, StoreError, ServerError, Neo4jError, DriverError)


@contextmanager
def user_errors() -> Iterator[None]:
    """Expected failures become `error: …` and exit 1; KGREC_DEBUG=1 keeps the traceback."""
    try:
        yield
    except USER_ERRORS as exc:
        if os.environ.get("KGREC_DEBUG"):
            raise
        # Whatever raised, a store URI's password never reaches the terminal.
        err.print(f"[red]error:[/red] {redact(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


@contextmanager
def progress_bars() -> Iterator[Callable[[str, int, int], None]]:
    """A rich progress bar per step (elapsed, ETA), on stderr so --json output stays clean. A
    step that starts over (the next epoch, another validation) restarts its bar."""
    bars = Progress(
        TextColumn("{task.description:<16}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )
    tasks: dict[str, TaskID] = {}
    last: dict[str, int] = {}

    def update(step: str, done: int, total: int) -> None:
        if step not in tasks:
            tasks[step] = bars.add_task(step, total=total)
        elif done < last[step]:
            bars.reset(tasks[step], total=total)
        last[step] = done
        bars.update(tasks[step], completed=done, total=total)

    with bars:
        yield update
