"""`EmbeddedStore`: the graph as one gzipped JSON file in a directory; no server needed.

The whole graph is held in memory and rewritten atomically (temp file + rename) after each
write, so a killed write leaves the previous graph intact. One writer at a time.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from kg.schema import PRODUCT_RELATIONS, REL_ENDPOINTS, Label, Product, Rel
from kg.stores.base import (
    EDGE_RELS,
    InteractionRow,
    ProductRow,
    Progress,
    Snapshot,
    Store,
    StoreError,
    counts_dict,
)

GRAPH_FILE = "graph.json.gz"


class EmbeddedStore(Store):
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.uri = f"embedded:{self.path}"
        self._file = self.path / GRAPH_FILE
        self._products: dict[str, ProductRow] = {}
        self._categories: dict[str, str] = {}
        self._brands: set[str] = set()
        self._users: set[str] = set()
        self._edges: dict[Rel, set[tuple[str, str]]] = {rel: set() for rel in EDGE_RELS}
        self._interactions: dict[tuple[str, str], InteractionRow] = {}
        if self._file.exists():
            self._merge(self._load())

    def _load(self) -> Snapshot:
        try:
            with gzip.open(self._file, "rt", encoding="utf-8") as f:
                raw = json.load(f)
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot read embedded store {self._file}: {exc}") from exc
        return Snapshot(
            products=[ProductRow(*row) for row in raw["products"]],
            brands=raw["brands"],
            categories=[tuple(row) for row in raw["categories"]],
            users=raw["users"],
            edges={Rel(rel): [tuple(p) for p in pairs] for rel, pairs in raw["edges"].items()},
            interactions=[InteractionRow(*row) for row in raw["interactions"]],
        )

    def _nodes(self, label: Label) -> dict[str, object] | set[str]:
        return {
            Label.PRODUCT: self._products,
            Label.BRAND: self._brands,
            Label.CATEGORY: self._categories,
            Label.USER: self._users,
        }[label]

    def _merge(self, snap: Snapshot) -> None:
        # Same outcome as the Neo4j MERGE + SET writes: nodes upserted by id, relationships
        # added once, skipped when an endpoint node is missing.
        self._products.update((row.id, row) for row in snap.products)
        self._brands.update(snap.brands)
        self._categories.update(snap.categories)
        self._users.update(snap.users)
        for rel, pairs in snap.edges.items():
            src, dst = (self._nodes(label) for label in REL_ENDPOINTS[rel])
            self._edges[rel].update((s, d) for s, d in pairs if s in src and d in dst)
        self._interactions.update(
            ((row.user, row.product), row)
            for row in snap.interactions
            if row.user in self._users and row.product in self._products
        )

    def write_snapshot(self, snap: Snapshot, progress: Progress | None = None) -> None:
        self._merge(snap)
        self._save()
        if progress:
            for step, n in _step_sizes(snap):
                progress(step, n, n)

    def _save(self) -> None:
        snap = self.snapshot()
        raw = {
            "products": snap.products,
            "brands": snap.brands,
            "categories": snap.categories,
            "users": snap.users,
            "edges": {str(rel): pairs for rel, pairs in snap.edges.items()},
            "interactions": snap.interactions,
        }
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".graph-", suffix=".tmp")
            try:
                with (
                    os.fdopen(fd, "wb") as f,
                    gzip.open(f, "wt", encoding="utf-8", compresslevel=1) as gz,
                ):
                    json.dump(raw, gz, ensure_ascii=False)
                os.replace(tmp, self._file)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as exc:
            raise StoreError(f"cannot write embedded store {self._file}: {exc}") from exc

    def counts(self) -> dict[str, dict[str, int]]:
        nodes = {label: len(self._nodes(label)) for label in Label}
        rels: dict[Rel, int] = {rel: len(pairs) for rel, pairs in self._edges.items()}
        rels[Rel.INTERACTED] = len(self._interactions)
        return counts_dict(nodes, rels)

    def snapshot(self) -> Snapshot:
        return Snapshot(
            products=sorted(self._products.values()),
            brands=sorted(self._brands),
            categories=sorted(self._categories.items()),
            users=sorted(self._users),
            edges={rel: sorted(pairs) for rel, pairs in self._edges.items()},
            interactions=[self._interactions[key] for key in sorted(self._interactions)],
        )

    def neighbours(self, product_id: str) -> dict[str, list[str]]:
        return {
            str(rel): sorted(d for s, d in self._edges[rel] if s == product_id)
            for rel in PRODUCT_RELATIONS
        }

    def get_products(self, ids: Iterable[str]) -> dict[str, Product]:
        wanted = {i for i in ids if i in self._products}
        brands: dict[str, list[str]] = {}
        categories: dict[str, list[str]] = {}
        for rel, found in ((Rel.MADE_BY, brands), (Rel.IN_CATEGORY, categories)):
            for s, d in self._edges[rel]:
                if s in wanted:
                    found.setdefault(s, []).append(d)
        return {
            pid: Product(
                pid,
                title,
                description,
                min(brands.get(pid, ()), default=None),
                sorted(categories.get(pid, ())),
                price,
                in_catalogue,
            )
            for pid, title, description, price, in_catalogue in map(self._products.get, wanted)
        }

    def unlink_products(self, ids: Iterable[str], rels: Iterable[Rel]) -> None:
        unlinked = set(ids)
        for rel in rels:
            self._edges[rel] = {(s, d) for s, d in self._edges[rel] if s not in unlinked}
        self._save()

    def remove_products(self, ids: Iterable[str]) -> int:
        gone = {i for i in ids if i in self._products}
        for pid in gone:
            del self._products[pid]
        for rel, pairs in self._edges.items():
            src, dst = (label == Label.PRODUCT for label in REL_ENDPOINTS[rel])
            self._edges[rel] = {
                (s, d) for s, d in pairs if not (src and s in gone or dst and d in gone)
            }
        self._interactions = {k: v for k, v in self._interactions.items() if k[1] not in gone}
        self._save()
        return len(gone)

    def remove_user(self, user_id: str) -> int | None:
        if user_id not in self._users:
            return None
        self._users.discard(user_id)
        mine = [key for key in self._interactions if key[0] == user_id]
        for key in mine:
            del self._interactions[key]
        self._save()
        return len(mine)

    def version(self) -> str | None:
        # The file is replaced on every write: its timestamp and size change with it.
        try:
            info = self._file.stat()
        except FileNotFoundError:
            return "empty"
        except OSError as exc:
            raise StoreError(f"cannot read embedded store {self._file}: {exc}") from exc
        return f"{info.st_mtime_ns}:{info.st_size}:{info.st_ino}"

    def clear(self) -> None:
        self._products.clear()
        self._categories.clear()
        self._brands.clear()
        self._users.clear()
        for pairs in self._edges.values():
            pairs.clear()
        self._interactions.clear()
        self._file.unlink(missing_ok=True)

    def close(self) -> None:
        """Nothing to release: every write is already on disk."""


def _step_sizes(snap: Snapshot) -> list[tuple[str, int]]:
    counts = snap.counts()
    return [*counts["nodes"].items(), *counts["relationships"].items()]
