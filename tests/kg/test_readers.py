"""Readers: real-data counts (as in /work/shared/data/README.md, before cleaning) and bad input."""

from __future__ import annotations

import gzip
import json
import os
import shutil
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from kg.errors import InvalidArgumentError
from kg.readers import (
    detect_format,
    read_amazon2014,
    read_amazon2018,
    read_amazon2023,
    read_beauty,
    read_catalogue,
    read_interactions,
    read_rees46,
    read_table_catalogue,
)
from kg.readers.generic import INTERACTION_KEYS, parse_columns
from kg.rejects import BadInputError, RejectLog
from kg.schema import CATEGORY_PATH_SEP, Rel

DATA = Path(os.environ["KGREC_DATA"])
MAGAZINE = DATA / "amazon-magazine-2018"
BEAUTY = DATA / "amazon-beauty-2014"
REES46 = DATA / "rees46-2019-oct-sample" / "events-2019-10-01.csv.gz"
FIXTURES = Path(__file__).parent.parent / "fixtures"
REES46_HEADER = (
    "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session"
)


def lines_of(log: RejectLog) -> dict[int, str]:
    return {r.line: r.reason for r in log.rejects}


@pytest.fixture(scope="module")
def magazine():
    log = RejectLog()
    catalogue = read_catalogue(
        MAGAZINE / "meta_Magazine_Subscriptions.json.gz",
        interactions=MAGAZINE / "ratings.csv.gz",
        log=log,
    )
    return catalogue, log


@pytest.fixture(scope="module")
def beauty():
    log = RejectLog()
    return read_catalogue(BEAUTY, log=log), log


def test_magazine_counts_match_readme(magazine):
    catalogue, log = magazine
    assert len(log) == 0
    assert len(catalogue.products) == 2320
    assert catalogue.duplicate_products == 3385 - 2320
    assert len(catalogue.brands) == 947
    # README "312 distinct category paths (227 names)" counts every prefix of the raw paths
    # (297 distinct leaf paths); raw means `&amp;` and `&` spellings still differ here.
    leaf_paths = {c for p in catalogue.products.values() for c in p.categories}
    assert len(leaf_paths) == 297
    parts = [tuple(path.split(CATEGORY_PATH_SEP)) for path in leaf_paths]
    prefixes = {p[:i] for p in parts for i in range(1, len(p) + 1)}
    assert len(prefixes) == 312
    assert len({name for p in prefixes for name in p}) == 227
    assert len(catalogue.interactions) == 88_368
    assert len(catalogue.users) == 72_098
    assert len({i.product for i in catalogue.interactions}) == 2428
    assert {i.kind for i in catalogue.interactions} == {"rating"}
    assert all(i.ts is None for i in catalogue.interactions)


def test_beauty_counts_match_readme(beauty):
    catalogue, log = beauty
    assert len(log) == 0
    products = catalogue.products
    assert len(products) == 12_101
    assert len(catalogue.users) == 22_363
    assert len(catalogue.interactions) == 198_502
    # README: 10,021 products have a brand index; 18 of them point at brand.txt's one blank
    # name (index 952), so 10,003 have a brand name.
    assert sum(1 for p in products.values() if p.brand) == 10_003
    assert sum(len(p.categories) for p in products.values()) == 49_756
    assert len(catalogue.categories) == 248
    assert all(c.parent is None and c.id == c.name for c in catalogue.categories.values())
    edges = Counter(e.rel for e in catalogue.edges)
    assert edges == {Rel.ALSO_BOUGHT: 891_182, Rel.ALSO_VIEWED: 155_350, Rel.BOUGHT_TOGETHER: 9021}
    inside = Counter(e.rel for e in catalogue.edges if e.dst in products)
    assert inside == {Rel.ALSO_BOUGHT: 239_345, Rel.ALSO_VIEWED: 155_350, Rel.BOUGHT_TOGETHER: 9021}
    assert sum(1 for p in products.values() if not p.title.strip()) == 7


