"""Explanations: up to three knowledge-graph paths connecting each answer to its query.

A related item is explained from the query product (`Q —BOUGHT_TOGETHER→ R`, same brand, shared
category); a recommendation from the user's recent items (`U —INTERACTED→ P —ALSO_BOUGHT→ R`); a
search hit by the brand or category named in the query text. Paths are read from the store:
with Neo4j one parameterised Cypher query per answer list, with the embedded store the same
from its adjacency. Both produce the same candidate rows, ranked by one function.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import defaultdict
from functools import lru_cache
from typing import Any, LiteralString, NamedTuple

from pydantic import BaseModel, ConfigDict

from kg.schema import CATEGORY_PATH_SEP, PRODUCT_RELATIONS, Label, Product, Rel
from kg.stores import Neo4jStore, Store

MAX_PATHS = 3
# A recommendation is explained from the user's most recent items only: bounded query cost.
MAX_ANCHORS = 20
# Stronger evidence first; shared brand/category rank below any direct product relation.
_REL_RANK = {
    Rel.BOUGHT_TOGETHER: 0,
    Rel.ALSO_BOUGHT: 1,
    Rel.ALSO_VIEWED: 2,
    Rel.MADE_BY: 3,
    Rel.IN_CATEGORY: 4,
}


class Node(BaseModel):
    model_config = ConfigDict(frozen=True)  # hashable: shared nodes are dict keys

    label: str
    id: str
    name: str | None = None

    def __str__(self) -> str:
        if self.label == Label.PRODUCT:
            return self.id
        return f'{self.label} "{self.name or self.id}"'


class Hop(BaseModel):
    model_config = ConfigDict(frozen=True)

    type: str
    forward: bool  # True: nodes[i] -[type]-> nodes[i+1]; False: the other way round


class Path(BaseModel):
    """Nodes from the query side to the answer, and the relationship between each pair."""

    nodes: list[Node]
    rels: list[Hop]

    def __str__(self) -> str:
        parts = [str(self.nodes[0])]
        for hop, node in zip(self.rels, self.nodes[1:], strict=True):
            arrow = f"—{hop.type}→" if hop.forward else f"←{hop.type}—"
            parts += [arrow, str(node)]
        return " ".join(parts)


class PathRow(NamedTuple):
    """One candidate explanation: anchor product → (via node →) result product."""

    result: str
    anchor: str
    rel: str
    forward: bool  # direction of a direct product relation, seen from the anchor
    via: Node | None  # the shared Brand/Category, None for a direct relation
    degree: int  # products sharing `via`: smaller = more specific


class KGView(ABC):
    """What queries read from the graph beyond `Store`'s public API: user histories and the
    candidate explanation paths."""

    @abstractmethod
    def user_items(self, user_id: str) -> list[str] | None:
        """The user's products, each once at its last event, oldest first; None if the user is
        not in the graph."""

    @abstractmethod
    def path_rows(self, anchors: list[str], results: list[str]) -> list[PathRow]:
        """Every direct relation, shared brand and shared category between anchors and results."""

    def explain(
        self, anchors: list[str], results: list[str], user_id: str | None = None
    ) -> dict[str, list[Path]]:
        """Up to MAX_PATHS paths per result; starting at `user_id` when given."""
        anchors = anchors[-MAX_ANCHORS:]
        if not anchors or not results:
            return {r: [] for r in results}
        return best_paths(self.path_rows(anchors, results), results, user_id)


def best_paths(
    rows: list[PathRow], results: list[str], user_id: str | None = None
) -> dict[str, list[Path]]:
    """Rank candidate rows (strongest relation, then most specific shared node) and build up to
    MAX_PATHS distinct paths per result."""
    by_result: dict[str, list[PathRow]] = defaultdict(list)
    for row in rows:
        by_result[row.result].append(row)
    found: dict[str, list[Path]] = {}
    for result in results:
        ranked = sorted(by_result[result], key=_strength)
        paths: list[Path] = []
        seen: set[tuple[str, str, bool]] = set()
        for row in ranked:
            # One path per shared node, and per relation type for direct links.
            key = (row.rel, row.via.id if row.via else "", row.forward)
            if key in seen:
                continue
            seen.add(key)
            paths.append(_path(row, user_id))
            if len(paths) == MAX_PATHS:
                break
        found[result] = paths
    return found


def _strength(row: PathRow) -> tuple[int, int, str, str, bool]:
    # Every field breaks ties, so both stores pick the same paths whatever their row order.
    via = row.via.id if row.via else ""
    return _REL_RANK[row.rel], row.degree, row.anchor, via, not row.forward  # type: ignore[index]


def _path(row: PathRow, user_id: str | None) -> Path:
    anchor, result = _product_node(row.anchor), _product_node(row.result)
    if row.via is None:
        nodes, rels = [anchor, result], [_hop(row.rel, row.forward)]
    else:
        nodes, rels = [anchor, row.via, result], [_hop(row.rel, True), _hop(row.rel, False)]
    if user_id is not None:
        nodes.insert(0, Node(label=Label.USER, id=user_id))
        rels.insert(0, _hop(Rel.INTERACTED, True))
    return Path(nodes=nodes, rels=rels)


# Nodes and hops are frozen, so paths can share them: building them was most of an explained
# answer's CPU time.
@lru_cache(maxsize=2**16)
def _product_node(product_id: str) -> Node:
    return Node(label=Label.PRODUCT, id=product_id)


@lru_cache(maxsize=64)
def _hop(rel: str, forward: bool) -> Hop:
    return Hop(type=rel, forward=forward)


def text_paths(text: str, product: Product) -> list[Path]:
    """Search hits: the product's brand or categories whose name occurs in the query text."""
    words = text.casefold()
    found = []
    if product.brand and product.brand.casefold() in words:
        found.append((Rel.MADE_BY, Label.BRAND, product.brand, product.brand))
    for cat in product.categories:
        name = category_name(cat)
        if name.casefold() in words:
            found.append((Rel.IN_CATEGORY, Label.CATEGORY, cat, name))
    return [
        Path(
            nodes=[Node(label=Label.PRODUCT, id=product.id), Node(label=label, id=i, name=name)],
            rels=[Hop(type=rel, forward=True)],
        )
        for rel, label, i, name in found[:MAX_PATHS]
    ]


