"""Bad input handling and row accounting: every rejected row is kept with file, line and reason;
`strict` turns the first one into an error. Per input file the log also counts the rows read and
what became of them, so rows read = loaded + rejected + duplicates + conflicts can be shown."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from kg.errors import KgrecError


class BadInputError(KgrecError, ValueError):
    """Input that cannot be used, with the place it came from in the message."""


@dataclass
class Reject:
    file: str
    line: int
    reason: str
    raw: str = ""
    # "rejected": the row was not used; "conflict": a duplicate product whose differing values
    # were dropped in favour of the row at `kept` (file:line) — written so nothing goes unseen.
    kind: str = "rejected"
    kept: str = ""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@dataclass
class FileRows:
    """What became of one input file's data rows (a header line is not a row; a file that
    cannot be opened has none). `loaded` is what remains after the other outcomes."""

    rows_read: int = 0
    rejected: int = 0  # rows logged as rejects (file-level errors are not rows)
    duplicates: int = 0  # product rows repeating an id already read, nothing lost in the merge
    conflicts: int = 0  # product rows repeating an id with different values (first row wins)

    @property
    def loaded(self) -> int:
        return self.rows_read - self.rejected - self.duplicates - self.conflicts

    def to_json(self) -> dict[str, int]:
        counts = asdict(self)
        return {"rows_read": counts.pop("rows_read"), "loaded": self.loaded, **counts}


@dataclass
class RejectLog:
    strict: bool = False
    rejects: list[Reject] = field(default_factory=list)
    conflicts: list[Reject] = field(default_factory=list)
    files: dict[str, FileRows] = field(default_factory=dict)

    def rows(self, file: str | Path) -> FileRows:
        """The counters of `file` (created on first use)."""
        return self.files.setdefault(str(file), FileRows())

    def add(self, file: str | Path, line: int, reason: str, raw: str = "") -> None:
        """Reject one row (line ≥ 1) or, with line 0 or `file_error`, a whole file."""
        self._record(Reject(str(file), line, reason, raw[:2000]), row=line > 0)

    def file_error(self, file: str | Path, line: int, reason: str) -> None:
        """A file that cannot be (further) read; `line` is the last line read, not a row."""
        self._record(Reject(str(file), line, reason), row=False)

    def _record(self, reject: Reject, row: bool) -> None:
        self.rejects.append(reject)  # kept in strict mode too, so the rejects file shows it
        if row:
            self.rows(reject.file).rejected += 1
        if self.strict:
            raise BadInputError(str(reject))

    def header(self, file: str | Path) -> None:
        """The first record read from `file` was its header line, not a row."""
        self.rows(file).rows_read -= 1

    def absorb(self, other: RejectLog) -> None:
        """Take over the rejects and row counts `other` collected (strict: raise at the first)."""
        for name, rows in other.files.items():
            mine = self.rows(name)
            for f in fields(FileRows):
                setattr(mine, f.name, getattr(mine, f.name) + getattr(rows, f.name))
        self.conflicts.extend(other.conflicts)
        for reject in other.rejects:
            self._record(reject, row=False)  # its row, if any, is in the counts just added

    def duplicate(self, file: str | Path) -> None:
        self.rows(file).duplicates += 1

    def conflict(self, file: str | Path, line: int, reason: str, raw: str, kept: str) -> None:
        """A duplicate product that differs from the one kept: counted and written, not raised
        (the kept row is valid, and which one wins is fixed: the first read)."""
        self.rows(file).conflicts += 1
        self.conflicts.append(Reject(str(file), line, reason, raw[:2000], "conflict", kept))

    def __len__(self) -> int:
        return len(self.rejects)

    def write(self, path: str | Path) -> Path:
        """Rejects then conflicts as JSON lines; the file is written (empty) even when there
        are none, so a run always leaves its rejects file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as out:
            for reject in (*self.rejects, *self.conflicts):
                out.write(json.dumps(asdict(reject), ensure_ascii=False) + "\n")
        return path
