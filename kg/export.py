"""Store → PyG `HeteroData` following the contract in docs/design.md, plus id maps.

Node ids are sorted, so a node's index is stable for a given graph; edge rows are sorted by
(src, dst) index (one edge per interaction event, several per pair where a user came back);
every edge type has its reverse `rev_<rel>` with the same attributes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import HeteroData
from torch_geometric.data.storage import EdgeStorage

from kg.schema import REL_ENDPOINTS, Label, Rel
from kg.stores.base import EDGE_RELS, Snapshot, Store

# Code of each interaction kind in the `kind` edge attribute (index in this tuple).
INTERACTION_KINDS: tuple[str, ...] = ("rating", "review", "view", "cart", "purchase", "sequence")


def node_type(label: Label) -> str:
    return label.lower()


def edge_type(rel: Rel) -> tuple[str, str, str]:
    src, dst = REL_ENDPOINTS[rel]
    return node_type(src), rel.lower(), node_type(dst)


def to_heterodata(source: Store | Snapshot) -> HeteroData:
    snap = source if isinstance(source, Snapshot) else source.snapshot()
    data = HeteroData()
    ids = {
        Label.PRODUCT: [p.id for p in snap.products],
        Label.BRAND: snap.brands,
        Label.CATEGORY: [c for c, _ in snap.categories],
        Label.USER: snap.users,
    }
    for label, node_ids in ids.items():
        store = data[node_type(label)]
        store.node_id = list(node_ids)
        store.num_nodes = len(node_ids)
    index = {label: {node: i for i, node in enumerate(node_ids)} for label, node_ids in ids.items()}

    product = data[node_type(Label.PRODUCT)]
    product.in_catalogue = torch.tensor([p.in_catalogue for p in snap.products], dtype=torch.bool)
    product.price = _floats([p.price for p in snap.products])
    product.text_fields = _text_fields(snap)
    data[node_type(Label.CATEGORY)].name = [name for _, name in snap.categories]

    for rel in EDGE_RELS:
        _add_edges(data, rel, index, snap.edges.get(rel, []), {})
    rows = snap.interactions
    try:
        kinds = [INTERACTION_KINDS.index(r.kind) for r in rows]
    except ValueError as exc:
        raise ValueError(f"unknown interaction kind; known: {INTERACTION_KINDS}") from exc
    sessions = {s: i for i, s in enumerate(sorted({r.session for r in rows} - {None}))}
    attrs = {
        "rating": _floats([r.rating for r in rows]),
        "ts": _floats([r.ts for r in rows]),
        "kind": torch.tensor(kinds, dtype=torch.long),
        "price": _floats([r.price for r in rows]),
        "session": torch.tensor([sessions.get(r.session, -1) for r in rows], dtype=torch.long),
    }
    _add_edges(data, Rel.INTERACTED, index, [(r.user, r.product) for r in rows], attrs)
    return data


def _floats(values: list[float | None]) -> torch.Tensor:
    return torch.tensor([math.nan if v is None else v for v in values], dtype=torch.float)


def _text_fields(snap: Snapshot) -> list[dict]:
    brand: dict[str, str] = {}
    for pid, b in snap.edges.get(Rel.MADE_BY, []):
        brand.setdefault(pid, b)  # pairs are sorted, so the first brand is the smallest
    categories: dict[str, list[str]] = {}
    for pid, c in snap.edges.get(Rel.IN_CATEGORY, []):
        categories.setdefault(pid, []).append(c)
    return [
        {
            "title": p.title,
            "description": p.description,
            "brand": brand.get(p.id),
            "categories": categories.get(p.id, []),
        }
        for p in snap.products
    ]


def _add_edges(
    data: HeteroData,
    rel: Rel,
    index: dict[Label, dict[str, int]],
    pairs: list[tuple[str, str]],
    attrs: dict[str, torch.Tensor],
) -> None:
    src_label, dst_label = REL_ENDPOINTS[rel]
    src_index, dst_index = index[src_label], index[dst_label]
    src = np.fromiter((src_index[s] for s, _ in pairs), dtype=np.int64, count=len(pairs))
    dst = np.fromiter((dst_index[d] for _, d in pairs), dtype=np.int64, count=len(pairs))
    s, r, d = edge_type(rel)
    _set_sorted(data[s, r, d], src, dst, attrs)
    _set_sorted(data[d, f"rev_{r}", s], dst, src, attrs)


def _set_sorted(
    store: EdgeStorage, src: np.ndarray, dst: np.ndarray, attrs: dict[str, torch.Tensor]
) -> None:
    order = torch.from_numpy(np.lexsort((dst, src)))
    store.edge_index = torch.from_numpy(np.stack([src, dst]))[:, order]
    for name, values in attrs.items():
        store[name] = values[order]


def save_id_maps(data: HeteroData, path: str | Path) -> Path:
    """Write {node_type: [ids in index order]} as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    maps = {nt: list(data[nt].node_id) for nt in data.node_types}
    path.write_text(json.dumps(maps, ensure_ascii=False), encoding="utf-8")
    return path


def load_id_maps(path: str | Path) -> dict[str, list[str]]:
    return json.loads(Path(path).read_text(encoding="utf-8"))
