"""Crash-safe replacement of a directory (a checkpoint): whatever a crash or kill leaves, the
next writer or reader finds the old contents or the new ones, never a mix or nothing.

The new contents are written into `.NAME.tmp-<pid>-…` beside `NAME`, every file and the
directory fsynced, then swapped in by two renames (`NAME` → `.NAME.old`, temporary → `NAME`),
each made durable by an fsync of the parent; `.NAME.old` is deleted last. `recover` repairs the
leftovers: temporary directories of processes that no longer run are removed; a complete
`.NAME.old` without `NAME` (a crash between the renames) is renamed back, or read in place while
a live process is still saving; a `.NAME.old` beside `NAME` is removed.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

IsComplete = Callable[[Path], bool]


@contextmanager
def replacing(path: Path, is_complete: IsComplete) -> Iterator[Path]:
    """A fresh temporary directory to fill; on a normal exit it replaces `path` durably, on an
    error it is dropped and `path` is left as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.with_name(f".{path.name}.old")
    recover(path, is_complete)
    if path.exists():  # a leftover would block the swap (recover keeps one a live save may own)
        shutil.rmtree(old, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{_tmp_prefix(path)}{os.getpid()}-", dir=path.parent))
    try:
        yield tmp
        for file in tmp.iterdir():
            fsync(file)
        fsync(tmp)
        if path.exists():
            os.replace(path, old)
            fsync(path.parent)
        os.replace(tmp, path)
        fsync(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not path.exists():
            os.replace(old, path)  # the swap failed halfway: put the old contents back
        raise
    shutil.rmtree(old, ignore_errors=True)


def recover(path: Path, is_complete: IsComplete) -> Path:
    """The directory to read `path` from, after repairing what a crashed save left."""
    old = path.with_name(f".{path.name}.old")
    saving = _drop_dead_temporaries(path)
    if old.is_dir() and not saving:
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
        elif is_complete(old):
            log.warning("restoring %s from %s (a save was interrupted)", path, old)
            try:
                os.replace(old, path)
                fsync(path.parent)
            except FileNotFoundError:  # another process restored it first
                pass
    elif saving and not path.exists() and is_complete(old):
        return old  # a save is between its renames: the previous contents are complete
    return path


def fsync(path: Path) -> None:
    """Flush a file's contents or a directory's entries to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _drop_dead_temporaries(path: Path) -> bool:
    """Remove the temporary directories of saves whose process is gone; whether a save to
    `path` by a live process is in progress."""
    live = False
    prefix = _tmp_prefix(path)
    for tmp in path.parent.glob(f"{prefix}*") if path.parent.is_dir() else ():
        pid = tmp.name.removeprefix(prefix).split("-")[0]
        if pid.isdigit() and _running(int(pid)):
            live = True
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return live


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}.tmp-"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True