def category_name(category_id: str) -> str:
    """Leaf name of a category id (ids of hierarchies are root→leaf paths)."""
    return category_id.rsplit(CATEGORY_PATH_SEP, 1)[-1]


_PRODUCT_RELS = "|".join(PRODUCT_RELATIONS)
# One query per answer list: every (anchor, result) pair, the three kinds of link between them.
# Anchors are matched first so shared-category links expand from the anchor into the bound
# result instead of scanning a category's (possibly thousands of) members.
PATHS_CYPHER: LiteralString = f"""
UNWIND $anchors AS aid
MATCH (a:{Label.PRODUCT} {{id: aid}})
UNWIND $results AS rid
MATCH (r:{Label.PRODUCT} {{id: rid}})
WHERE r <> a
CALL (a, r) {{
    MATCH (a)-[rel:{_PRODUCT_RELS}]-(r)
    RETURN type(rel) AS rel, startNode(rel) = a AS forward, null AS via, 0 AS degree
  UNION ALL
    MATCH (a)-[:{Rel.MADE_BY}]->(b:{Label.BRAND})<-[:{Rel.MADE_BY}]-(r)
    RETURN '{Rel.MADE_BY}' AS rel, true AS forward,
           b {{.id, name: coalesce(b.name, b.id), label: '{Label.BRAND}'}} AS via,
           COUNT {{ (b)<-[:{Rel.MADE_BY}]-() }} AS degree
  UNION ALL
    MATCH (a)-[:{Rel.IN_CATEGORY}]->(c:{Label.CATEGORY})<-[:{Rel.IN_CATEGORY}]-(r)
    RETURN '{Rel.IN_CATEGORY}' AS rel, true AS forward,
           c {{.id, name: coalesce(c.name, c.id), label: '{Label.CATEGORY}'}} AS via,
           COUNT {{ (c)<-[:{Rel.IN_CATEGORY}]-() }} AS degree
}}
RETURN rid, min(aid) AS anchor, rel, forward, via, degree
"""  # type: ignore[assignment]

