"""`kgrec related | recommend | search | publish | serve`: answers from a trained model."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from fusion.cli.common import DEFAULT_CHECKPOINT, Checkpoint, StoreUri, user_errors
from fusion.config import parse_weights

if TYPE_CHECKING:  # torch/fastapi load only when a command runs
    from fusion.serving.recommender import Filters, Recommender, Result


K = Annotated[int, typer.Option("-k", "--k", min=1, max=100, help="Number of answers.")]
Brand = Annotated[str | None, typer.Option(help="Only this brand (case-insensitive).")]
Category = Annotated[str | None, typer.Option(help="Only this category (id, path or name).")]
MinPrice = Annotated[float | None, typer.Option(min=0, help="Lowest price.")]
MaxPrice = Annotated[float | None, typer.Option(min=0, help="Highest price.")]
InCatalogue = Annotated[bool, typer.Option(help="Leave out referenced-only stub products.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Explain = Annotated[bool, typer.Option(help="Explain each answer with knowledge-graph paths.")]
Weights = Annotated[
    str | None,
    typer.Option(
        help="Multi-objective models (--task rank): weight per objective, e.g. "
        "purchase=1,revenue=0.3,click=0.1 (default: the training weights)."
    ),
]
Diversity = Annotated[
    float,
    typer.Option(
        min=0.0, max=1.0, help="Trade relevance for varied categories (0: none, 1: most)."
    ),
]


def related(
    product_id: Annotated[str, typer.Argument(help="Product id.")],
    k: K = 10,
    brand: Brand = None,
    category: Category = None,
    min_price: MinPrice = None,
    max_price: MaxPrice = None,
    in_catalogue: InCatalogue = False,
    json: Json = False,
    explain: Explain = True,
    diversity: Diversity = 0.0,
    checkpoint: Checkpoint = DEFAULT_CHECKPOINT,
    store: StoreUri = None,
) -> None:
    """Products related to PRODUCT_ID (also works for products added after training)."""
    with _answering(checkpoint, store) as rec:
        f = _filters(brand, category, min_price, max_price, in_catalogue)
        show(product_id, rec.related(product_id, k, f, explain, diversity), json)


def recommend(
    user_id: Annotated[str, typer.Argument(help="User id.")],
    k: K = 10,
    brand: Brand = None,
    category: Category = None,
    min_price: MinPrice = None,
    max_price: MaxPrice = None,
    in_catalogue: InCatalogue = False,
    json: Json = False,
    explain: Explain = True,
    diversity: Diversity = 0.0,
    weights: Weights = None,
    checkpoint: Checkpoint = DEFAULT_CHECKPOINT,
    store: StoreUri = None,
) -> None:
    """Products for USER_ID, leaving out those the user already has; a multi-objective model
    ranks by --weights and shows each objective's score."""
    with user_errors():
        chosen = None if weights is None else parse_weights(weights, "--weights")
    with _answering(checkpoint, store) as rec:
        f = _filters(brand, category, min_price, max_price, in_catalogue)
        show(user_id, rec.recommend(user_id, k, f, explain, diversity, chosen), json)


def search(
    text: Annotated[str, typer.Argument(help="Query text.")],
    k: K = 10,
    brand: Brand = None,
    category: Category = None,
    min_price: MinPrice = None,
    max_price: MaxPrice = None,
    in_catalogue: InCatalogue = False,
    json: Json = False,
    explain: Explain = True,
    checkpoint: Checkpoint = DEFAULT_CHECKPOINT,
    store: StoreUri = None,
) -> None:
    """Products matching TEXT."""
    with _answering(checkpoint, store) as rec:
        f = _filters(brand, category, min_price, max_price, in_catalogue)
        show(text, rec.search(text, k, f, explain), json)


def publish(
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="RELATED_TO per product.")] = 10,
    model: Annotated[
        str | None, typer.Option(help="Model name on RELATED_TO (default: checkpoint dir name).")
    ] = None,
    checkpoint: Checkpoint = DEFAULT_CHECKPOINT,
    store: StoreUri = None,
) -> None:
    """Write product vectors (+ vector index) and top-K RELATED_TO into Neo4j; above 50k
    products RELATED_TO comes from the ANN index, built and saved next to the checkpoint."""
    from fusion.serving.ann import load_or_build
    from fusion.serving.publish import publish as write_back
    from fusion.serving.rest import NEIGHBOUR_TABLE_MAX_PRODUCTS

    with _answering(checkpoint, store) as rec:
        rec.name = model or rec.name
        if len(rec.product_ids) > NEIGHBOUR_TABLE_MAX_PRODUCTS:  # the index `serve` loads too
            rec.use_ann(load_or_build(checkpoint, rec.vectors, rec.product_ids))
        report = write_back(rec, k)
        typer.echo(
            f"model {report.model}: {report.vectors} vectors (d={report.dimensions}), "
            f"{report.related} RELATED_TO written"
        )


def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, help="Server processes; each loads the model once.")
    ] = 1,
    access_log: Annotated[
        str,
        typer.Option(
            help="A line per request on stderr: text, json (one object per line, for log "
            "shippers) or off."
        ),
    ] = "text",
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="KGREC_API_KEY",
            help="Require this key (X-API-Key header) on every endpoint but /health/live.",
        ),
    ] = None,
    checkpoint: Checkpoint = DEFAULT_CHECKPOINT,
    store: StoreUri = None,
) -> None:
    """Serve related/recommend/search over HTTP (OpenAPI docs at /docs); POST /admin/reload
    or SIGHUP reloads the model and the graph."""
    from fusion.serving.rest import serve as run

    with user_errors():
        run(
            checkpoint,
            store,
            host=host,
            port=port,
            workers=workers,
            access_log=access_log,
            api_key=api_key,
        )


COMMANDS: dict[str, Callable[..., None]] = {
    "related": related,
    "recommend": recommend,
    "search": search,
    "publish": publish,
    "serve": serve,
}


def register(app: typer.Typer) -> None:
    for name, command in COMMANDS.items():
        app.command(name)(command)


@contextmanager
def _answering(checkpoint: Path, store: str | None) -> Iterator[Recommender]:
    """The loaded recommender; expected failures become one message and exit code 1."""
    from fusion.serving.recommender import Recommender

    with user_errors():
        rec = Recommender.load(checkpoint, store)
        try:
            yield rec
        finally:
            rec.close()


def _filters(
    brand: str | None,
    category: str | None,
    min_price: float | None,
    max_price: float | None,
    in_catalogue: bool,
) -> Filters:
    from fusion.serving.recommender import Filters

    return Filters(
        brand=brand,
        category=category,
        min_price=min_price,
        max_price=max_price,
        in_catalogue=in_catalogue,
    )


def show(query: str, results: list[Result], as_json: bool) -> None:
    if as_json:
        from fusion.serving.rest import Answer

        typer.echo(Answer(query=query, results=results).model_dump_json(indent=2))
        return
    table = Table(title=f"{len(results)} answers for {query}")
    objectives = list(results[0].objectives or {}) if results else []
    for column in ("#", "product", "title", "score", *objectives, "why"):
        table.add_column(column, overflow="fold")
    for n, r in enumerate(results, 1):
        why = "\n".join(str(p) for p in r.explanations)
        each = [f"{(r.objectives or {})[name]:.4g}" for name in objectives]
        table.add_row(str(n), r.product_id, r.title, f"{r.score:.3f}", *each, why)
    Console().print(table)
