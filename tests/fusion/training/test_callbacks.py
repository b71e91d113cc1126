"""`fit(..., callbacks=…)`: every epoch's metrics reach the callbacks (the shipped CSV logger
included) and the log, and the end of training is announced once with the result."""

from __future__ import annotations

import csv
import logging

import pytest
import torch

from fusion.config import FusedConfig, TrainConfig
from fusion.data.splits import related_split
from fusion.model.fused import FusedModel
from fusion.training.callbacks import Callback, CSVLogger
from fusion.training.loop import fit
from fusion.training.result import TrainResult

FAST = {"epochs": 2, "batch_size": 4096, "lr": 1e-2, "patience": 3, "device": "cpu"}


class Recorder(Callback):
    def __init__(self) -> None:
        self.epochs: list[tuple[int, dict[str, float]]] = []
        self.ended: list[TrainResult] = []

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        self.epochs.append((epoch, dict(metrics)))

    def on_train_end(self, result: TrainResult) -> None:
        self.ended.append(result)


@pytest.fixture(scope="module")
def trained(beauty, tmp_path_factory):
    split = related_split(beauty, "bought_together")
    text = torch.randn(split.num_products, 32, generator=torch.Generator().manual_seed(0))
    model = FusedModel(split.train_graph, text, FusedConfig(task="related", dim=16))
    recorder = Recorder()
    path = tmp_path_factory.mktemp("callbacks") / "logs" / "metrics.csv"
    result = fit(model, split, TrainConfig(**FAST), callbacks=[recorder, CSVLogger(path)])
    return result, recorder, path


def test_callbacks_see_every_epoch_and_the_end(trained):
    result, recorder, _ = trained
    assert [epoch for epoch, _ in recorder.epochs] == [1, 2]
    assert [{"epoch": e, **m} for e, m in recorder.epochs] == result.history
    assert recorder.ended == [result]


def test_csv_logger_writes_one_row_per_epoch(trained):
    result, _, path = trained
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["epoch", "loss", result.metric, "seconds", "steps", "epoch_steps"]
    # Floats are written in full (repr), so they read back exactly.
    assert [{k: float(v) for k, v in row.items()} for row in rows] == result.history


def test_a_second_run_starts_a_fresh_csv(tmp_path):
    logger = CSVLogger(tmp_path / "m.csv")
    logger.on_epoch_end(1, {"loss": 2.0})
    CSVLogger(tmp_path / "m.csv").on_epoch_end(1, {"loss": 1.0})
    assert (tmp_path / "m.csv").read_text().splitlines() == ["epoch,loss", "1,1.0"]


def test_epochs_are_logged(beauty, caplog):
    split = related_split(beauty, "bought_together")
    text = torch.randn(split.num_products, 32, generator=torch.Generator().manual_seed(0))
    model = FusedModel(split.train_graph, text, FusedConfig(task="related", dim=16))
    with caplog.at_level(logging.INFO, logger="fusion.training.loop"):
        fit(model, split, TrainConfig(**{**FAST, "epochs": 1}))
    assert any(r.getMessage().startswith("epoch 1: loss ") for r in caplog.records)
