"""The one progress-bar style: rich, on stderr (so --json output stays clean), gone when done."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def progress_bar(enabled: bool = True, console: Console | None = None) -> Progress:
    """A `rich.progress.Progress` for one or more named steps (`add_task(name, total=n)`)."""
    return Progress(
        TextColumn("{task.description:<16}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console or Console(stderr=True),
        transient=True,
        disable=not enabled,
    )
