"""Every interaction event is kept, in both stores and in the export: the REES46 sample (views,
carts and purchases of the same products) builds with every valid event and its reconciliation
line (rows read = loaded + rejected + exact duplicates); a ratings file's exact duplicates are
counted and stored once while a second, different rating of an item stays; re-runs are
idempotent."""

from __future__ import annotations

import os
from pathlib import Path

from typer.testing import CliRunner

from fusion.cli import app
from kg.build import build
from kg.export import INTERACTION_KINDS, to_heterodata
from kg.stores import open_store
from kg.update import update

REES46 = Path(os.environ["KGREC_DATA"]) / "rees46-2019-oct-sample" / "events-2019-10-01.csv.gz"
ROWS = 17_435  # data lines: 17,434 events, then one cut off mid-row
DUPLICATES = 5  # exact duplicate rows in the sample
LOADED = ROWS - 1 - DUPLICATES  # 17,429
PAIRS = 12_107  # distinct (user, product) pairs: all a one-relationship-per-pair store kept


def test_rees46_keeps_every_event(store_uri: str, tmp_path: Path) -> None:
    summary = build(REES46, store_uri=store_uri, rejects_path=tmp_path / "r.jsonl")
    events = summary.events
    assert (events.read, events.loaded, events.rejected, events.duplicates, events.dropped) == (
        ROWS, LOADED, 1, DUPLICATES, 0
    )  # fmt: skip
    assert events.line() == (
        "interaction rows: read 17,435 = loaded 17,429 + rejected 1 + exact duplicates 5"
    )
    assert summary.relationships["INTERACTED"] == LOADED
    with open_store(store_uri) as store:
        snap = store.snapshot()
    assert len({(r.user, r.product) for r in snap.interactions}) == PAIRS
    assert sum(r.kind == "purchase" for r in snap.interactions) == 214
    assert all(r.price is not None and r.session for r in snap.interactions)
    assert len({r.session for r in snap.interactions}) == 5_066

    data = to_heterodata(snap)
    inter = data["user", "interacted", "product"]
    assert inter.num_edges == LOADED == data["product", "rev_interacted", "user"].num_edges
    assert not inter.price.isnan().any() and int(inter.session.max()) == 5_066 - 1
    # README: 17,055 views, 165 carts, 214 purchases; 4 of the duplicates are views, 1 a cart.
    kinds = inter.kind.bincount(minlength=len(INTERACTION_KINDS)).tolist()
    assert kinds[2:5] == [17_055 - 4, 165 - 1, 214]

    again = build(REES46, store_uri=store_uri, rejects_path=tmp_path / "r.jsonl")
    assert again.relationships == summary.relationships and again.events == events
    repeat = update(REES46, store_uri=store_uri, rejects_path=tmp_path / "u.jsonl")
    assert repeat.interactions_new == 0 and repeat.events.loaded == LOADED


RATINGS = """\
u1,i1,5
u1,i1,5
u1,i1,3
u2,i1,4
u2,i2,2
u2,i2,2
u2,i2,2
"""


def test_ratings_duplicates_counted(store_uri: str, tmp_path: Path) -> None:
    """A ratings file has no time: an exactly repeated row is a duplicate, counted and stored
    once; a different rating of the same item is another event."""
    ratings = tmp_path / "ratings.csv"
    ratings.write_text(RATINGS, encoding="utf-8")
    catalogue = tmp_path / "products.csv"
    catalogue.write_text("id,title\ni1,One\ni2,Two\n", encoding="utf-8")
    args = ["build", "--catalogue", str(catalogue), "--interactions", str(ratings)]
    args += ["--store", store_uri, "--rejects", str(tmp_path / "r.jsonl")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    line = "interaction rows: read 7 = loaded 4 + rejected 0 + exact duplicates 3"
    assert line in result.output.replace("\n", " ")
    with open_store(store_uri) as store:
        assert store.counts()["relationships"]["INTERACTED"] == 4
        ratings_of = sorted((r.user, r.product, r.rating) for r in store.snapshot().interactions)
    assert ratings_of == [
        ("u1", "i1", 3.0),
        ("u1", "i1", 5.0),
        ("u2", "i1", 4.0),
        ("u2", "i2", 2.0),
    ]
