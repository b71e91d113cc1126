"""Bad input handling: every rejected row is kept with file, line and reason; `strict` turns the
first one into an error."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kgrec.errors import KgrecError


class BadInputError(KgrecError, ValueError):
    """Input that cannot be used, with the place it came from in the message."""


@dataclass
class Reject:
    file: str
    line: int
    reason: str
    raw: str = ""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@dataclass
class RejectLog:
    strict: bool = False
    rejects: list[Reject] = field(default_factory=list)

    def add(self, file: str | Path, line: int, reason: str, raw: str = "") -> None:
        reject = Reject(str(file), line, reason, raw[:2000])
        if self.strict:
            raise BadInputError(str(reject))
        self.rejects.append(reject)

    def __len__(self) -> int:
        return len(self.rejects)

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as out:
            for reject in self.rejects:
                out.write(json.dumps(asdict(reject), ensure_ascii=False) + "\n")
        return path
