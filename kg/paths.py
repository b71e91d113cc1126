"""Explanations: up to three knowledge-graph paths connecting each answer to its query.

A related item is explained from the query product (`Q —BOUGHT_TOGETHER→ R`, same brand, shared
category); a recommendation from the user's recent items (`U —INTERACTED→ P —ALSO_BOUGHT→ R`); a
search hit by the brand or category named in the query text. Paths are read from the store:
with Neo4j one parameterised Cypher query per answer list, with the embedded store the same
from its adjacency. Both produce the same candidate rows, ranked by one function: the most
specific first — a direct link (a "shared node" of one pair) before a shared brand, category
or shopper (one who had both; shown without their id), and a small one before a large one; a
node shared by more than half of all products explains nothing and is left out. The rarest
words both products' texts share and the smallest category both sit under (`kg.reasons`)
compete on the same measure, so every answer whose texts or categories overlap has a reason.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Literal, LiteralString, NamedTuple

from pydantic import BaseModel, ConfigDict, computed_field

from kg.chains import Chain, Link, best_chain, between
from kg.reasons import ReasonIndex
from kg.schema import CATEGORY_PATH_SEP, PRODUCT_RELATIONS, Label, Product, Rel
from kg.stores import Neo4jStore, Store

MAX_PATHS = 3
# A recommendation is explained from the user's most recent items only: bounded query cost.
MAX_ANCHORS = 20
# A brand or category shared by more than this share of all products explains nothing.
UNINFORMATIVE_SHARE = 0.5
# Among equally specific links, stronger evidence first.
_REL_RANK = {
    Rel.BOUGHT_TOGETHER: 0,
    Rel.ALSO_BOUGHT: 1,
    Rel.ALSO_VIEWED: 2,
    Rel.MADE_BY: 3,
    Rel.INTERACTED: 4,
    Rel.IN_CATEGORY: 5,
}
# Another shopper behind a path is shown without their id (one per path, so one node id).
SHOPPER_ID = "another shopper"


class Node(BaseModel):
    model_config = ConfigDict(frozen=True)  # hashable: shared nodes are dict keys

    label: str
    id: str
    name: str | None = None

    def __str__(self) -> str:
        if self.label == Label.PRODUCT:
            return f'"{self.name}"' if self.name else self.id
        return f'{self.label} "{self.name or self.id}"'


class Hop(BaseModel):
    model_config = ConfigDict(frozen=True)

    type: str
    forward: bool  # True: nodes[i] -[type]-> nodes[i+1]; False: the other way round


class Path(BaseModel):
    """Nodes from the query side to the answer, and the relationship between each pair.
    `size`: how many products share the node the path goes through (1: a direct link between
    the two products; None: not known) — smaller is more specific. `kind`: a graph path, shared
    words ("text") or the nearest category both sit under ("category")."""

    nodes: list[Node]
    rels: list[Hop]
    kind: Literal["graph", "text", "category"] = "graph"
    size: int | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def edges(self) -> list[dict[str, str]]:
        """The hops as directed edges between node ids, ready for a graph drawing library."""
        return [
            {"source": a.id, "target": b.id, "type": hop.type}
            if hop.forward
            else {"source": b.id, "target": a.id, "type": hop.type}
            for hop, a, b in zip(self.rels, self.nodes, self.nodes[1:], strict=False)
        ]

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

    @abstractmethod
    def product_count(self) -> int:
        """How many products the graph holds (what a shared node's size is measured against)."""

    @abstractmethod
    def links(self, ids: list[str]) -> dict[str, list[Link]]:
        """Each product's links to other products: (relation, other, forward)."""

    def explain(
        self,
        anchors: list[str],
        results: list[str],
        user_id: str | None = None,
        products: Mapping[str, Product] | None = None,
        reasons: ReasonIndex | None = None,
    ) -> dict[str, list[Path]]:
        """Up to MAX_PATHS paths per result, most specific first; starting at `user_id` when
        given. With `products` (id → Product), nodes carry titles, and shared words or the
        nearest shared category ancestor are reasons too: with `reasons` (catalogue counts)
        sized and ranked among the graph paths, without them only where the graph has nothing
        (how rare a word is cannot be told from two products)."""
        anchors = list(dict.fromkeys(reversed(anchors)))[:MAX_ANCHORS][::-1]  # recent, distinct
        if not anchors or not results:
            return {r: [] for r in results}
        rows = self.path_rows(anchors, results)
        found = best_paths(rows, results, user_id, products, self.product_count())
        unexplained = [result for result, paths in found.items() if not paths]
        for result, chain in self._chains(anchors, unexplained).items():
            found[result].append(_chain_path(chain, user_id, products))
        if not products:
            return found
        index = reasons or ReasonIndex(products.values())
        for result, paths in found.items():
            if reasons is None and paths:
                continue
            extra = other_reasons(anchors, result, products, index, user_id)
            if reasons is None:
                for path in extra:
                    path.size = None
                paths += extra[:1]
            else:  # stable: a graph path first where sizes tie
                found[result] = sorted(paths + extra, key=lambda p: p.size)[:MAX_PATHS]
        return found

    def _chains(self, anchors: list[str], results: list[str]) -> dict[str, Chain]:
        """The best chain of product links to each of `results` (two rounds of link reads)."""
        if not results:
            return {}
        adjacency = self.links([*anchors, *results])
        adjacency |= self.links(sorted(between([*anchors, *results], adjacency) - adjacency.keys()))
        limit, rank = UNINFORMATIVE_SHARE * self.product_count(), _REL_RANK.__getitem__
        chains = {r: best_chain(anchors, r, adjacency, limit, rank) for r in results}
        return {r: chain for r, chain in chains.items() if chain is not None}


def _chain_path(chain: Chain, user_id: str | None, products: Mapping[str, Product] | None) -> Path:
    nodes = [_product_node(pid, products) for pid in chain.products]
    rels = [_hop(rel, forward) for rel, forward in chain.hops]
    return _from_user(Path(nodes=nodes, rels=rels, size=chain.size), user_id)


def best_paths(
    rows: list[PathRow],
    results: list[str],
    user_id: str | None = None,
    products: Mapping[str, Product] | None = None,
    num_products: int | None = None,
) -> dict[str, list[Path]]:
    """Rank candidate rows (most specific first) and build up to MAX_PATHS distinct paths per
    result; shared nodes covering more than UNINFORMATIVE_SHARE of `num_products` are dropped."""
    limit = UNINFORMATIVE_SHARE * num_products if num_products else float("inf")
    by_result: dict[str, list[PathRow]] = defaultdict(list)
    for row in rows:
        if row.via is None or row.degree <= limit:
            by_result[row.result].append(row)
    found: dict[str, list[Path]] = {}
    for result in results:
        ranked = sorted(by_result[result], key=_specificity)
        paths: list[Path] = []
        seen: set[tuple[str, str, bool]] = set()
        for row in ranked:
            # One path per shared node, per relation type for direct links, and one through
            # another shopper (the smallest basket that holds both).
            shared = row.via.id if row.via and row.rel != Rel.INTERACTED else ""
            key = (row.rel, shared, row.forward)
            if key in seen:
                continue
            seen.add(key)
            paths.append(_path(row, user_id, products))
            if len(paths) == MAX_PATHS:
                break
        found[result] = paths
    return found


def _specificity(row: PathRow) -> tuple[int, int, str, str, bool]:
    # Every field breaks ties, so both stores pick the same paths whatever their row order.
    via = row.via.id if row.via else ""
    size = 1 if row.via is None else row.degree
    return size, _REL_RANK[row.rel], row.anchor, via, not row.forward  # type: ignore[index]


def _path(row: PathRow, user_id: str | None, products: Mapping[str, Product] | None) -> Path:
    anchor, result = _product_node(row.anchor, products), _product_node(row.result, products)
    if row.via is None:
        nodes, rels = [anchor, result], [_hop(row.rel, row.forward)]
    else:
        via = row.via
        if via.label == Label.PRODUCT:
            via = _product_node(via.id, products)
        forward = True
        if via.label == Label.USER:  # User -INTERACTED-> Product: the shopper is the start
            via, forward = Node(label=Label.USER, id=SHOPPER_ID, name=_basket(row.degree)), False
        nodes, rels = [anchor, via, result], [_hop(row.rel, forward), _hop(row.rel, not forward)]
    return _from_user(
        Path(nodes=nodes, rels=rels, size=1 if row.via is None else row.degree), user_id
    )


def _basket(products: int) -> str:
    return f"a shopper with {products} products" if products > 2 else "a shopper with both"


def _from_user(path: Path, user_id: str | None) -> Path:
    """`path` starting at the user whose item it starts from (recommendations)."""
    if user_id is not None:
        path.nodes.insert(0, Node(label=Label.USER, id=user_id))
        path.rels.insert(0, _hop(Rel.INTERACTED, True))
    return path


def other_reasons(
    anchors: list[str],
    result: str,
    products: Mapping[str, Product],
    index: ReasonIndex,
    user_id: str | None = None,
) -> list[Path]:
    """The rarest words `result` shares with an anchor, and the smallest category above both,
    each from the anchor giving the smallest (most recent on ties), sized by `index`."""
    theirs = products.get(result)
    if theirs is None:
        return []
    words: tuple[int, str, list[str]] | None = None
    category: tuple[int, str, str] | None = None
    for anchor in reversed(anchors):  # most recent first: it wins ties
        ours = products.get(anchor)
        if ours is None or anchor == result:
            continue
        shared = index.shared_words(ours, theirs)
        if shared and (words is None or shared.size < words[0]):
            words = shared.size, anchor, shared.words
        above = index.shared_ancestor(ours, theirs)
        if above and (category is None or above[0] < category[0]):
            category = above[0], anchor, above[1]
    found = []
    if words:
        size, anchor, shared_words = words
        via = Node(label="Words", id=" ".join(shared_words), name=", ".join(shared_words))
        found.append(_through(anchor, via, result, ("MENTIONS", "text", size), products, user_id))
    if category:
        size, anchor, cat = category
        via = Node(label=Label.CATEGORY, id=cat, name=category_name(cat))
        found.append(_through(anchor, via, result, ("UNDER", "category", size), products, user_id))
    return sorted(found, key=lambda p: p.size or 0)


def _through(
    anchor: str,
    via: Node,
    result: str,
    how: tuple[str, Literal["text", "category"], int],
    products: Mapping[str, Product],
    user_id: str | None,
) -> Path:
    rel, kind, size = how
    nodes = [_product_node(anchor, products), via, _product_node(result, products)]
    path = Path(nodes=nodes, rels=[_hop(rel, True), _hop(rel, False)], kind=kind, size=size)
    return _from_user(path, user_id)


def _product_node(product_id: str, products: Mapping[str, Product] | None = None) -> Node:
    product = products.get(product_id) if products else None
    return _titled_node(product_id, product.display_title or None if product else None)


# Nodes and hops are frozen, so paths can share them: building them was most of an explained
# answer's CPU time.
@lru_cache(maxsize=2**16)
def _titled_node(product_id: str, title: str | None) -> Node:
    return Node(label=Label.PRODUCT, id=product_id, name=title)


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
# A product both are linked to by the same relation ("both bought with X"); its size is how many
# distinct products that relation links it to.
_SHARED_NEIGHBOUR = """
  UNION ALL
    MATCH (a)-[:{rel}]-(x:{label})-[:{rel}]-(r)
    WHERE x <> a AND x <> r
    WITH DISTINCT x
    RETURN '{rel}' AS rel, true AS forward, x {{.id, name: null, label: '{label}'}} AS via,
           COUNT {{ MATCH (x)-[:{rel}]-(y:{label}) RETURN DISTINCT y }} AS degree"""
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
{"".join(_SHARED_NEIGHBOUR.format(rel=rel, label=Label.PRODUCT) for rel in PRODUCT_RELATIONS)}
  UNION ALL
    MATCH (a)<-[:{Rel.INTERACTED}]-(u:{Label.USER})-[:{Rel.INTERACTED}]->(r)
    WITH DISTINCT u
    RETURN '{Rel.INTERACTED}' AS rel, true AS forward, u {{.id, name: null, label: '{Label.USER}'}}
           AS via, COUNT {{ MATCH (u)-[:{Rel.INTERACTED}]->(y) RETURN DISTINCT y }} AS degree
}}
RETURN rid, min(aid) AS anchor, rel, forward, via, degree
"""  # type: ignore[assignment]

USER_ITEMS_CYPHER: LiteralString = f"""
MATCH (u:{Label.USER} {{id: $user}})
OPTIONAL MATCH (u)-[i:{Rel.INTERACTED}]->(p:{Label.PRODUCT})
WITH u, p, max(i.ts) AS ts ORDER BY ts, p.id
RETURN u.id AS user, collect(p.id) AS items
"""  # type: ignore[assignment]


LINKS_CYPHER: LiteralString = f"""
UNWIND $ids AS pid
MATCH (p:{Label.PRODUCT} {{id: pid}})-[rel:{_PRODUCT_RELS}]-(x:{Label.PRODUCT})
WHERE x <> p
RETURN DISTINCT pid, type(rel) AS rel, x.id AS other, startNode(rel) = p AS forward
"""  # type: ignore[assignment]

PRODUCT_COUNT_CYPHER: LiteralString = f"MATCH (p:{Label.PRODUCT}) RETURN count(p)"  # type: ignore[assignment]


class Neo4jView(KGView):
    def __init__(self, store: Neo4jStore) -> None:
        self.store = store
        self._product_count: int | None = None

    def product_count(self) -> int:
        if self._product_count is None:  # once per view: the graph changes only on reload
            self._product_count = self._read(PRODUCT_COUNT_CYPHER)[0][0]
        return self._product_count

    def _read(self, query: LiteralString, **params: Any) -> list[list[Any]]:
        with self.store.session() as session:
            return session.run(query, params).values()

    def user_items(self, user_id: str) -> list[str] | None:
        rows = self._read(USER_ITEMS_CYPHER, user=user_id)
        return rows[0][1] if rows else None  # grouped by user: no row for an unknown user

    def links(self, ids: list[str]) -> dict[str, list[Link]]:
        found: dict[str, list[Link]] = {pid: [] for pid in ids}
        for pid, rel, other, forward in self._read(LINKS_CYPHER, ids=ids):
            found[pid].append((rel, other, forward))
        return found

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
        self._adjacent: dict[str, set[Link]] = defaultdict(set)
        for rel in PRODUCT_RELATIONS:
            for src, dst in snap.edges.get(rel, []):
                if src == dst:
                    continue
                self._links[src, dst].add((rel, True))
                self._links[dst, src].add((rel, False))
                self._adjacent[src].add((rel, dst, True))
                self._adjacent[dst].add((rel, src, False))
        names = {Label.BRAND: {b: b for b in snap.brands}, Label.CATEGORY: dict(snap.categories)}
        # product -> (relation, id) of a node it shares -> (that node, its size): its brand, its
        # categories, the products it is linked to (a neighbour both are linked to by the same
        # relation); keyed by tuples, which hash much faster than the pydantic nodes
        self._shared: dict[str, dict[tuple[str, str], tuple[Node, int]]] = defaultdict(dict)
        members: dict[tuple[str, str], set[str]] = defaultdict(set)
        for rel in (Rel.MADE_BY, Rel.IN_CATEGORY):
            for src, dst in snap.edges.get(rel, []):
                members[rel, dst].add(src)
        for rel in PRODUCT_RELATIONS:
            for src, dst in snap.edges.get(rel, []):
                members[rel, dst].add(src)
                members[rel, src].add(dst)
        for row in snap.interactions:  # a shopper's basket: every product they had
            members[Rel.INTERACTED, row.user].add(row.product)
        for (rel, node_id), products in members.items():
            label = _VIA_LABEL.get(rel, Label.PRODUCT)
            name = names[label].get(node_id) if label in names else None
            via = Node(label=label, id=node_id, name=name)
            for pid in products:
                self._shared[pid][rel, node_id] = via, len(products)
        self._users = set(snap.users)
        self._product_count = len(snap.products)
        self._items: dict[str, dict[str, float]] = defaultdict(dict)  # user -> product -> ts
        for row in snap.interactions:
            ts = row.ts if row.ts is not None else 0.0
            items = self._items[row.user]
            items[row.product] = max(items.get(row.product, ts), ts)

    def product_count(self) -> int:
        return self._product_count

    def links(self, ids: list[str]) -> dict[str, list[Link]]:
        return {pid: sorted(self._adjacent.get(pid, ())) for pid in ids}

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
                    PathRow(result, anchor, key[0], True, via, degree)
                    for key, (via, degree) in shared.items()
                    if key in theirs and via.id not in (anchor, result)
                ]
        return rows


_VIA_LABEL = {Rel.MADE_BY: Label.BRAND, Rel.IN_CATEGORY: Label.CATEGORY, Rel.INTERACTED: Label.USER}


def kg_view(store: Store) -> KGView:
    """The view matching the store's backend."""
    return Neo4jView(store) if isinstance(store, Neo4jStore) else SnapshotView(store)


