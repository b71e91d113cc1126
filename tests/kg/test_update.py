"""`kgrec update` on real data, against both stores: a store built from the Magazine catalogue
minus a quarter of its products, updated with a delta that adds them (several were stubs),
changes one product, brings the ratings and removes one product, ends up exactly as a full
build of the final catalogue followed by that removal; re-running the update changes nothing;
an update killed midway re-runs to the same graph."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fusion.cli import app
from kg.build import build
from kg.stores import EmbeddedStore, Neo4jStore, Snapshot, open_store
from kg.update import UpdateSummary, update

MAGAZINE = Path(os.environ["KGREC_DATA"]) / "amazon-magazine-2018"
META = MAGAZINE / "meta_Magazine_Subscriptions.json.gz"
RATINGS = MAGAZINE / "ratings.csv.gz"
KGREC = [sys.executable, "-c", "from fusion.cli import main; main()"]

# Both stay in the base catalogue and have one metadata line each. Their brands are shared with
# other products and every user who rated REMOVED rated something else, so neither the change
# nor the removal leaves a node a full build would not have.
CHANGED = "B000ILZ6MS"
REMOVED = "B000ILVZJ6"
NEW_BRAND = "Hearst Magazines"


@dataclass
class Delta:
    base: Path  # the catalogue first built
    delta: Path  # every fourth product, plus CHANGED with a new title and brand
    final: Path  # base + delta as one catalogue
    remove: Path  # REMOVED and an id the store never held


def _change(line: str) -> str:
    obj = json.loads(line)
    return json.dumps({**obj, "title": "Model Aviation (new title)", "brand": NEW_BRAND})


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Delta:
    out = tmp_path_factory.mktemp("delta")
    with gzip.open(META, "rt", encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f if line.strip()]
    asins = sorted({json.loads(line)["asin"] for line in lines})
    moved = set(asins[::4])  # split by product, so a product's repeated lines stay together
    base = [line for line in lines if json.loads(line)["asin"] not in moved]
    added = [line for line in lines if json.loads(line)["asin"] in moved]
    changed = [_change(line) for line in base if json.loads(line)["asin"] == CHANGED]
    kept = [line for line in base if json.loads(line)["asin"] != CHANGED]
    names = ("base.jsonl", "delta.jsonl", "final.jsonl", "remove.txt")
    paths = Delta(*(out / name for name in names))
    contents = {paths.base: base, paths.delta: added + changed, paths.final: kept + changed + added}
    for path, rows in contents.items():
        path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    paths.remove.write_text(f"{REMOVED}\n\nNOT-A-PRODUCT\n{REMOVED}\n", encoding="utf-8")
    return paths


@pytest.fixture(scope="module")
def reference(files: Delta, tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    """A full build of the final catalogue + ratings, then the removal."""
    tmp = tmp_path_factory.mktemp("reference")
    build(files.final, RATINGS, store_uri=f"embedded:{tmp}", rejects_path=tmp / "r.jsonl")
    with EmbeddedStore(tmp) as store:
        assert store.remove_products([REMOVED]) == 1
        return store.snapshot()


def _update(files: Delta, uri: str, tmp_path: Path) -> UpdateSummary:
    rejects = tmp_path / "u.jsonl"
    return update(files.delta, RATINGS, files.remove, store_uri=uri, rejects_path=rejects)


def test_update_converges_to_a_full_build(
    files: Delta, reference: Snapshot, store_uri: str, tmp_path: Path
) -> None:
    build(files.base, store_uri=store_uri, rejects_path=tmp_path / "b.jsonl")
    with open_store(store_uri) as store:
        stubs = [p.id for p in store.snapshot().products if not p.in_catalogue]
    first = _update(files, store_uri, tmp_path)
    with open_store(store_uri) as store:
        assert store.snapshot() == reference
        changed = store.get_products([CHANGED])[CHANGED]
        arrived = set(store.get_products(stubs)) & set(first.product_ids_changed)
        now = store.get_products(arrived)
    assert (changed.title, changed.brand) == ("Model Aviation (new title)", NEW_BRAND)
    assert CHANGED in first.product_ids_changed
    # Stubs of the base graph that the delta lists became catalogue products.
    assert arrived and all(p.in_catalogue for p in now.values())
    assert first.products_changed == len(arrived) + 1  # those and CHANGED
    assert first.product_ids_changed == sorted(first.product_ids_changed)
    assert len(first.product_ids_changed) == first.products_new + first.products_changed
    assert first.nodes_added["Product"] == first.products_new
    assert first.interactions_new == len(reference.interactions)  # the base had none
    assert (first.products_removed, first.unknown_removals) == (1, ["NOT-A-PRODUCT"])
    assert first.ignored_for_removal > 0  # REMOVED's ratings and the edges naming it

    again = _update(files, store_uri, tmp_path)
    assert (again.products_new, again.products_changed, again.products_removed) == (0, 0, 0)
    # The delta's rows, now stored as they are; last time's new stubs are mere references now.
    rows = first.products_new - first.cleaning.stubs_added + first.products_changed
    assert again.products_unchanged == rows == 581  # a quarter of 2320 products, and CHANGED
    assert again.product_ids_changed == [] and again.interactions_new == 0
    assert not any(again.nodes_added.values()) and not any(again.relationships_added.values())
    assert not any(again.relationships_removed.values())
    assert again.unknown_removals == [REMOVED, "NOT-A-PRODUCT"]
    with open_store(store_uri) as store:
        assert store.snapshot() == reference


def test_drop_mode_keeps_edges_to_stored_products(files: Delta, tmp_path: Path) -> None:
    """With external="drop", the delta's edges to products only the store holds are kept (the
    base's edges to delta products were dropped by its build: no update brings them back)."""
    ref, uri = tmp_path / "ref", f"embedded:{tmp_path / 'g'}"
    build(files.final, store_uri=f"embedded:{ref}", external="drop", rejects_path=ref / "r.jsonl")
    build(files.base, store_uri=uri, external="drop", rejects_path=tmp_path / "b.jsonl")
    summary = update(files.delta, store_uri=uri, external="drop", rejects_path=tmp_path / "u.jsonl")
    assert summary.cleaning.stubs_added == 0
    delta = set(summary.product_ids_changed)
    with EmbeddedStore(ref) as expected, open_store(uri) as store:
        want, got = expected.snapshot(), store.snapshot()
    assert got.products == want.products
    into_store = 0
    for rel, pairs in want.edges.items():
        from_delta = {(s, d) for s, d in pairs if s in delta}
        assert from_delta <= set(got.edges[rel]) <= set(pairs)
        into_store += sum(d not in delta for _, d in from_delta)
    assert into_store > 0