def test_beauty_sequences_use_position_as_time(beauty):
    catalogue, _ = beauty
    first_user = catalogue.interactions[0].user
    sequence = [i for i in catalogue.interactions if i.user == first_user]
    assert [i.ts for i in sequence] == [float(n) for n in range(len(sequence))]
    assert all(i.kind == "sequence" and i.rating is None for i in sequence)


def test_rees46_cut_last_line_is_rejected():
    log = RejectLog()
    catalogue = read_rees46(REES46, log)
    assert len(log) == 1
    reject = log.rejects[0]
    assert reject.line == 17_436
    assert "expected 9 fields" in reject.reason and "got 8" in reject.reason
    assert len(catalogue.interactions) == 17_434
    assert Counter(i.kind for i in catalogue.interactions) == {
        "view": 17_055,
        "cart": 165,
        "purchase": 214,
    }
    assert len(catalogue.users) == 4504
    assert len(catalogue.products) == 6493
    assert all(p.price is not None for p in catalogue.products.values())
    first = catalogue.interactions[0]
    assert first.ts == 1_569_888_000.0  # 2019-10-01 00:00:00 UTC
    assert catalogue.products["3900821"].categories == [
        CATEGORY_PATH_SEP.join(["appliances", "environment", "water_heater"])
    ]


def test_rees46_strict_raises_on_cut_line():
    with pytest.raises(BadInputError, match=r"rees46_head\.csv\.gz:202: truncated"):
        read_rees46(FIXTURES / "rees46_head.csv.gz", RejectLog(strict=True))


def test_bad_rows_are_logged_and_valid_rows_kept():
    path = FIXTURES / "meta_2018_bad.jsonl"
    log = RejectLog()
    catalogue = read_amazon2018(path, log)
    rejects = lines_of(log)
    assert set(rejects) == {5, 6, 7, 10}
    assert "Expecting" in rejects[5] or "Unterminated" in rejects[5]  # JSON syntax error
    assert rejects[6] == "missing asin"
    assert rejects[7] == "price: expected a price, got list"
    assert all(r.file == str(path) for r in log.rejects)
    assert log.rejects[0].raw.startswith('{"asin": "B0BROKEN01"')
    assert set(catalogue.products) == {
        "B00005N7NQ",
        "B00005N7OC",
        "B00005N7OD",
        "B00005N7O9",
        "B0GOOD0001",
    }
    assert catalogue.duplicate_products == 1
    good = catalogue.products["B0GOOD0001"]
    assert good.price == 12.99
    assert good.categories == ["Magazine Subscriptions > Home &amp; Garden"]
    assert [(e.rel, e.dst) for e in catalogue.edges if e.src == "B0GOOD0001"] == [
        (Rel.ALSO_VIEWED, "B00005N7NQ")
    ]


def test_strict_mode_raises_at_first_bad_row():
    with pytest.raises(BadInputError, match=r"meta_2018_bad\.jsonl:5: "):
        read_amazon2018(FIXTURES / "meta_2018_bad.jsonl", RejectLog(strict=True))
    # No log at all means nobody would see the rejects: strict too.
    with pytest.raises(BadInputError, match=r":5: "):
        read_catalogue(FIXTURES / "meta_2018_bad.jsonl")


def test_amazon2014_layout():
    log = RejectLog()
    catalogue = read_amazon2014(FIXTURES / "meta_2014.txt", log)
    assert lines_of(log) == {
        4: "categories: expected a list of root->leaf lists",
        6: "missing asin",
    }
    tutu = catalogue.products["0000031852"]
    assert tutu.brand == "Coxlures" and tutu.price == 3.17
    assert tutu.categories == [
        "Sports & Outdoors > Other Sports > Dance",
        "Clothing, Shoes & Jewelry > Girls",
    ]
    assert catalogue.products["0000031895"].description.startswith("Dance tutu")
    assert "0000032034" in catalogue.products
    assert Counter(e.rel for e in catalogue.edges) == {
        Rel.ALSO_BOUGHT: 3,
        Rel.ALSO_VIEWED: 1,
        Rel.BOUGHT_TOGETHER: 1,
    }


