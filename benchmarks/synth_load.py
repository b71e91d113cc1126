"""Write a synthetic catalogue (`benchmarks/synth_catalogue.py`) into an empty Neo4j store straight
from its index files, for the 1M-product scale run.

`kgrec build` reads a whole catalogue into Python objects before cleaning and writing it: at 1M
products (33M links, 5M events) that stage alone held 10.9 GB and ran 17 min on this 2-core
machine before a byte was written (benchmarks/results/scale.json, `build_1m_kgrec_build`). This
loader produces the graph `kgrec build` writes for these files (the Beauty reader's meaning:
products with titles, brand, category set, texts cleaned as `kg.cleaning` does; the three product
relations; each user's sequence as events of kind "sequence", ts = position, no rating; checked
equal snapshot for snapshot on 3k products) with the same store write path — nodes and
the small types through `Neo4jStore.write_snapshot`, the product relations and events through
`Neo4jStore.write_new_relationships` — but holds the links as numpy arrays, grouped by source
one batch at a time. The synthetic files hold no duplicates, stubs or bad rows, so there is
nothing to clean.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from kg.schema import Label, Rel
from kg.stores import Neo4jStore, Progress, Snapshot
from kg.stores.base import InteractionRow, ProductRow
from kg.text import strip_html

RELATION_FILES = {
    Rel.ALSO_BOUGHT: "also_bought_p_p.txt",
    Rel.ALSO_VIEWED: "also_viewed_p_p.txt",
    Rel.BOUGHT_TOGETHER: "bought_together_p_p.txt",
}


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")[:-1]


def _per_line(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(line index, value) int arrays of a file holding integer indices per line."""
    src, dst = [], []
    with open(path, encoding="utf-8") as f:
        for row, line in enumerate(f):
            values = np.array(line.split(), dtype=np.int64)
            src.append(np.full(len(values), row, dtype=np.int64))
            dst.append(values)
    return np.concatenate(src), np.concatenate(dst)


def _batches(
    src: np.ndarray, targets: list, size: int
) -> Iterator[tuple[list[tuple[int, list]], int]]:
    """(source, [targets]) groups of ~`size` relationships; `src` sorted, `targets` aligned."""
    starts = np.flatnonzero(np.r_[True, src[1:] != src[:-1]])
    ends = np.r_[starts[1:], len(src)]
    batch: list[tuple[int, list]] = []
    count = 0
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        batch.append((int(src[start]), targets[start:end]))
        count += end - start
        if count >= size:
            yield batch, count
            batch, count = [], 0
    if batch:
        yield batch, count


def _links(path: Path, handles: np.ndarray, size: int) -> tuple[Iterator, int]:
    src, dst = _per_line(path)
    src, dst = handles[src], handles[dst]
    return _lazy_batches(src, dst, size), len(src)


def _lazy_batches(src: np.ndarray, dst: np.ndarray, size: int) -> Iterator:
    # Targets as Python ints one window at a time, never all at once.
    window = 50 * size
    for lo in range(0, len(src), window):
        hi = min(lo + window, len(src))
        while hi < len(src) and src[hi] == src[hi - 1]:  # a source's targets stay together
            hi += 1
        yield from _batches(src[lo:hi], dst[lo:hi].tolist(), size)


def load(
    directory: Path,
    store: Neo4jStore,
    progress: Progress | None = None,
    parts: tuple[str, ...] = ("nodes", *map(str, RELATION_FILES), "INTERACTED"),
) -> None:
    """Write `parts` of the catalogue: "nodes" (with MADE_BY and IN_CATEGORY), product relation
    types, "INTERACTED"; parts written by separate processes at once go in parallel."""
    directory = Path(directory)
    if "nodes" in parts:
        _write_nodes(directory, store, progress)
    asins = _lines(directory / "product.txt")
    product_handles = store.node_handles(Label.PRODUCT)
    handles = np.array([product_handles[a] for a in asins], dtype=np.int64)
    del product_handles
    for rel, name in RELATION_FILES.items():
        if rel in parts:
            batches, total = _links(directory / name, handles, store.rel_batch_size)
            store.write_new_relationships(rel, batches, total, progress)
    if Rel.INTERACTED in parts:
        _write_events(directory, store, handles, progress)


def _write_nodes(directory: Path, store: Neo4jStore, progress: Progress | None) -> None:
    asins = _lines(directory / "product.txt")
    title_ids = json.loads((directory / "title_item_id_to_int.json").read_text())
    to_asin = {v: k for k, v in title_ids.items()}
    titles: dict[str, str] = {}
    with open(directory / "titles.csv", encoding="utf-8", newline="") as f:
        rows = csv.reader(f)
        next(rows)
        for row in rows:
            titles[to_asin[int(row[1])]] = strip_html(row[2])
    brands = [strip_html(b) for b in _lines(directory / "brand.txt")]  # as cleaning does
    categories = _lines(directory / "category.txt")
    made_by, in_category = [], []
    with open(directory / "brand_p_b.txt", encoding="utf-8") as f:
        for row, line in enumerate(f):
            values = line.split()
            if values and brands[int(values[0])]:
                made_by.append((asins[row], brands[int(values[0])]))
    with open(directory / "category_p_c.txt", encoding="utf-8") as f:
        for row, line in enumerate(f):
            in_category.extend((asins[row], categories[int(v)]) for v in set(line.split()))
    users = _lines(directory / "users.txt")
    nodes = Snapshot(
        products=[ProductRow(a, titles.get(a, ""), "", None, True) for a in sorted(asins)],
        brands=sorted({b for _, b in made_by}),
        categories=sorted((c, c) for c in set(categories) if c),
        users=sorted(users),
        edges={Rel.MADE_BY: sorted(made_by), Rel.IN_CATEGORY: sorted(in_category)},
    )
    store.write_snapshot(nodes, progress)


def _write_events(
    directory: Path, store: Neo4jStore, products: np.ndarray, progress: Progress | None
) -> None:
    maps = json.loads((directory / "datamaps.json").read_text())
    id2user, id2item = maps["id2user"], maps["id2item"]
    item_row = {a: i for i, a in enumerate(_lines(directory / "product.txt"))}
    user_handles = store.node_handles(Label.USER)
    lines = _lines(directory / "sequential_data.txt")
    total = sum(len(line.split()) - 1 for line in lines)

    def batches() -> Iterator[tuple[list, int]]:
        batch, count = [], 0
        for line in lines:
            user_index, *items = line.split()
            user = id2user[user_index]
            events = {}
            for pos, item in enumerate(items):
                asin = id2item[item]
                row = InteractionRow.of(user, asin, None, float(pos), "sequence")
                events[row.key] = [int(products[item_row[asin]]), *row[2:]]
            batch.append((user_handles[user], list(events.values())))
            count += len(events)
            if count >= store.rel_batch_size:
                yield batch, count
                batch, count = [], 0
        if batch:
            yield batch, count

    store.write_new_relationships(Rel.INTERACTED, batches(), total, progress)
