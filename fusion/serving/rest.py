"""REST service (`kgrec serve`): the query API over HTTP, OpenAPI docs at /docs.

Every server process loads the model once; `--workers N` starts N processes. Endpoints are
`async def`: a related-items answer from memory is about a millisecond of CPU, so it runs on the
event loop instead of paying the three thread-pool round trips (dependency, endpoint, response
validation) FastAPI makes for plain `def`. Work that waits on I/O or takes long — anything read
from a Neo4j store, any text to encode (search, products added after training) — goes to the
thread pool, where it blocks no other request.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import torch
import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError

from fusion.model.checkpoint import read_meta
from fusion.serving.ann import load_or_build
from fusion.serving.recommender import Filters, Recommender, Result, UnknownIdError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
# Worker processes are spawned from an import string: the model to load comes this way.
CHECKPOINT_ENV, STORE_ENV = "KGREC_SERVE_CHECKPOINT", "KGREC_SERVE_STORE"
WORKER_PING_SECONDS = 60
# The neighbour table costs O(N²) at start (3 s on one core for Beauty's 12k products, ~1 min at
# 50k); beyond this an ANN index answers (fusion.serving.ann), loaded from next to the checkpoint.
NEIGHBOUR_TABLE_MAX_PRODUCTS = 50_000

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


async def filters(
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


async def _answer(inline: bool, query: Callable[..., list[Result]], *args: object) -> Response:
    """`query(*args)` (on the event loop if `inline`, else in the thread pool) as an `Answer` to
    `args[0]`. Serialised here: given the model, FastAPI would dump it to dicts and validate them
    again before serialising — most of an explained answer's CPU time."""
    results = query(*args) if inline else await run_in_threadpool(query, *args)
    body = Answer(query=str(args[0]), results=results).model_dump_json()
    return Response(body, media_type="application/json")


def create_app(rec: Recommender, close_at_shutdown: bool = False) -> FastAPI:
    """The REST app answering from `rec` (closed when the server stops if `close_at_shutdown`)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if close_at_shutdown:
            rec.close()

    app = FastAPI(
        title="kgrec",
        description="Related products, recommendations and search over a product knowledge "
        "graph, each answer explained by graph paths.",
        lifespan=lifespan,
    )

    @app.exception_handler(UnknownIdError)
    async def _unknown(_: Request, exc: UnknownIdError) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(exc)})

    @app.get("/health")
    async def health() -> Health:
        return Health(
            status="ok", model=rec.name, products=len(rec.product_ids), store=rec.store.uri
        )

    @app.get(
        "/related/{product_id}",
        response_model=Answer,
        responses={404: {"description": "Unknown product"}},
    )
    async def related(
        product_id: str, f: FilterParams, k: K = 10, explain: Explain = True
    ) -> Response:
        """Products related to `product_id`."""
        inline = rec.knows(product_id) and (rec.store_in_memory or not explain)
        return await _answer(inline, rec.related, product_id, k, f, explain)

    @app.get(
        "/recommend/{user_id}",
        response_model=Answer,
        responses={404: {"description": "Unknown user"}},
    )
    async def recommend(
        user_id: str, f: FilterParams, k: K = 10, explain: Explain = True
    ) -> Response:
        """Products for `user_id`, leaving out those the user already has."""
        return await _answer(rec.store_in_memory, rec.recommend, user_id, k, f, explain)

    @app.get("/search", response_model=Answer)
    async def search(
        q: Annotated[str, Query(min_length=1, pattern=r"\S", description="Query text.")],
        f: FilterParams,
        k: K = 10,
        explain: Explain = True,
    ) -> Response:
        """Products matching a free-text query."""
        return await _answer(False, rec.search, q, k, f, explain)

    return app


def serve(
    checkpoint: str | Path,
    store: str | None = None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    workers: int = 1,
    access_log: bool = True,
) -> None:
    """Serve the model in `checkpoint` over `store` until interrupted, from `workers` processes
    that each load it once; `access_log` = a log line per request (about a tenth of the CPU
    an answer from memory costs)."""
    if workers == 1:
        with load(checkpoint, store) as rec:
            uvicorn.run(create_app(rec), host=host, port=port, access_log=access_log)
        return
    read_meta(checkpoint)  # a missing checkpoint fails here once, not in every worker
    os.environ.update({CHECKPOINT_ENV: str(checkpoint), STORE_ENV: store or ""})
    uvicorn.run(
        f"{__name__}:worker_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=access_log,
        # A worker answers the supervisor's pings from a thread that needs the GIL, which
        # loading the model holds for long stretches: the default 5 s kills slow starters.
        timeout_worker_healthcheck=WORKER_PING_SECONDS,
    )


def worker_app() -> FastAPI:
    """The app of one `--workers` process: the model named by the environment, loaded once."""
    rec = load(os.environ[CHECKPOINT_ENV], os.environ.get(STORE_ENV) or None)
    return create_app(rec, close_at_shutdown=True)


def load(checkpoint: str | Path, store: str | None) -> Recommender:
    """The recommender as a server process runs it: related items of known products precomputed
    (small catalogues) or answered through an ANN index (large ones), torch on one thread."""
    rec = Recommender.load(checkpoint, store)
    # After loading, which torch's default threads speed up. Concurrency comes from requests
    # and workers; intra-op threads for one small matmul only add tail latency.
    torch.set_num_threads(1)
    if len(rec.product_ids) <= NEIGHBOUR_TABLE_MAX_PRODUCTS:
        rec.precompute_neighbours()
    else:  # built once, then loaded from next to the checkpoint
        rec.use_ann(load_or_build(checkpoint, rec.vectors, rec.product_ids))
    return rec