def test_amazon2023_layout():
    log = RejectLog()
    catalogue = read_amazon2023(FIXTURES / "meta_2023.jsonl", log)
    assert lines_of(log) == {4: "missing parent_asin"}
    howard = catalogue.products["B01CUPMQZE"]
    assert (howard.brand, howard.price, howard.categories) == (
        "Howard Products",
        12.5,
        ["Beauty > Skin Care"],
    )
    assert catalogue.products["B000FOI48G"].price is None  # "None" as text
    assert catalogue.products["B000FOI48G"].brand is None
    assert [(e.rel, e.src, e.dst) for e in catalogue.edges] == [
        (Rel.BOUGHT_TOGETHER, "B01CUPMQZE", "B076WQZGPM")
    ]


def test_review_and_rating_interactions():
    log = RejectLog()
    reviews = read_interactions(FIXTURES / "reviews_2018.jsonl", log).interactions
    assert [(i.user, i.product, i.rating, i.ts, i.kind) for i in reviews] == [
        ("A2SUAM1J3GNN3B", "B00005N7NQ", 5.0, 1_252_800_000.0, "review"),
        ("A1CNQTCRQ35IMM", "B00005N7OC", 3.0, 1_399_334_400.0, "review"),
    ]
    assert lines_of(log) == {3: "rating: expected a number, got 'five'"}

    recent = read_interactions(FIXTURES / "reviews_2023.jsonl", log).interactions
    assert recent[0].ts == pytest.approx(1_588_687_728.923)  # milliseconds -> seconds
    assert recent[1].product == "B081TJ8YS4"  # parent_asin, the 2023 catalogue key

    log = RejectLog()
    ratings = read_interactions(FIXTURES / "ratings_noheader.csv", log).interactions
    assert [(i.user, i.rating, i.ts) for i in ratings] == [
        ("A1", 5.0, 1_252_800_000.0),
        ("A2", 4.0, None),
    ]
    assert set(lines_of(log)) == {3}


def test_nan_is_a_missing_number_and_an_infinity_a_reject(tmp_path):
    ratings = tmp_path / "ratings.csv"
    ratings.write_text("u1,p1,nan,5\nu2,p1,4,inf\nu3,p2,NaN,\nu4,p2,-Infinity,1\n")
    log = RejectLog()
    rows = read_interactions(ratings, log).interactions
    assert [(i.user, i.rating, i.ts) for i in rows] == [("u1", None, 5.0), ("u3", None, None)]
    assert lines_of(log) == {
        2: "timestamp: expected a finite number, got 'inf'",
        4: "rating: expected a finite number, got '-Infinity'",
    }


def test_generic_tables_with_column_mappings():
    log = RejectLog()
    columns = {"id": "sku", "title": "name", "brand": "maker", "category": "cat_path"}
    columns["price"] = "price"
    catalogue = read_table_catalogue(FIXTURES / "products.csv", columns, log=log, category_sep="/")
    assert set(catalogue.products) == {"SKU-1", "SKU-2", "SKU-3"}
    kettle = catalogue.products["SKU-1"]
    assert (kettle.title, kettle.brand, kettle.price) == ("Blue Kettle", "Acme", 19.99)
    assert kettle.categories == ["Home > Kitchen > Kettles"]
    assert catalogue.products["SKU-3"].price is None and catalogue.products["SKU-3"].brand is None
    rejects = lines_of(log)
    assert rejects[5] == "missing sku"
    assert rejects[6].startswith("truncated or malformed row: expected 5 fields")

    log = RejectLog()
    mapping = {"user": "uid", "item": "product", "rating": "stars", "ts": "when", "kind": "action"}
    events = read_table_catalogue(FIXTURES / "events.jsonl", interactions=mapping, log=log)
    assert [(i.user, i.product, i.rating, i.ts, i.kind) for i in events.interactions] == [
        ("u1", "SKU-1", 5.0, 1_704_164_645.0, "purchase"),  # ISO time, taken as UTC
        ("u1", "SKU-2", None, 1_704_164_645.0, "view"),
    ]
    assert set(lines_of(log)) == {3, 4}
    assert "unknown interaction kind 'wishlist'" in lines_of(log)[4]


