"""`kgrec train` as a user runs it, in real subprocesses, on an embedded store built from the
first lines of the real Magazine 2018 catalogue: SIGTERM ends training gracefully with a
checkpoint, and `--nproc 2` (torchrun, DDP over gloo) trains what one process trains."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from itertools import islice
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from fusion.cli import app
from fusion.model.checkpoint import META, WEIGHTS

MAGAZINE = Path(os.environ["KGREC_DATA"]) / "amazon-magazine-2018"
LINES = 600

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The slice (in-catalogue products only) in an embedded store."""
    work = tmp_path_factory.mktemp("cli-training")
    path = work / "meta_slice.json.gz"
    with gzip.open(MAGAZINE / "meta_Magazine_Subscriptions.json.gz", "rt") as src:
        rows = list(islice(src, LINES))
    with gzip.open(path, "wt") as f:
        f.writelines(rows)
    uri = f"embedded:{work / 'store'}"
    args = ["build", "--catalogue", path, "--external", "drop", "--store", uri]
    result = CliRunner().invoke(app, [str(a) for a in [*args, "--rejects", work / "rej.jsonl"]])
    assert result.exit_code == 0, result.output
    return uri


def kgrec(*args: object) -> list[str]:
    return [sys.executable, "-m", "fusion.cli", *map(str, args)]


def test_sigterm_ends_training_gracefully_with_a_checkpoint(store: str, tmp_path: Path):
    out = tmp_path / "model"
    # Small steps: epochs long enough to be interrupted in the middle of one.
    args = ["train", "--store", store, "--epochs", "50", "--batch-size", "4", "--out", out]
    proc = subprocess.Popen(kgrec(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stderr:  # wait for the first epoch's report, then interrupt
        lines.append(line)
        if line.startswith("epoch 1:"):
            break
    else:
        pytest.fail(f"no epoch finished: {''.join(lines)}")
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert time.monotonic() - sent < 60
    assert "ended by interrupted by SIGTERM" in stdout and "interrupted" in stderr
    meta = json.loads((out / META).read_text())
    train = meta["metrics"]["train"]
    assert train["stopped_by"] == "interrupted by SIGTERM"
    # Stopped in epoch 2 (or at its start): every epoch that ran, the cut one too, validated.
    assert train["epochs"] <= 2 and len(train["history"]) == train["epochs"]
    assert (out / WEIGHTS).is_file()


def test_two_processes_train_what_one_trains(store: str, tmp_path: Path):
    """DDP on 2 CPU processes: each rank takes half of every batch and gradients are averaged,
    so the weights follow the 1-process run (tolerance after 2 epochs: 0.02 absolute on the
    validation metric and on every weight; an odd batch's halves differ by one target)."""
    runs = {}
    for nproc in (1, 2):
        out = tmp_path / f"model-{nproc}"
        args = ["train", "--store", store, "--epochs", "2", "--nproc", nproc, "--out", out]
        if nproc == 1:  # in this process: the same command without torchrun
            result = CliRunner().invoke(app, list(map(str, args)))
            assert result.exit_code == 0, result.output
        else:
            done = subprocess.run(kgrec(*args), capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, done.stderr
        runs[nproc] = (json.loads((out / META).read_text()), torch.load(out / WEIGHTS))
    (meta1, weights1), (meta2, weights2) = runs[1], runs[2]
    train1, train2 = meta1["metrics"]["train"], meta2["metrics"]["train"]
    assert train1["best"] == pytest.approx(train2["best"], abs=0.02)
    assert train1["best_epoch"] == train2["best_epoch"]
    for name, tensor in weights1.items():
        assert torch.allclose(tensor, weights2[name], atol=0.02), name
    assert not all(torch.equal(t, weights2[n]) for n, t in weights1.items())  # really 2 ranks
