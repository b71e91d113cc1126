"""What a training run reports: the metric, its best value and epoch, time, memory, history."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class TrainResult:
    metric: str
    best: float
    best_epoch: int
    epochs: int
    seconds: float
    peak_memory_mb: float
    history: list[dict[str, float]] = field(default_factory=list)
    targets: int = 0  # training targets per epoch
    window: int | None = None  # warm start: how many of them are new (the rest are replay)
    stopped_by: str = "all epochs"  # or "early stopping" or "time budget"
    # Adam's state at the best epoch (what a warm start resumes); not part of the report.
    optimizer_state: dict[str, Any] | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "optimizer_state"}
