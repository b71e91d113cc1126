"""The Amazon 2014 Beauty 5-core in the PGPR/KG layout: a directory of index files.

`product.txt` line p is product p; `*_p_*` files hold, on line p, indices into `brand.txt`,
`category.txt` or `related_product.txt`; titles are keyed through `title_item_id_to_int.json`;
`sequential_data.txt` lists each user's items in time order (ids of `datamaps.json`), so the
position in that list stands in for time. Categories are sets here: node id = bare name.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kg.catalogue import EventTable
from kg.readers.base import (
    ReadCatalogue,
    RowSource,
    gc_paused,
    open_text,
    read_csv,
    read_lines,
    resolve_log,
)
from kg.rejects import RejectLog
from kg.schema import Category, Product, Rel

_RELATIONS = {
    "also_bought_p_p.txt": Rel.ALSO_BOUGHT,
    "also_viewed_p_p.txt": Rel.ALSO_VIEWED,
    "bought_together_p_p.txt": Rel.BOUGHT_TOGETHER,
}


def beauty_file(directory: Path, name: str) -> Path:
    """`name` or, as shipped, `name.gz`."""
    gz = directory / f"{name}.gz"
    return gz if gz.exists() or not (directory / name).exists() else directory / name


def _indexed(path: Path, log: RejectLog) -> dict[int, str]:
    """Line index (from 0) -> stripped content, for the non-blank lines."""
    return {lineno - 1: line.strip() for lineno, line in read_lines(path, log)}


def _json(path: Path, log: RejectLog) -> dict:
    try:
        with open_text(path) as stream:
            data = json.load(stream)
    except (OSError, ValueError, EOFError) as exc:
        log.add(path, 0, f"unreadable file: {exc}")
        return {}
    if not isinstance(data, dict):
        log.add(path, 0, "expected a JSON object")
        return {}
    return data


def _per_product(path: Path, log: RejectLog, asins: dict[int, str], values: dict[int, str]):
    """(product id, [values of the indices on its line]) for each line of a `*_p_*` file;
    a line with a non-integer or unknown index, or past the last product, is rejected."""
    for lineno, line in read_lines(path, log):
        try:
            yield asins[lineno - 1], [values[int(i)] for i in line.split()]
        except (KeyError, ValueError) as exc:
            log.add(path, lineno, f"unknown or malformed index {exc}", line)


def _links(path: Path, log: RejectLog, asins: dict[int, str], related: np.ndarray):
    """(product id, related codes) for each line of a `*_p_p` file: `related[r]` is the code of
    related index r (-1 for a blank line); a line with a malformed or unknown index, or past the
    last product, is rejected."""
    for lineno, line in read_lines(path, log):
        try:
            indices = np.array(line.split(), dtype=np.int64)
            in_range = (indices >= 0) & (indices < len(related))
            known = np.zeros(len(indices), dtype=bool)
            known[in_range] = related[indices[in_range]] >= 0
            if not known.all():
                raise KeyError(int(indices[~known][0]))
            source = asins[lineno - 1]
        except (KeyError, ValueError) as exc:
            log.add(path, lineno, f"unknown or malformed index {exc}", line)
            continue
        yield source, related[indices]


def _titles(directory: Path, log: RejectLog) -> dict[str, str]:
    """ASIN -> title, through `global_product_id` = title_item_id_to_int[ASIN]."""
    to_asin = {
        v: k for k, v in _json(beauty_file(directory, "title_item_id_to_int.json"), log).items()
    }
    path = beauty_file(directory, "titles.csv")
    titles = {}
    for lineno, row in read_csv(path, log):
        if lineno == 1 and row[1:2] == ["global_product_id"]:
            log.header(path)
            continue
        try:
            titles[to_asin[int(row[1])]] = row[2]
        except (IndexError, KeyError, ValueError) as exc:
            log.add(path, lineno, f"bad title row: {exc!r}", ",".join(row))
    return titles


def _sequences(directory: Path, log: RejectLog) -> EventTable:
    maps = _json(beauty_file(directory, "datamaps.json"), log)
    id2user, id2item = maps.get("id2user", {}), maps.get("id2item", {})
    path = beauty_file(directory, "sequential_data.txt")
    interactions = EventTable()
    for lineno, line in read_lines(path, log):
        user, *items = line.split()
        try:
            interactions.add_sequence(id2user[user], [id2item[item] for item in items], "sequence")
        except KeyError as exc:
            log.add(path, lineno, f"id not in datamaps.json: {exc}", line)
    return interactions


@gc_paused
def read_beauty(directory: str | Path, log: RejectLog | None = None) -> ReadCatalogue:
    """Products (title, brand, category set), the three product relations (targets may lie
    outside the catalogue) and users' ordered item sequences (kind "sequence", ts = position
    from 0, no rating)."""
    log = resolve_log(log)
    directory = Path(directory)
    catalogue = ReadCatalogue()
    path = beauty_file(directory, "product.txt")
    asins = _indexed(path, log)
    titles = _titles(directory, log)
    for index, asin in asins.items():
        source = RowSource(log, path, index + 1, asin)
        catalogue.add_product(Product(asin, title=titles.get(asin, "")), source)

    brands = _indexed(beauty_file(directory, "brand.txt"), log)
    # brand.txt has a blank line (index 952): products pointing at it have no brand name,
    # which is not a bad index.
    brands.update({i: "" for i in range(max(brands, default=-1)) if i not in brands})
    path = beauty_file(directory, "brand_p_b.txt")
    for asin, names in _per_product(path, log, asins, brands):
        catalogue.products[asin].brand = names[0] if names and names[0] else None

    names = _indexed(beauty_file(directory, "category.txt"), log)
    catalogue.categories = {name: Category(name, name) for name in names.values()}
    path = beauty_file(directory, "category_p_c.txt")
    for asin, cats in _per_product(path, log, asins, names):
        catalogue.products[asin].categories = cats

    related = _indexed(beauty_file(directory, "related_product.txt"), log)
    codes = np.full(max(related, default=-1) + 1, -1, dtype=np.int32)
    codes[list(related)] = catalogue.edges.ids.codes(related.values())
    for name, rel in _RELATIONS.items():
        for asin, targets in _links(beauty_file(directory, name), log, asins, codes):
            catalogue.edges.add_codes(rel, catalogue.edges.ids.code(asin), targets)

    catalogue.interactions = _sequences(directory, log)
    return catalogue
