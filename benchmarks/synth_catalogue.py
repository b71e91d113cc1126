"""A synthetic catalogue of any size shaped like Amazon Beauty 2014, for time and memory
benchmarks only — never for quality claims (its links and texts carry no real signal).

    python benchmarks/synth_catalogue.py OUT_DIR --products 1000000 [--text-pool 50000]

Written in the Beauty directory layout `kgrec build --catalogue OUT_DIR` reads (plain text,
integer indices: the fastest layout to parse), with a `synth.json` manifest of what was drawn.
Every distribution comes from the real files in `../shared/data/amazon-beauty-2014`:

- each synthetic product copies one real *template* product (uniform draw): its in-catalogue
  out-degree per relation (also_bought, also_viewed, bought_together), its in-degree per relation
  as its weight as a link target (popularity skew: targets are drawn in proportion to it), and
  its interaction count as its weight in user sequences — so the degree histograms and their
  correlations are the real ones; every link stays inside the synthetic catalogue;
- texts come from a pool of `--text-pool` distinct *profiles* (title recombined from two real
  titles: the first half of one, the second half of another; the category set of a real
  product; a brand), each product an instance of one, so encoding costs at most the pool size
  (the text cache does the rest); brands get sizes drawn from the real brand-size histogram (over
  profiles, the real share of products branded), so with a pool every brand is
  products/profiles times larger than a real one; `--text-pool 0` makes every product distinct;
- users' sequence lengths are drawn from the real histogram; the number of users is chosen so
  interactions ≈ `--interactions-per-product` × products (Beauty has 16.4; the default 5.05
  gives just over 5M interactions at 1M products: the draw lands within ~0.1% of the aim).

Links are generated and written a chunk of products at a time (numpy, no Python object per
edge beyond one chunk's text); at 1M products that is ≈ 33M product–product links.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger("synth_catalogue")

DATA = Path(os.environ.get("KGREC_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
REAL = DATA / "amazon-beauty-2014"
RELATIONS = ("also_bought", "also_viewed", "bought_together")
DEFAULT_TEXT_POOL = 50_000
DEFAULT_INTERACTIONS_PER_PRODUCT = 5.05
CHUNK = 100_000  # products per generation/writing step


@dataclass
class Reference:
    """What the generator samples from, per real product index (template)."""

    out_degree: dict[str, np.ndarray]  # in-catalogue links per relation
    in_degree: dict[str, np.ndarray]
    interactions: np.ndarray  # times each product appears in users' sequences
    categories: list[list[str]]  # category names per product
    titles: list[str]
    brand_sizes: np.ndarray  # products per real brand
    branded_share: float
    brand_names: list[str]
    sequence_lengths: np.ndarray  # one per real user

    @property
    def size(self) -> int:
        return len(self.titles)


def _lines(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def load_reference(directory: Path = REAL) -> Reference:
    """The empirical distributions of the real Beauty files."""
    asins = _lines(directory / "product.txt.gz")
    index = {a: p for p, a in enumerate(asins)}
    related = [index.get(a) for a in _lines(directory / "related_product.txt.gz")]
    n = len(asins)
    out_degree, in_degree = {}, {}
    for rel in RELATIONS:
        out, into = np.zeros(n, np.int64), np.zeros(n, np.int64)
        for p, line in enumerate(_lines(directory / f"{rel}_p_p.txt.gz")[:n]):
            targets = {related[int(r)] for r in line.split()} - {None, p}
            out[p] = len(targets)
            into[list(targets)] += 1
        out_degree[rel], in_degree[rel] = out, into
    names = _lines(directory / "category.txt.gz")
    categories = [
        [names[int(c)] for c in line.split()]
        for line in _lines(directory / "category_p_c.txt.gz")[:n]
    ]
    brand_of = [line.strip() for line in _lines(directory / "brand_p_b.txt.gz")[:n]]
    brand_names = [b for b in _lines(directory / "brand.txt.gz") if b.strip()]
    sizes = Counter(b for b in brand_of if b)
    with gzip.open(directory / "title_item_id_to_int.json.gz", "rt") as f:
        title_key = json.load(f)
    with gzip.open(directory / "titles.csv.gz", "rt", encoding="utf-8", newline="") as f:
        by_key = {int(row[1]): row[2] for row in list(csv.reader(f))[1:]}
    titles = [by_key.get(title_key.get(a, -1), "") for a in asins]
    with gzip.open(directory / "datamaps.json.gz", "rt") as f:
        id2item = json.load(f)["id2item"]
    counts, lengths = np.zeros(n, np.int64), []
    for line in _lines(directory / "sequential_data.txt.gz"):
        _, *items = line.split()
        lengths.append(len(items))
        for item in items:
            counts[index[id2item[item]]] += 1
    return Reference(
        out_degree=out_degree,
        in_degree=in_degree,
        interactions=counts,
        categories=categories,
        titles=titles,
        brand_sizes=np.array(sorted(sizes.values())),
        branded_share=sum(sizes.values()) / n,
        brand_names=brand_names,
        sequence_lengths=np.array(lengths),
    )


def _recombined_titles(ref: Reference, count: int, rng: np.random.Generator) -> list[str]:
    """`count` distinct titles, each the first half of one real title + the second of another."""
    words = [t.split() for t in ref.titles if t.split()]
    seen: set[str] = set()
    titles: list[str] = []
    while len(titles) < count:
        for a, b in rng.integers(0, len(words), (count - len(titles), 2)):
            head, tail = words[a], words[b]
            title = " ".join(head[: max(1, len(head) // 2)] + tail[len(tail) // 2 :])
            if title not in seen:
                seen.add(title)
                titles.append(title)
    return titles


def _brands(ref: Reference, profiles: int, rng: np.random.Generator) -> list[str]:
    """Brand name per profile ("" = none): sizes from the real brand-size histogram."""
    brand_of = [""] * profiles
    order = rng.permutation(profiles)
    branded = round(ref.branded_share * profiles)
    start, number = 0, 0
    while start < branded:
        size = int(ref.brand_sizes[rng.integers(len(ref.brand_sizes))])
        base = ref.brand_names[rng.integers(len(ref.brand_names))]
        name = f"{base} {number}"  # real names recur; the number keeps brands distinct
        for p in order[start : min(start + size, branded)]:
            brand_of[p] = name
        start, number = start + size, number + 1
    return brand_of


def _write_rows(path: Path, rows: list[str]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(rows) + "\n")


def _joined(src: np.ndarray, dst: np.ndarray, start: int, count: int) -> list[str]:
    """One space-separated line of `dst` per source start..start+count (src sorted)."""
    offsets = np.searchsorted(src, np.arange(start, start + count + 1))
    text = dst.astype(str).tolist()
    return [" ".join(text[a:b]) for a, b in zip(offsets[:-1], offsets[1:], strict=True)]


def _write_links(
    path: Path, degree: np.ndarray, weight: np.ndarray, rng: np.random.Generator
) -> int:
    """Product -> product links, out-degrees `degree`, targets drawn ∝ `weight`, no self-links
    or repeats, written a chunk at a time; returns the number written."""
    n = len(degree)
    cumulative = np.cumsum(weight, dtype=np.float64)
    written = 0
    with open(path, "w", encoding="utf-8") as f:
        for start in range(0, n, CHUNK):
            count = min(CHUNK, n - start)
            src = np.repeat(np.arange(start, start + count), degree[start : start + count])
            dst = np.searchsorted(cumulative, rng.random(len(src)) * cumulative[-1], side="right")
            dst = np.where(dst == src, (dst + 1) % n, dst)  # a self-link moves to the next one
            pairs = np.unique(src.astype(np.int64) * n + dst)  # sorted by (src, dst), no repeats
            src, dst = pairs // n, pairs % n
            f.write("\n".join(_joined(src, dst, start, count)) + "\n")
            written += len(pairs)
    return written


def _write_sequences(
    out: Path, ref: Reference, template: np.ndarray, users: int, rng: np.random.Generator
) -> int:
    """Users' item sequences (ids 1.. of datamaps.json); returns the interaction count."""
    weight = ref.interactions[template].astype(np.float64)
    cumulative = np.cumsum(weight)
    total = 0
    with open(out / "sequential_data.txt", "w", encoding="utf-8") as f:
        for start in range(0, users, CHUNK):
            count = min(CHUNK, users - start)
            lengths = ref.sequence_lengths[rng.integers(0, len(ref.sequence_lengths), count)]
            lengths = np.minimum(lengths, np.count_nonzero(weight))  # tiny catalogues
            user = np.repeat(np.arange(start, start + count), lengths)
            items = _distinct_per_user(user, cumulative, rng)
            lines = _joined(user, items + 1, start, count)
            f.write("\n".join(f"{start + i + 1} {line}" for i, line in enumerate(lines)) + "\n")
            total += int(lengths.sum())
    return total