def explain_cypher(a: str, b: str) -> str:
    """A Cypher query, with the two ids filled in, that returns the graph paths between products
    `a` and `b` (direct links, a product both are linked to, shared brand, shared category, a
    shopper who had both) — to paste into Neo4j Browser."""
    qa, qb = _cypher_string(a), _cypher_string(b)
    ends = f"(a:{Label.PRODUCT} {{id: {qa}}}), (b:{Label.PRODUCT} {{id: {qb}}})"
    shapes = [
        f"(a)-[:{_PRODUCT_RELS}]-(b)",
        f"(a)-[r1:{_PRODUCT_RELS}]-(:{Label.PRODUCT})-[r2]-(b) WHERE type(r2) = type(r1)",
        f"(a)-[:{Rel.MADE_BY}]->(:{Label.BRAND})<-[:{Rel.MADE_BY}]-(b)",
        f"(a)-[:{Rel.IN_CATEGORY}]->(:{Label.CATEGORY})<-[:{Rel.IN_CATEGORY}]-(b)",
        f"(a)<-[:{Rel.INTERACTED}]-(:{Label.USER})-[:{Rel.INTERACTED}]->(b)",
    ]
    return "\nUNION\n".join(f"MATCH {ends}\nMATCH p = {shape}\nRETURN p" for shape in shapes)


def _cypher_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
