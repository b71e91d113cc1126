"""`kgrec build`: summary JSON, idempotent re-runs, clean errors, and a build killed midway
that re-runs to exactly the counts of a clean build."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

from typer.testing import CliRunner

from fusion.cli import app
from kg.build import build
from kg.stores import Neo4jStore

MAGAZINE = Path(os.environ["KGREC_DATA"]) / "amazon-magazine-2018"
META = MAGAZINE / "meta_Magazine_Subscriptions.json.gz"
RATINGS = MAGAZINE / "ratings.csv.gz"
KGREC = [sys.executable, "-c", "from fusion.cli import main; main()"]


def _cli(*args: str):
    return CliRunner().invoke(app, ["build", *args])


def test_json_summary_and_rerun(tmp_path: Path) -> None:
    args = ["--catalogue", str(META), "--interactions", str(RATINGS)]
    args += ["--store", f"embedded:{tmp_path / 'g'}", "--rejects", str(tmp_path / "r.jsonl")]
    first = _cli(*args, "--json")
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert summary["nodes"]["User"] == 72_098
    assert summary["nodes"]["Product"] == 2320 + summary["cleaning"]["stubs_added"]
    assert set(summary["relationships"]) == {
        "MADE_BY", "IN_CATEGORY", "SUBCATEGORY_OF", "ALSO_BOUGHT", "ALSO_VIEWED",
        "BOUGHT_TOGETHER", "INTERACTED",
    }  # fmt: skip
    assert summary["rejected"] == 0 and Path(summary["rejects_path"]).exists()
    again = json.loads(_cli(*args, "--json").stdout)
    assert (again["nodes"], again["relationships"]) == (summary["nodes"], summary["relationships"])
    table = _cli(*args)
    assert table.exit_code == 0 and "INTERACTED" in table.stdout


def test_errors_are_short_and_nonzero(tmp_path: Path) -> None:
    rejects = ["--rejects", str(tmp_path / "r.jsonl")]
    missing = _cli(
        "--catalogue", str(tmp_path / "nope.json"), "--store", f"embedded:{tmp_path}", *rejects
    )
    assert missing.exit_code == 1 and "nope.json" in missing.output
    down = _cli("--catalogue", str(META), "--store", "bolt://127.0.0.1:1", *rejects)
    assert down.exit_code == 1 and "bolt://127.0.0.1:1" in down.output
    for result in (missing, down):
        assert "Traceback" not in result.output and "error:" in result.output


def test_killed_build_reruns_to_clean_counts(neo4j_clean, tmp_path: Path) -> None:
    reference = build(META, RATINGS, store_uri=f"embedded:{tmp_path / 'ref'}",
                      rejects_path=tmp_path / "ref.jsonl")  # fmt: skip
    args = [*KGREC, "build", "--catalogue", str(META), "--interactions", str(RATINGS)]
    args += ["--store", neo4j_clean.uri, "--rejects", str(tmp_path / "r.jsonl"), "--json"]
    args += ["--no-bulk"]  # the Bolt path, whose batches a kill interrupts
    with Neo4jStore(neo4j_clean.uri, neo4j_clean.user, neo4j_clean.password) as store:
        try:
            proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            # Kill once a few relationship batches are in, i.e. well inside the write.
            while proc.poll() is None and store.counts()["relationships"]["IN_CATEGORY"] == 0:
                time.sleep(0.1)
            proc.send_signal(signal.SIGKILL)
            assert proc.wait() == -signal.SIGKILL, "the build finished before it was killed"
            partial = store.counts()
            assert partial["relationships"] != reference.relationships
            rerun = subprocess.run(args, capture_output=True, text=True, timeout=600)
            assert rerun.returncode == 0, rerun.stderr
            summary = json.loads(rerun.stdout)
            assert summary["nodes"] == reference.nodes == store.counts()["nodes"]
            assert summary["relationships"] == reference.relationships
        finally:
            store.clear()  # in memory-bounded batches, for the next test's fixture


def test_rejects_file_always_written_and_rows_reconciled(tmp_path: Path) -> None:
    good = (Path(__file__).parent.parent / "fixtures" / "meta_2018_bad.jsonl").read_text()
    meta = tmp_path / "meta.jsonl"
    meta.write_text("{abc\n" + good.splitlines()[0] + "\n")
    rejects = tmp_path / "r.jsonl"
    args = ["--catalogue", str(meta), "--store", f"embedded:{tmp_path / 'g'}"]
    result = _cli(*args, "--rejects", str(rejects), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["nodes"]["Product"] - summary["cleaning"]["stubs_added"] == 1
    assert summary["files"] == {
        str(meta): {"rows_read": 2, "loaded": 1, "rejected": 1, "duplicates": 0, "conflicts": 0}
    }
    assert [json.loads(line)["line"] for line in rejects.read_text().splitlines()] == [1]
    table = _cli(*args, "--rejects", str(rejects))
    assert "2 rows read = 1 loaded + 1 rejected + 0 duplicates + 0 conflicts" in table.stderr

    meta.write_text("{abc\n")  # nothing readable: an error, and the rejects file says why
    failed = _cli(*args, "--rejects", str(rejects))
    assert failed.exit_code == 1 and str(rejects) in failed.output
    assert json.loads(rejects.read_text())["line"] == 1

    clean = tmp_path / "clean.jsonl"
    clean.write_text(good.splitlines()[0] + "\n")
    assert _cli("--catalogue", str(clean), *args[2:], "--rejects", str(rejects)).exit_code == 0
    assert rejects.read_text() == ""  # no stale rejects from the run before


def test_store_password_is_never_printed(neo4j_clean, tmp_path: Path) -> None:
    """A password given in --store is used, and shown as *** in errors and the summary."""
    secret = "Wr0ng-S3cret"
    host = neo4j_clean.uri.partition("://")[2]
    meta = Path(__file__).parent.parent / "fixtures" / "meta_2023.jsonl"
    args = ["--catalogue", str(meta), "--rejects", str(tmp_path / "r.jsonl")]
    for where in (host, "127.0.0.1:1"):  # wrong password; nothing listening
        result = _cli(*args, "--store", f"bolt://neo4j:{secret}@{where}")
        assert result.exit_code == 1 and "error:" in result.output
        assert secret not in result.output and f"bolt://neo4j:***@{where}" in result.output
    password = quote(neo4j_clean.password, safe="")
    result = _cli(*args, "--store", f"bolt://{neo4j_clean.user}:{password}@{host}", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["store"] == f"bolt://{neo4j_clean.user}:***@{host}"
    assert password not in result.output