def test_format_detection_and_override():
    assert detect_format(BEAUTY) == "beauty"
    assert detect_format(MAGAZINE / "meta_Magazine_Subscriptions.json.gz") == "amazon2018"
    assert detect_format(FIXTURES / "meta_2014.txt") == "amazon2014"
    assert detect_format(FIXTURES / "meta_2023.jsonl") == "amazon2023"
    assert detect_format(REES46) == "rees46"
    assert detect_format(FIXTURES / "products.csv") == "csv"
    assert detect_format(FIXTURES / "events.jsonl") == "jsonl"
    log = RejectLog()
    forced = read_catalogue(FIXTURES / "meta_2023.jsonl", fmt="amazon2018", log=log)
    assert set(forced.products) == {"B000000001"}  # the only line with an `asin`
    assert set(lines_of(log)) == {1, 2, 3}
    with pytest.raises(ValueError, match="unknown format"):
        read_catalogue(FIXTURES / "products.csv", fmt="xml")


def test_unreadable_files_are_rejects(tmp_path):
    log = RejectLog()
    assert not read_catalogue(tmp_path / "missing.jsonl", log=log).products
    assert log.rejects[0].line == 0 and "unreadable file" in log.rejects[0].reason

    good = (FIXTURES / "meta_2023.jsonl").read_bytes()
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(gzip.compress(good)[:-30])  # gzip stream ends early
    log = RejectLog()
    catalogue = read_amazon2023(cut, log)
    assert any("unreadable file" in r.reason for r in log.rejects)
    assert "B01CUPMQZE" in catalogue.products  # lines before the damage still load

    with pytest.raises(BadInputError, match="unreadable file"):
        read_beauty(tmp_path, RejectLog(strict=True))  # no product.txt here


# One line per layout, for product (or event) number i; `name` is where a non-UTF-8 byte goes.
_LINES = {
    "amazon2014": lambda i, name: f"{{'asin': 'P{i:02}', 'title': '{name}'}}",
    "amazon2018": lambda i, name: f'{{"asin": "P{i:02}", "title": "{name}"}}',
    "amazon2023": lambda i, name: f'{{"parent_asin": "P{i:02}", "title": "{name}"}}',
    "csv": lambda i, name: f"P{i:02},{name}",
    "rees46": lambda i, name: f"2019-10-01 00:00:{i:02} UTC,view,P{i:02},1,,{name},1.0,u{i},s",
}
_HEADERS = {"csv": "id,title", "rees46": REES46_HEADER}


@pytest.mark.parametrize("fmt", sorted(_LINES))
@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_a_non_utf8_line_is_one_reject(tmp_path, fmt, gz):
    """Line 11 of 21 in latin-1: that line is rejected under its own number with its bytes
    shown, every valid row before and after it loads (the file used to end there)."""
    header = [_HEADERS[fmt].encode()] if fmt in _HEADERS else []
    numbers = range(1, 22 - len(header))
    lines = header + [_LINES[fmt](i, "Caf\u00e9").encode() for i in numbers]
    bad = numbers[10 - len(header)]
    lines[10] = _LINES[fmt](bad, "Caf\u00e9").encode("latin-1")
    data = b"\n".join(lines) + b"\n"
    path = tmp_path / ("data.gz" if gz else "data")
    path.write_bytes(gzip.compress(data) if gz else data)
    log = RejectLog()
    catalogue = read_catalogue(path, log=log)
    assert [(r.file, r.line) for r in log.rejects] == [(str(path), 11)]
    reject = log.rejects[0]
    assert reject.reason == f"not UTF-8 text: byte 0xe9 at position {lines[10].index(233) + 1}"
    assert reject.raw == repr(lines[10]) and "Caf\\xe9" in reject.raw
    assert set(catalogue.products) == {f"P{i:02}" for i in numbers if i != bad}
    assert log.files[str(path)].to_json() == {
        "rows_read": len(numbers),
        "loaded": len(numbers) - 1,
        "rejected": 1,
        "duplicates": 0,
        "conflicts": 0,
    }


