"""`kgrec explain A B`: why two products go together — the knowledge-graph paths between them,
most specific first, and the Cypher that finds them (to paste into Neo4j Browser)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from fusion.cli.common import AsJson, StoreUri, user_errors


def explain(
    product_a: Annotated[str, typer.Argument(help="Product id.")],
    product_b: Annotated[str, typer.Argument(help="Another product id.")],
    store: StoreUri = None,
    as_json: AsJson = False,
) -> None:
    """Up to 3 paths between two products (direct links, a shared brand, category or shopper —
    smaller first —, else a chain of links; where the graph has none, the words their texts
    share or the nearest category above both) and the Cypher query."""
    from kg.errors import NotFoundError
    from kg.paths import explain_cypher, kg_view
    from kg.stores import open_store

    with user_errors(), open_store(store) as graph:
        products = graph.get_products([product_a, product_b])
        missing = [pid for pid in (product_a, product_b) if pid not in products]
        if missing:
            raise NotFoundError(f"unknown product {missing[0]!r} in {graph.uri}")
        paths = kg_view(graph).explain([product_a], [product_b], products=products)[product_b]
    cypher = explain_cypher(product_a, product_b)
    if as_json:
        typer.echo(json.dumps({"paths": [p.model_dump() for p in paths], "cypher": cypher}))
        return
    for path in paths:
        typer.echo(str(path))
    if not paths:
        typer.echo("no path in the graph and no shared words")
    typer.echo(f"\n// Cypher (Neo4j Browser):\n{cypher}")
