"""Store → PyG `HeteroData` following the contract in docs/design.md, plus id maps.

Node ids are sorted, so a node's index is stable for a given graph; edge rows are sorted by
(src, dst) index (one edge per interaction event, several per pair where a user came back);
every edge type has its reverse `rev_<rel>` with the same attributes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import HeteroData
from torch_geometric.data.storage import EdgeStorage

from kg.schema import REL_ENDPOINTS, Label, Rel
from kg.stores.base import EDGE_RELS, GraphColumns, Snapshot, Store

# Code of each interaction kind in the `kind` edge attribute (index in this tuple).
INTERACTION_KINDS: tuple[str, ...] = ("rating", "review", "view", "cart", "purchase", "sequence")


def node_type(label: Label) -> str:
    return label.lower()


def edge_type(rel: Rel) -> tuple[str, str, str]:
    src, dst = REL_ENDPOINTS[rel]
    return node_type(src), rel.lower(), node_type(dst)


def to_heterodata(source: Store | Snapshot) -> HeteroData:
    """The graph of a store (through its `columns()`: a Neo4j store streams them) or of a
    snapshot."""
    cols = GraphColumns.from_snapshot(source) if isinstance(source, Snapshot) else source.columns()
    data = HeteroData()
    for label, node_ids in cols.ids.items():
        store = data[node_type(label)]
        store.node_id = node_ids
        store.num_nodes = len(node_ids)

    product = data[node_type(Label.PRODUCT)]
    product.in_catalogue = torch.tensor([p.in_catalogue for p in cols.products], dtype=torch.bool)
    product.price = _floats(np.array([p.price for p in cols.products], dtype=np.float64))
    data[node_type(Label.CATEGORY)].name = cols.category_names

    for rel in EDGE_RELS:
        _add_edges(data, rel, *cols.edges[rel], {})
    product.text_fields = _text_fields(data, cols)
    events = cols.events
    kinds = {kind: code for code, kind in enumerate(INTERACTION_KINDS)}
    try:
        kind = np.fromiter((kinds[k] for k in events["kind"]), np.int64, len(events["kind"]))
    except KeyError as exc:
        raise ValueError(f"unknown interaction kind {exc}; known: {INTERACTION_KINDS}") from exc
    sessions = {s: i for i, s in enumerate(sorted(set(events["session"]) - {None}))}
    session = [sessions.get(s, -1) for s in events["session"]]
    # Events of a pair in the snapshot's order (`InteractionRow.sort_key`): by time, unknown
    # last, then key; the stable sort by (src, dst) in `_set_sorted` keeps it.
    users, items = cols.edges[Rel.INTERACTED]
    ts = events["ts"]
    order = np.lexsort((np.array(events["key"]), np.nan_to_num(ts), np.isnan(ts), items, users))
    attrs = {
        "rating": _floats(events["rating"][order]),
        "ts": _floats(ts[order]),
        "kind": torch.from_numpy(kind[order]),
        "price": _floats(events["price"][order]),
        "session": torch.tensor(session, dtype=torch.long)[torch.from_numpy(order)],
    }
    _add_edges(data, Rel.INTERACTED, users[order], items[order], attrs)
    return data


def _floats(values: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(values.astype(np.float32))


def _text_fields(data: HeteroData, cols: GraphColumns) -> list[dict]:
    """Per product: title, description, its smallest brand id and its categories in id order
    (read from the sorted MADE_BY and IN_CATEGORY edges)."""
    brands, categories = cols.ids[Label.BRAND], cols.ids[Label.CATEGORY]
    products = cols.products
    brand: list[str | None] = [None] * len(products)
    made_by = data[edge_type(Rel.MADE_BY)].edge_index.numpy()
    # Edges are sorted by (product, brand): a product's first edge names its smallest brand.
    with_brand, first = np.unique(made_by[0], return_index=True)
    for pid, b in zip(with_brand.tolist(), made_by[1][first].tolist(), strict=True):
        brand[pid] = brands[b]
    in_category = data[edge_type(Rel.IN_CATEGORY)].edge_index.numpy()
    names = [categories[c] for c in in_category[1].tolist()]
    bounds = np.searchsorted(in_category[0], np.arange(len(products) + 1)).tolist()
    product_categories = [names[bounds[i] : bounds[i + 1]] for i in range(len(products))]
    return [
        {
            "title": p.title,
            "description": p.description,
            "brand": brand[i],
            "categories": product_categories[i],
        }
        for i, p in enumerate(products)
    ]


def _add_edges(
    data: HeteroData,
    rel: Rel,
    src: np.ndarray,
    dst: np.ndarray,
    attrs: dict[str, torch.Tensor],
) -> None:
    s, r, d = edge_type(rel)
    _set_sorted(data[s, r, d], src, dst, attrs)
    _set_sorted(data[d, f"rev_{r}", s], dst, src, attrs)


def _set_sorted(
    store: EdgeStorage, src: np.ndarray, dst: np.ndarray, attrs: dict[str, torch.Tensor]
) -> None:
    # One stable argsort of a combined key: the same order as lexsort((dst, src)), ~2× faster.
    key = src * (int(dst.max()) + 1) + dst if len(dst) else src
    order = torch.from_numpy(np.argsort(key, kind="stable"))
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