def test_interactions_and_beauty_files_survive_a_bad_byte(tmp_path):
    reviews = tmp_path / "reviews.jsonl"
    good = (FIXTURES / "reviews_2018.jsonl").read_bytes().splitlines()[:2]
    reviews.write_bytes(b"\n".join([good[0], b'{"reviewerID": "\xff"}', good[1]]))
    log = RejectLog()
    assert len(read_interactions(reviews, log).interactions) == 2
    assert [(r.line, r.raw) for r in log.rejects] == [(2, repr(b'{"reviewerID": "\xff"}'))]

    beauty = tmp_path / "beauty"
    shutil.copytree(BEAUTY, beauty)
    with gzip.open(beauty / "brand.txt.gz", "rb") as stream:
        brands = stream.read().split(b"\n")
    brands[4] = b"Beaut\xe9"  # index 4, line 5
    (beauty / "brand.txt.gz").write_bytes(gzip.compress(b"\n".join(brands)))
    log = RejectLog()
    catalogue = read_beauty(beauty, log)
    assert [(Path(r.file).name, r.line) for r in log.rejects[:1]] == [("brand.txt.gz", 5)]
    assert len(catalogue.products) == 12_101  # later brand lines still read
    assert log.files[str(beauty / "brand.txt.gz")].rows_read == 2076


def test_a_broken_first_line_does_not_pick_the_layout(tmp_path):
    good = (FIXTURES / "meta_2018_bad.jsonl").read_text().splitlines()[0]
    path = tmp_path / "meta.jsonl"
    path.write_text("{abc\n" + good + "\n")
    assert detect_format(path) == "amazon2018"
    log = RejectLog()
    assert set(read_catalogue(path, log=log).products) == {"B00005N7NQ"}
    assert [r.line for r in log.rejects] == [1]
    # The vote: the layout most lines parse as, a tie going to the first seen.
    literal = (FIXTURES / "meta_2014.txt").read_text().splitlines()[0]
    path.write_text("\n".join(["{}", "{abc", literal, good, good]))
    assert detect_format(path) == "amazon2018"
    path.write_text("\n".join(["{abc", literal, good]))
    assert detect_format(path) == "amazon2014"


def test_ids_with_control_or_bidi_characters_are_rejected(tmp_path):
    path = tmp_path / "meta.jsonl"
    rows = [
        {"asin": "B01", "title": "fine", "also_buy": ["B02"]},
        {"asin": "B0\u0000NUL", "title": "nul in the id"},
        {"asin": "B0\u202eRTL", "title": "override in the id"},
        {"asin": "B03", "also_buy": ["B01", "B\u2066X"]},  # a related id is an id too
        {"asin": "B04", "title": "Tab\tand\u202e bidi in a title are cleaning's job"},
    ]
    path.write_text("\n".join(json.dumps(row) for row in rows))
    log = RejectLog()
    catalogue = read_catalogue(path, log=log)
    assert set(catalogue.products) == {"B01", "B04"}
    assert lines_of(log) == {
        2: "asin: id 'B0\\x00NUL' holds control character U+0000",
        3: "asin: id 'B0\\u202eRTL' holds control character U+202E",  # shown escaped
        4: "also_buy: id 'B\\u2066X' holds control character U+2066",
    }


def test_conflicting_duplicates_are_reported_first_row_wins(tmp_path):
    path = tmp_path / "meta.jsonl"
    rows = [
        {"asin": "B01", "title": "First", "price": "$2.00"},
        {"asin": "B01", "title": "First", "brand": "Acme"},  # fills a blank: no conflict
        {"asin": "B01", "title": "Second", "price": "$3.00", "category": ["Home"]},
        {"asin": "B01", "title": "First", "price": "$2.00"},  # a plain repeat
    ]
    path.write_text("\n".join(json.dumps(row) for row in rows))
    log = RejectLog()
    catalogue = read_catalogue(path, log=log)
    product = catalogue.products["B01"]
    assert (product.title, product.price, product.brand) == ("First", 2.0, "Acme")
    assert product.categories == ["Home"]  # united, never a conflict
    assert (catalogue.duplicate_products, catalogue.conflicting_products) == (3, 1)
    assert len(log) == 0  # nothing rejected: every row is valid
    assert log.files[str(path)].to_json() == {
        "rows_read": 4, "loaded": 1, "rejected": 0, "duplicates": 2, "conflicts": 1
    }  # fmt: skip
    written = [
        json.loads(line) for line in log.write(tmp_path / "r.jsonl").read_text().split("\n") if line
    ]
    assert written == [
        {
            "file": str(path),
            "line": 3,
            "reason": "product 'B01' read again with other values; the first row "
            f"({path}:1) wins: title: kept 'First', dropped 'Second'; "
            "price: kept 2.0, dropped 3.0",
            "raw": json.dumps(rows[2]),
            "kind": "conflict",
            "kept": f"{path}:1",
        }
    ]


