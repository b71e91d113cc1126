"""The embedded store as a database: an old one-JSON-file store is migrated, one writer at a time
(two real `kgrec update` processes at once both land, or a writer that cannot get the lock fails
clearly), and an update killed mid-transaction leaves the previous graph, which the re-run
then changes in full."""

from __future__ import annotations

import gzip
import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kg.stores import EmbeddedStore, Snapshot, StoreError
from kg.stores.base import InteractionRow
from kg.stores.embedded import DB_FILE, OLD_GRAPH_FILE
from tests.kg.test_stores import small_catalogue

KGREC = [sys.executable, "-c", "from fusion.cli import main; main()"]


def test_old_json_store_is_migrated(tmp_path: Path) -> None:
    """The layout the JSON-file store wrote: one gzipped object of sorted lists, interactions
    as [user, product, rating, ts, kind] (one per pair), maybe a temp file of a killed write."""
    old = {
        "products": [["p1", "Lipstick", "Red", 9.5, True], ["s1", "", "", None, False]],
        "brands": ["acme"],
        "categories": [["Beauty", "Beauty"]],
        "users": ["u1"],
        "edges": {
            "MADE_BY": [["p1", "acme"]],
            "IN_CATEGORY": [["p1", "Beauty"]],
            "SUBCATEGORY_OF": [],
            "ALSO_BOUGHT": [["p1", "s1"]],
            "ALSO_VIEWED": [],
            "BOUGHT_TOGETHER": [],
        },
        "interactions": [["u1", "p1", 4.0, 20.0, "rating"], ["u1", "s1", None, 3.0, "view"]],
    }
    with gzip.open(tmp_path / OLD_GRAPH_FILE, "wt", encoding="utf-8") as f:
        json.dump(old, f)
    (tmp_path / ".graph-abc123.tmp").write_bytes(b"half a file")
    with EmbeddedStore(tmp_path) as store:
        snap = store.snapshot()
    assert [p.id for p in snap.products] == ["p1", "s1"] and snap.brands == ["acme"]
    assert snap.edges["ALSO_BOUGHT"] == [("p1", "s1")]
    assert snap.interactions == [
        InteractionRow.of("u1", "p1", 4.0, 20.0, "rating"),
        InteractionRow.of("u1", "s1", None, 3.0, "view"),
    ]
    names = {p.name for p in tmp_path.iterdir()}
    assert OLD_GRAPH_FILE + ".migrated" in names and DB_FILE in names
    assert OLD_GRAPH_FILE not in names and not any(n.endswith(".tmp") for n in names)
    with EmbeddedStore(tmp_path) as again:  # opened again: nothing to migrate, same graph
        assert again.snapshot() == snap


def test_unreadable_old_store_is_named(tmp_path: Path) -> None:
    (tmp_path / OLD_GRAPH_FILE).write_bytes(b"not gzip")
    with pytest.raises(StoreError, match=f"old-format embedded store .*{OLD_GRAPH_FILE}"):
        EmbeddedStore(tmp_path)


def test_a_writer_that_cannot_get_the_lock_fails_clearly(tmp_path: Path) -> None:
    with EmbeddedStore(tmp_path) as first, first.transaction():
        first.write(small_catalogue())
        with EmbeddedStore(tmp_path, lock_timeout=0.2) as second:
            with pytest.raises(StoreError, match="being written by another process"):
                second.write(small_catalogue())
            assert second.counts()["nodes"]["Product"] == 0  # readers see the last commit
    with EmbeddedStore(tmp_path) as store:
        assert store.snapshot() == Snapshot.from_catalogue(small_catalogue())


def _delta(path: Path, prefix: str) -> Path:
    path.write_text("id,title\n" + "".join(f"{prefix}{i},{prefix} {i}\n" for i in range(5)))
    return path


def _update(store: Path, delta: Path, tmp_path: Path) -> subprocess.Popen:
    args = [*KGREC, "update", "--catalogue", str(delta), "--store", f"embedded:{store}"]
    args += ["--rejects", str(tmp_path / f"{delta.stem}.rejects"), "--json"]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_concurrent_updates_both_land(tmp_path: Path) -> None:
    """Two `kgrec update` processes on one store, started while a third writer holds the lock,
    so they certainly overlap: each waits its turn, and both deltas are there afterwards."""
    store = tmp_path / "graph"
    with EmbeddedStore(store) as holder, holder.transaction():
        holder.write(small_catalogue())
        procs = [_update(store, _delta(tmp_path / f"{p}.csv", p), tmp_path) for p in "ab"]
        time.sleep(3)  # both start and reach the lock meanwhile
        assert [proc.poll() for proc in procs] == [None, None]
    results = [proc.communicate(timeout=120) for proc in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        assert json.loads(out)["products_new"] == 5
    with EmbeddedStore(store) as graph:
        ids = {p.id for p in graph.snapshot().products}
    assert {f"{p}{i}" for p in "ab" for i in range(5)} <= ids
    assert len(ids) == 4 + 10


def _lock_held(db: Path) -> bool:
    probe = sqlite3.connect(db, timeout=0, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        probe.close()


def test_killed_update_changes_nothing_and_reruns_in_full(tmp_path: Path) -> None:
    store = tmp_path / "graph"
    with EmbeddedStore(store) as graph:
        graph.write(small_catalogue())
        before = graph.snapshot()
    delta = tmp_path / "delta.csv"
    delta.write_text("id,title\n" + "".join(f"n{i},new {i}\n" for i in range(20_000)))
    events = tmp_path / "events.csv"
    events.write_text("user,item,rating\n" + "".join(f"u{i % 997},n{i},4\n" for i in range(20_000)))
    args = [*KGREC, "update", "--catalogue", str(delta), "--interactions", str(events)]
    args += ["--store", f"embedded:{store}", "--rejects", str(tmp_path / "r.jsonl"), "--json"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    while proc.poll() is None and not _lock_held(store / DB_FILE):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the update finished before it was killed"
    with EmbeddedStore(store) as graph:
        assert graph.snapshot() == before
    assert not [p.name for p in store.iterdir() if p.name.endswith(".tmp")]
    rerun = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert (summary["products_new"], summary["interactions_new"]) == (20_000, 20_000)
