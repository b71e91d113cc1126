"""REST service (`kgrec serve`): the query API over HTTP, OpenAPI docs at /docs.

The app is built around one already-loaded `Recommender`, so the model is loaded once per
process. Endpoints are plain `def`: FastAPI runs them in its thread pool, and the work (a matmul
and, with explanations, one store query) releases the GIL or waits on I/O.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from fusion.query import Filters, Recommender, Result, UnknownIdError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000

K = Annotated[int, Query(ge=1, le=100, description="Number of answers.")]
Explain = Annotated[bool, Query(description="Attach knowledge-graph paths to each answer.")]


class Answer(BaseModel):
    query: str
    results: list[Result]


class Health(BaseModel):
    status: str
    model: str
    products: int
    store: str


def filters(
    brand: Annotated[str | None, Query(description="Brand id (case-insensitive).")] = None,
    category: Annotated[str | None, Query(description="Category id, path or name.")] = None,
    min_price: Annotated[float | None, Query(ge=0)] = None,
    max_price: Annotated[float | None, Query(ge=0)] = None,
    in_catalogue: Annotated[bool, Query(description="Leave out referenced-only stubs.")] = False,
) -> Filters:
    try:
        return Filters(
            brand=brand,
            category=category,
            min_price=min_price,
            max_price=max_price,
            in_catalogue=in_catalogue,
        )
    except ValidationError as exc:  # cross-field checks (min > max) are bad parameters too
        raise HTTPException(
            422, detail=exc.errors(include_url=False, include_context=False)
        ) from None


FilterParams = Annotated[Filters, Depends(filters)]


def create_app(rec: Recommender) -> FastAPI:
    """The REST app answering from `rec`."""
    app = FastAPI(
        title="kgrec",
        description="Related products, recommendations and search over a product knowledge "
        "graph, each answer explained by graph paths.",
    )

    @app.exception_handler(UnknownIdError)
    def _unknown(_: Request, exc: UnknownIdError) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(exc)})

    @app.get("/health")
    def health() -> Health:
        return Health(
            status="ok", model=rec.name, products=len(rec.product_ids), store=rec.store.uri
        )

    @app.get("/related/{product_id}", responses={404: {"description": "Unknown product"}})
    def related(product_id: str, f: FilterParams, k: K = 10, explain: Explain = True) -> Answer:
        """Products related to `product_id`."""
        return Answer(query=product_id, results=rec.related(product_id, k, f, explain))

    @app.get("/recommend/{user_id}", responses={404: {"description": "Unknown user"}})
    def recommend(user_id: str, f: FilterParams, k: K = 10, explain: Explain = True) -> Answer:
        """Products for `user_id`, leaving out those the user already has."""
        return Answer(query=user_id, results=rec.recommend(user_id, k, f, explain))

    @app.get("/search")
    def search(
        q: Annotated[str, Query(min_length=1, pattern=r"\S", description="Query text.")],
        f: FilterParams,
        k: K = 10,
        explain: Explain = True,
    ) -> Answer:
        """Products matching a free-text query."""
        return Answer(query=q, results=rec.search(q, k, f, explain))

    return app