USER_ITEMS_CYPHER: LiteralString = f"""
MATCH (u:{Label.USER} {{id: $user}})
OPTIONAL MATCH (u)-[i:{Rel.INTERACTED}]->(p:{Label.PRODUCT})
WITH u, p, max(i.ts) AS ts ORDER BY ts, p.id
RETURN u.id AS user, collect(p.id) AS items
"""  # type: ignore[assignment]


class Neo4jView(KGView):
    def __init__(self, store: Neo4jStore) -> None:
        self.store = store

    def _read(self, query: LiteralString, **params: Any) -> list[list[Any]]:
        with self.store.session() as session:
            return session.run(query, params).values()

    def user_items(self, user_id: str) -> list[str] | None:
        rows = self._read(USER_ITEMS_CYPHER, user=user_id)
        return rows[0][1] if rows else None  # grouped by user: no row for an unknown user

    def path_rows(self, anchors: list[str], results: list[str]) -> list[PathRow]:
        rows = self._read(PATHS_CYPHER, anchors=anchors, results=results)
        return [
            PathRow(rid, anchor, rel, forward, Node(**via) if via else None, degree)
            for rid, anchor, rel, forward, via, degree in rows
        ]


class SnapshotView(KGView):
    """Adjacency built once from the store's snapshot (the embedded store holds it in memory)."""

    def __init__(self, store: Store) -> None:
        snap = store.snapshot()
        self._links: dict[tuple[str, str], set[tuple[str, bool]]] = defaultdict(set)
        for rel in PRODUCT_RELATIONS:
            for src, dst in snap.edges.get(rel, []):
                self._links[src, dst].add((rel, True))
                self._links[dst, src].add((rel, False))
        names = {Label.BRAND: {b: b for b in snap.brands}, Label.CATEGORY: dict(snap.categories)}
        # product -> (label, id) of a brand/category it has -> (that node, its degree); keyed by
        # tuples, which hash much faster than the pydantic nodes
        self._shared: dict[str, dict[tuple[str, str], tuple[Node, int]]] = defaultdict(dict)
        for rel, label in ((Rel.MADE_BY, Label.BRAND), (Rel.IN_CATEGORY, Label.CATEGORY)):
            members: dict[str, list[str]] = defaultdict(list)
            for src, dst in snap.edges.get(rel, []):
                members[dst].append(src)
            for node_id, products in members.items():
                via = Node(label=label, id=node_id, name=names[label].get(node_id))
                for pid in products:
                    self._shared[pid][label, node_id] = via, len(products)
        self._users = set(snap.users)
        self._items: dict[str, dict[str, float]] = defaultdict(dict)  # user -> product -> ts
        for row in snap.interactions:
            ts = row.ts if row.ts is not None else 0.0
            items = self._items[row.user]
            items[row.product] = max(items.get(row.product, ts), ts)

    def user_items(self, user_id: str) -> list[str] | None:
        if user_id not in self._users:
            return None
        return [pid for _, pid in sorted((ts, pid) for pid, ts in self._items[user_id].items())]

    def path_rows(self, anchors: list[str], results: list[str]) -> list[PathRow]:
        rows = []
        for result in results:
            shared = self._shared[result]
            for anchor in anchors:
                if anchor == result:
                    continue
                rows += [
                    PathRow(result, anchor, rel, fwd, None, 0)
                    for rel, fwd in self._links.get((anchor, result), ())
                ]
                theirs = self._shared[anchor]
                rows += [
                    PathRow(result, anchor, _via_rel(via), True, via, degree)
                    for key, (via, degree) in shared.items()
                    if key in theirs
                ]
        return rows


def _via_rel(via: Node) -> str:
    return Rel.MADE_BY if via.label == Label.BRAND else Rel.IN_CATEGORY


def kg_view(store: Store) -> KGView:
    """The view matching the store's backend."""
    return Neo4jView(store) if isinstance(store, Neo4jStore) else SnapshotView(store)