def _distinct_per_user(
    user: np.ndarray, cumulative: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """An item per entry of `user`, drawn ∝ the weights whose running sum is `cumulative`,
    never twice for one user (as in the real sequences): repeats are drawn again."""
    items = np.zeros(len(user), np.int64)
    redraw = np.ones(len(user), bool)
    while redraw.any():
        draws = rng.random(int(redraw.sum())) * cumulative[-1]
        items[redraw] = np.searchsorted(cumulative, draws, side="right")
        codes = user * len(cumulative) + items
        _, first = np.unique(codes, return_index=True)
        redraw = np.ones(len(user), bool)
        redraw[first] = False
    return items


def _write_json_map(path: Path, maps: dict[str, list[str]]) -> None:
    """{name: {"1": value, ...}} for each list, streamed (1-based keys, as datamaps.json)."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("{")
        for n, (name, values) in enumerate(maps.items()):
            body = ", ".join(f'"{i}": {json.dumps(v)}' for i, v in enumerate(values, 1))
            f.write(f'{", " if n else ""}"{name}": {{{body}}}')
        f.write("}")


def generate(
    out: str | Path,
    products: int = 1_000_000,
    users: int | None = None,
    text_pool: int = DEFAULT_TEXT_POOL,
    interactions_per_product: float = DEFAULT_INTERACTIONS_PER_PRODUCT,
    seed: int = 0,
    reference: Reference | None = None,
) -> dict:
    """Write a synthetic catalogue of `products` products into directory `out`; returns (and
    writes to `out/synth.json`) what was generated."""
    began = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ref = reference or load_reference()
    rng = np.random.default_rng(seed)
    profiles = products if text_pool <= 0 else min(products, text_pool)
    if users is None:
        mean_length = float(ref.sequence_lengths.mean())
        users = max(1, int(np.ceil(products * interactions_per_product / mean_length)))

    asins = [f"S{i:09d}" for i in range(products)]
    _write_rows(out / "product.txt", asins)
    _write_rows(out / "related_product.txt", asins)  # link indices = product indices
    with open(out / "title_item_id_to_int.json", "w", encoding="utf-8") as f:
        f.write("{" + ", ".join(f'"{a}": {i}' for i, a in enumerate(asins)) + "}")

    profile_template = rng.integers(0, ref.size, profiles)
    titles = _recombined_titles(ref, profiles, rng)
    brand_of_profile = _brands(ref, profiles, rng)
    profile_of = rng.permutation(np.arange(products) % profiles)
    with open(out / "titles.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["", "global_product_id", "name"])
        writer.writerows((i, i, titles[j]) for i, j in enumerate(profile_of.tolist()))

    brand_names = sorted({b for b in brand_of_profile if b})
    brand_index = {b: str(i) for i, b in enumerate(brand_names)}
    _write_rows(out / "brand.txt", brand_names)
    _write_rows(
        out / "brand_p_b.txt", [brand_index.get(brand_of_profile[j], "") for j in profile_of]
    )
    category_names = sorted({c for cats in ref.categories for c in cats})
    category_index = {c: str(i) for i, c in enumerate(category_names)}
    _write_rows(out / "category.txt", category_names)
    profile_categories = [
        " ".join(category_index[c] for c in ref.categories[t]) for t in profile_template
    ]
    _write_rows(out / "category_p_c.txt", [profile_categories[j] for j in profile_of])

    template = rng.integers(0, ref.size, products)
    links = {
        rel: _write_links(
            out / f"{rel}_p_p.txt",
            ref.out_degree[rel][template],
            ref.in_degree[rel][template],
            rng,
        )
        for rel in RELATIONS
    }
    interactions = _write_sequences(out, ref, template, users, rng)
    _write_json_map(
        out / "datamaps.json",
        {"id2user": [f"U{i:09d}" for i in range(users)], "id2item": asins},
    )
    _write_rows(out / "users.txt", [f"U{i:09d}" for i in range(users)])

    manifest = {
        "purpose": "time and memory benchmarks only; never quality claims",
        "reference": str(REAL),
        "seed": seed,
        "products": products,
        "distinct_texts": profiles,
        "brands": len(brand_names),
        "categories": len(category_names),
        "links": links,
        "links_total": sum(links.values()),
        "users": users,
        "interactions": interactions,
        "seconds": round(time.perf_counter() - began, 1),
    }
    (out / "synth.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="directory to write (kgrec build --catalogue OUT)")
    parser.add_argument("--products", type=int, default=1_000_000)
    parser.add_argument(
        "--users", type=int, default=None, help="default: from --interactions-per-product"
    )
    parser.add_argument(
        "--text-pool",
        type=int,
        default=DEFAULT_TEXT_POOL,
        help="distinct product texts (0: one per product)",
    )
    parser.add_argument(
        "--interactions-per-product", type=float, default=DEFAULT_INTERACTIONS_PER_PRODUCT
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    manifest = generate(
        args.out,
        args.products,
        args.users,
        args.text_pool,
        args.interactions_per_product,
        args.seed,
    )
    print(json.dumps(manifest, indent=2))


if __name__ == "__main__":
    main()
