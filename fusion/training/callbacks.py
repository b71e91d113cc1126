"""Hooks into `fit`: a `Callback` sees every epoch's metrics and the end of training, so an
experiment tracker (MLflow, W&B, TensorBoard) is a short subclass; `CSVLogger` ships as one."""

from __future__ import annotations

import csv
from pathlib import Path

from fusion.training.result import TrainResult


class Callback:
    """Override what you need; every hook does nothing by default."""

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        """After each epoch's validation: `metrics` holds loss, the validation metric, seconds."""

    def on_train_end(self, result: TrainResult) -> None:
        """Once, after the best epoch's weights are restored."""


class CSVLogger(Callback):
    """One CSV row per epoch (header from the first epoch's metric names)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._columns: list[str] | None = None

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        row = {"epoch": epoch, **metrics}
        if self._columns is None:  # first epoch: a fresh file, so a rerun does not append
            self._columns = list(row)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(self._columns)
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self._columns).writerow(row)