def _cli(*args: str):
    return CliRunner().invoke(app, ["update", *args])


def test_cli_summary_and_errors(files: Delta, tmp_path: Path) -> None:
    uri = f"embedded:{tmp_path / 'g'}"
    build(files.base, store_uri=uri, rejects_path=tmp_path / "b.jsonl")
    args = ["--store", uri, "--rejects", str(tmp_path / "r.jsonl")]
    result = _cli("--catalogue", str(files.delta), "--remove", str(files.remove), *args, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["products_removed"] == 1 and CHANGED in summary["product_ids_changed"]
    table = _cli("--remove", str(files.remove), *args)  # a removal-only update
    assert table.exit_code == 0, table.output
    assert "products: removed" in table.stdout and "NOT-A-PRODUCT" in table.stderr
    for bad in ([], ["--remove", str(tmp_path / "nope.txt")], ["--interactions", str(RATINGS)]):
        failed = _cli(*bad, *args)
        assert failed.exit_code == 1 and "error:" in failed.output
        assert "Traceback" not in failed.output


def test_killed_update_reruns_to_the_same_graph(
    files: Delta, reference: Snapshot, neo4j_clean, tmp_path: Path
) -> None:
    build(files.base, store_uri=neo4j_clean.uri, rejects_path=tmp_path / "b.jsonl")
    args = [*KGREC, "update", "--catalogue", str(files.delta), "--interactions", str(RATINGS)]
    args += ["--remove", str(files.remove), "--store", neo4j_clean.uri]
    args += ["--rejects", str(tmp_path / "r.jsonl"), "--json"]
    with Neo4jStore(neo4j_clean.uri, neo4j_clean.user, neo4j_clean.password) as store:
        try:
            proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            # The base has no users: kill once the first user batches are in, i.e. after the
            # products were upserted and before the interactions and the removal.
            while proc.poll() is None and store.counts()["nodes"]["User"] == 0:
                time.sleep(0.1)
            proc.send_signal(signal.SIGKILL)
            assert proc.wait() == -signal.SIGKILL, "the update finished before it was killed"
            assert store.snapshot() != reference
            rerun = subprocess.run(args, capture_output=True, text=True, timeout=600)
            assert rerun.returncode == 0, rerun.stderr
            summary = json.loads(rerun.stdout)
            assert summary["products_removed"] == 1 and summary["interactions_new"] > 0
            assert store.snapshot() == reference
        finally:
            store.clear()  # in memory-bounded batches, for the next test's fixture
