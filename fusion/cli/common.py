"""What every command shares: the stderr console and log handler, the --store option, progress
bars, and one way of turning expected failures into a one-line message and exit code 1."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from neo4j.exceptions import DriverError, Neo4jError
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import TaskID

from kg import settings
from kg.errors import KgrecError
from kg.stores.uri import redact
from text_encoder.errors import TextEncoderError
from text_encoder.progress import progress_bar

if TYPE_CHECKING:
    from kg.build import TableColumns

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
Columns = Annotated[
    str | None,
    typer.Option(
        help="Own CSV/JSONL/Parquet catalogue: its columns, e.g. id=sku,title=name,brand=maker,"
        "category=cat_path (keys: id, title, description, brand, category, price; unmapped "
        "keys read the column of their own name)."
    ),
]
InteractionColumns = Annotated[
    str | None,
    typer.Option(
        help="Own interactions table: its columns, e.g. user=uid,item=sku,ts=when (keys: "
        "user, item, rating, ts, kind)."
    ),
]
CategorySep = Annotated[
    str | None,
    typer.Option(help="Own tables: separator between the levels of a category path (default: >)."),
]


def table_columns(
    columns: str | None, interaction_columns: str | None, category_sep: str | None
) -> TableColumns:
    """The --columns/--interaction-columns/--category-sep flags as the readers take them."""
    from kg.build import TableColumns
    from kg.readers.generic import INTERACTION_KEYS, parse_columns

    return TableColumns(
        products=parse_columns(columns) if columns else None,
        interactions=(
            parse_columns(interaction_columns, INTERACTION_KEYS) if interaction_columns else None
        ),
        **({"category_sep": category_sep} if category_sep else {}),
    )


# kgrec's own errors (bad input, mismatches, unknown ids, an unusable store or server), missing
# or unreadable files, Neo4j refusals. Anything else is a bug and keeps its traceback.
USER_ERRORS = (KgrecError, TextEncoderError, OSError, Neo4jError, DriverError)
# kgrec's packages log to stderr through one handler; dependencies keep their own settings.
LOGGERS = ("kg", "text_encoder", "gnn", "fusion")


def setup() -> None:
    """Once per command: kgrec's log messages on stderr as plain lines (rich); dependencies'
    deprecation warnings about their own internals and their tqdm bars (Hugging Face's
    "Loading weights") out of the user's way: kgrec's own bars are rich."""
    handler = RichHandler(
        console=err, show_time=False, show_level=False, show_path=False, markup=False
    )
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name in LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(logging.INFO)
    # torch_geometric scripts its modules at import (torch ≥ 2.6 calls that deprecated).
    warnings.filterwarnings("ignore", r"`torch\.jit\.script` is deprecated", FutureWarning)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # read when transformers loads


@contextmanager
def user_errors() -> Iterator[None]:
    """Expected failures become `error: …` and exit 1; KGREC_DEBUG=1 keeps the traceback."""
    try:
        yield
    except USER_ERRORS as exc:
        if settings.debug():
            raise
        # Whatever raised, a store URI's password never reaches the terminal.
        err.print(f"[red]error:[/red] {redact(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


@contextmanager
def progress_bars() -> Iterator[Callable[[str, int, int], None]]:
    """A rich progress bar per step (elapsed, ETA), on stderr so --json output stays clean. A
    step that starts over (the next epoch, another validation) restarts its bar."""
    bars = progress_bar(console=err)
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
