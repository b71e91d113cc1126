"""The command line as a newcomer meets it: --version, settings layered from a run file and
flags, bad arguments reported before any slow step (and nothing written), one line per
expected error, a traceback for a bug, own tables through --columns (CSV and Parquet), and no
warnings from dependencies. Stores are embedded (files), so no server is involved."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

import fusion
from fusion.cli import app
from fusion.config import TrainConfig, TrainOptions

FIXTURES = Path(__file__).parent.parent / "fixtures"
COLUMNS = "id=sku,title=name,brand=maker,category=cat_path"


def run(*args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


class Captured(Exception):
    """Raised by the stand-in for the training run: the options reached it."""


@pytest.fixture
def captured(monkeypatch) -> list[TrainOptions]:
    """`kgrec train` up to the training run, which records its options and stops."""
    seen: list[TrainOptions] = []

    def capture(store, options, out, callbacks=(), progress=None):
        seen.append(options)
        raise Captured

    monkeypatch.setattr("fusion.pipeline.train", capture)
    return seen


@pytest.fixture
def store(tmp_path: Path) -> str:
    """An embedded store built from the own-columns CSV fixture: products, no edges."""
    uri = f"embedded:{tmp_path / 'store'}"
    result = run(
        "build", "--catalogue", FIXTURES / "products.csv", "--columns", COLUMNS,
        "--category-sep", "/", "--store", uri, "--rejects", tmp_path / "r.jsonl", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["nodes"]["Product"] == 3
    return uri


def test_version():
    result = run("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"kgrec {fusion.__version__}"


def test_flags_override_the_run_file_which_overrides_the_defaults(tmp_path, captured):
    config = tmp_path / "run.yaml"
    config.write_text("relation: also_viewed\nmodel:\n  dim: 32\ntrain:\n  epochs: 5\n  lr: 0.01\n")
    result = run("train", "--config", config, "--dim", 16, "--text-fields", "title, brand")
    assert isinstance(result.exception, Captured), result.output
    (options,) = captured
    assert (options.relation, options.model.dim, options.train.epochs) == ("also_viewed", 16, 5)
    assert options.train.lr == 0.01 and options.text_fields == ("title", "brand")
    assert options.train.batch_size == TrainConfig.batch_size
    # A flag given explicitly wins even when it repeats the default.
    run("train", "--config", config, "--epochs", TrainConfig.epochs)
    assert captured[1].train.epochs == TrainConfig.epochs
    run("train")  # no file, no flags: the dataclass defaults
    assert captured[2] == TrainOptions()


def test_a_bad_run_file_is_one_line_naming_key_and_file(tmp_path, captured):
    config = tmp_path / "run.yaml"
    config.write_text("train:\n  epoch: 5\n")
    result = run("train", "--config", config)
    assert result.exit_code == 1 and not captured
    assert f"error: {config}: unknown key 'train.epoch'" in result.stderr
    assert "Traceback" not in result.output


def test_a_bug_shows_its_traceback(monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError("relation")

    monkeypatch.setattr("fusion.pipeline.train", broken)
    result = run("train")
    assert isinstance(result.exception, KeyError) and "error:" not in result.stderr


def test_a_misspelt_relation_fails_before_the_store_is_opened(tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    result = run(
        "train", "--relation", "also_bougt", "--store", f"embedded:{tmp_path / 'no-store'}",
        "--out", out, "--metrics-csv", tmp_path / "m.csv",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "unknown relation 'also_bougt'" in result.stderr and "also_bought" in result.stderr
    assert list(tmp_path.iterdir()) == []  # no store opened, nothing written
    assert not cache.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--relation", "also_viewed"), "has no 'also_viewed' edges"),
        (("--task", "recommend"), "has no 'interacted' edges"),
        (("--device", "tpu"), "unknown device 'tpu'"),
        (("--text-model", "./no-such-model"), "'./no-such-model' does not exist"),
    ],
)
def test_a_store_that_cannot_feed_the_task_fails_before_any_encoding(
    store, tmp_path, monkeypatch, args, message
):
    cache = tmp_path / "cache"
    monkeypatch.setenv("KGREC_CACHE", str(cache))
    result = run("train", *args, "--store", store, "--out", tmp_path / "out")
    assert result.exit_code == 1 and message in result.stderr, result.output
    assert not cache.exists() and not (tmp_path / "out").exists()  # no text model, no writes


def test_pipeline_checks_its_training_options_before_building(tmp_path):
    for bad in (("--relation", "also_bougt"), ("--device", "tpu")):
        result = run(
            "pipeline", "--catalogue", FIXTURES / "products.csv", *bad,
            "--store", f"embedded:{tmp_path / 'store'}", "--out", tmp_path / "out",
        )  # fmt: skip
        assert result.exit_code == 1 and "error:" in result.stderr, result.output
        assert list(tmp_path.iterdir()) == []  # nothing built, nothing trained


def test_a_missing_input_file_is_named_once(tmp_path):
    missing = tmp_path / "nope.csv"
    result = run("build", "--catalogue", missing, "--store", f"embedded:{tmp_path / 's'}")
    assert result.exit_code == 1
    assert result.stderr.count("nope.csv") == 1, result.stderr


def test_build_reads_own_parquet_through_columns(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "export.parquet"
    table = {"sku": ["A", "B"], "name": ["Kettle", "Toaster"], "maker": ["Acme", "Acme"]}
    table["cat_path"] = ["Home/Kitchen", "Home/Kitchen"]
    pq.write_table(pa.table(table), path)
    result = run(
        "build", "--catalogue", path, "--columns", COLUMNS, "--category-sep", "/",
        "--store", f"embedded:{tmp_path / 's'}", "--rejects", tmp_path / "r.jsonl", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["nodes"]["Product"] == 2 and summary["nodes"]["Category"] == 2
    assert summary["relationships"]["MADE_BY"] == 2 and summary["rejected"] == 0


def test_a_bad_column_mapping_is_one_line(tmp_path):
    result = run("build", "--catalogue", FIXTURES / "products.csv", "--columns", "sku=id")
    assert result.exit_code == 1 and "unknown key 'sku'" in result.stderr


def test_no_dependency_warnings_or_bars_reach_the_user(tmp_path):
    # Fresh processes, as a user runs them. train: torch and torch_geometric are imported
    # (they warned at import), then the empty store stops the run. encode: the text model
    # loads (Hugging Face showed a tqdm bar), then encodes the empty store's nothing.
    def kgrec(*args: str) -> subprocess.CompletedProcess:
        code = "from fusion.cli import main; main()"
        return subprocess.run(
            [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600
        )

    store = f"embedded:{tmp_path / 's'}"
    trained = kgrec("train", "--store", store, "--out", str(tmp_path / "out"))
    assert trained.returncode == 1
    (line,) = trained.stderr.strip().splitlines()
    assert line.startswith("error: the store embedded:") and "holds no products" in line
    encoded = kgrec("encode", "--store", store, "--no-progress")
    assert encoded.returncode == 0 and "0 products" in encoded.stdout
    assert encoded.stderr == ""


def test_a_misspelt_relation_is_reported_before_torch_loads(tmp_path):
    code = (
        "import sys; from fusion.cli import main\n"
        "try:\n    main()\nfinally:\n    print('torch' in sys.modules, file=sys.stderr)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "train", "--relation", "nope", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: relation: unknown relation 'nope'; the graph has also_bought, also_viewed, "
        "bought_together",
        "False",
    ]
