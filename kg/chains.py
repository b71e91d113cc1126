"""Longer graph paths for answers no short one explains: chains of product links from an anchor
to the answer through one product (links of different relations) or two, sized by the busiest
product on the way (the one linked to most others) — smaller is more specific."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

# (relation, the other product, whether the link points from this product to the other)
Link = tuple[str, str, bool]


class Chain(NamedTuple):
    size: int
    products: list[str]  # anchor, one or two products between, result
    hops: list[tuple[str, bool]]  # (relation, forward) between consecutive products


def between(ids: list[str], adjacency: Mapping[str, list[Link]]) -> set[str]:
    """The products linked to any of `ids`: whose own links a chain search needs."""
    return {other for pid in ids for _, other, _ in adjacency.get(pid, ())}


def best_chain(
    anchors: list[str],
    result: str,
    adjacency: Mapping[str, list[Link]],
    limit: float,
    rank: Callable[[str], int],
) -> Chain | None:
    """The most specific chain of two or three links from an anchor to `result` through
    products linked to at most `limit` others; `adjacency` holds the links of the anchors,
    `result` and every product linked to them. Ties: shorter, stronger relations, then ids."""

    def degree(pid: str) -> int:
        return len({other for _, other, _ in adjacency.get(pid, ())})

    into_result = {other: (rel, not fwd) for rel, other, fwd in _strongest(result, adjacency, rank)}
    candidates = []
    for anchor in anchors:
        if anchor == result:
            continue
        for rel, x, fwd in _strongest(anchor, adjacency, rank):
            if x in (anchor, result) or degree(x) > limit:
                continue
            if x in into_result:
                hops = [(rel, fwd), into_result[x]]
                candidates.append(Chain(degree(x), [anchor, x, result], hops))
            for rel2, y, fwd2 in _strongest(x, adjacency, rank):
                if y in (anchor, x, result) or y not in into_result or degree(y) > limit:
                    continue
                hops = [(rel, fwd), (rel2, fwd2), into_result[y]]
                size = max(degree(x), degree(y))
                candidates.append(Chain(size, [anchor, x, y, result], hops))
    if not candidates:
        return None
    return min(candidates, key=lambda c: (c.size, len(c.hops), [rank(h) for h, _ in c.hops], c))


def _strongest(
    pid: str, adjacency: Mapping[str, list[Link]], rank: Callable[[str], int]
) -> list[Link]:
    """One link per neighbour, of the strongest relation (then forward first), in id order."""
    best: dict[str, Link] = {}
    for link in adjacency.get(pid, ()):
        rel, other, fwd = link
        if other not in best or (rank(rel), not fwd) < (rank(best[other][0]), not best[other][2]):
            best[other] = link
    return [best[other] for other in sorted(best)]