@pytest.fixture
def own_parquet(tmp_path: Path) -> Path:
    """A user's own export as Parquet: a list-typed category path, a null id, a timestamp."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    when = datetime(2024, 1, 2, 3, 4, 5)  # no zone: taken as UTC, as in the text formats
    table = pa.table(
        {
            "sku": ["SKU-1", "SKU-2", None, "SKU-1"],
            "name": ["Blue Kettle", "Red Toaster", "Nameless", None],
            "maker": ["Acme", None, "Acme", "Acme"],
            "cat_path": [["Home", "Kitchen", "Kettles"], ["Home", "Kitchen"], ["Home"], None],
            "price": [19.99, None, 1.0, 19.99],
            "uid": ["u1", "u2", "u3", "u2"],
            "when": [when, when, when, None],
        }
    )
    path = tmp_path / "export.parquet"
    pq.write_table(table, path)
    return path


PARQUET_COLUMNS = "id=sku,title=name,brand=maker,category=cat_path"


def test_parquet_exports_read_through_a_column_mapping(own_parquet: Path):
    assert detect_format(own_parquet) == "parquet"
    log = RejectLog()
    catalogue = read_table_catalogue(
        own_parquet,
        parse_columns(PARQUET_COLUMNS),
        parse_columns("user=uid,item=sku,ts=when", INTERACTION_KEYS),
        log,
    )
    assert set(catalogue.products) == {"SKU-1", "SKU-2"} and catalogue.duplicate_products == 1
    kettle = catalogue.products["SKU-1"]
    assert (kettle.title, kettle.brand, kettle.price) == ("Blue Kettle", "Acme", 19.99)
    assert kettle.categories == [CATEGORY_PATH_SEP.join(["Home", "Kitchen", "Kettles"])]
    assert catalogue.products["SKU-2"].brand is None
    assert [(i.user, i.product, i.ts) for i in catalogue.interactions] == [
        ("u1", "SKU-1", 1_704_164_645.0),
        ("u2", "SKU-2", 1_704_164_645.0),
        ("u2", "SKU-1", None),
    ]
    assert lines_of(log) == {3: "missing sku"}  # Parquet rows are numbered from 1
    # "auto" with a mapping: the user's own table, whatever its first row looks like.
    auto = read_catalogue(own_parquet, log=RejectLog(), columns=parse_columns(PARQUET_COLUMNS))
    assert set(auto.products) == {"SKU-1", "SKU-2"}


def test_a_damaged_parquet_file_is_a_reject(own_parquet: Path, tmp_path: Path):
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(own_parquet.read_bytes()[:-40])
    log = RejectLog()
    assert not read_table_catalogue(cut, parse_columns(PARQUET_COLUMNS), log=log).products
    assert "unreadable file" in log.rejects[0].reason and log.rejects[0].file == str(cut)


def test_column_mappings_from_the_command_line():
    assert parse_columns("id=sku, title = name") == {
        **{k: k for k in ("id", "title", "description", "brand", "category", "price")},
        "id": "sku",
        "title": "name",
    }
    with pytest.raises(InvalidArgumentError, match="unknown key 'idd'.*known: id, title"):
        parse_columns("idd=sku")
    with pytest.raises(InvalidArgumentError, match="'id': expected KEY=COLUMN"):
        parse_columns("id")
    assert parse_columns("user=uid", INTERACTION_KEYS)["item"] == "item"
