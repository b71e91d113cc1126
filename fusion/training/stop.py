"""When training must end early: the time cap, checked every step and inside propagation, and
SIGINT/SIGTERM, which ask for a graceful stop (finish the step, validate once, keep the best
weights) instead of killing."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from fusion.config import Progress

TIME_BUDGET = "time budget"


class StopFlag:
    """Why training should stop (None = keep going): the deadline passed or a signal came."""

    def __init__(self, max_minutes: float | None = None) -> None:
        self.start = time.perf_counter()
        self.deadline = None if max_minutes is None else self.start + 60 * max_minutes
        self.reason: str | None = None

    def check(self) -> str | None:
        """The reason to stop now, if any (the first one recorded wins)."""
        if self.reason is None and self.deadline and time.perf_counter() >= self.deadline:
            self.reason = TIME_BUDGET
        return self.reason

    def request(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason


class PropagationAbandoned(Exception):
    """Raised out of a propagation (through its progress reports) once the run must stop."""


def abandoning(progress: Progress | None, flag: StopFlag) -> Progress:
    """`progress` that also abandons a propagation once `flag` says stop: on a large catalogue
    one propagation takes minutes, so a deadline passed inside it is not left until the next
    training step."""

    def report(step: str, done: int, total: int) -> None:
        if progress:
            progress(step, done, total)
        if step == "propagating" and flag.check() is not None:
            raise PropagationAbandoned

    return report


@contextmanager
def stop_on_signals(flag: StopFlag) -> Iterator[StopFlag]:
    """While inside, SIGINT/SIGTERM set `flag` (reason ``interrupted by SIGTERM``) instead of
    ending the process; a second signal of either kind ends it at once (KeyboardInterrupt).
    Outside the main thread signals cannot be caught, and nothing is installed."""
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    caught = (signal.SIGINT, signal.SIGTERM)
    received: list[int] = []

    def handle(signum: int, _frame: object) -> None:
        if received:
            raise KeyboardInterrupt
        received.append(signum)
        flag.request(f"interrupted by {signal.Signals(signum).name}")

    previous = {s: signal.signal(s, handle) for s in caught}
    try:
        yield flag
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
