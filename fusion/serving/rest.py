"""REST service (`kgrec serve`): the query API over HTTP, OpenAPI docs at /docs.

Every server process loads the model once; `--workers N` starts N processes. Endpoints are
`async def`: a related-items answer from memory is about a millisecond of CPU, so it runs on the
event loop instead of paying the three thread-pool round trips (dependency, endpoint, response
validation) FastAPI makes for plain `def`. Work that waits on I/O or takes long — anything read
from a Neo4j store, any text to encode (search, products added after training) — goes to the
thread pool, where it blocks no other request. Text encoding is capped (`ENCODE_SLOTS` at a
time): beyond that a request waits `ENCODE_WAIT_SECONDS`, then gets 503 with Retry-After.

A store that does not answer gives 503 with a short message; `/health/live` says the process
runs, `/health` (= `/health/ready`) whether the store answers and whether answers are stale.
With an API key every endpoint but `/health/live` needs it (`X-API-Key` or `Authorization:
Bearer`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import secrets
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, nullcontext
from functools import partial
from pathlib import Path
from typing import Annotated

import torch
import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from fusion.model.checkpoint import read_meta
from fusion.serving.ann import load_or_build
from fusion.serving.metrics import METRICS_PATH, Metrics, MetricsMiddleware, json_access_log
from fusion.serving.recommender import Filters, Recommender, Result, UnknownIdError
from fusion.serving.service import STORE_DOWN, Health, Service
from fusion.serving.web import mount_web
from kg.errors import InvalidArgumentError

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
# Worker processes are spawned from an import string: the model to load comes this way.
CHECKPOINT_ENV, STORE_ENV = "KGREC_SERVE_CHECKPOINT", "KGREC_SERVE_STORE"
API_KEY_ENV = "KGREC_API_KEY"
ACCESS_LOG_ENV = "KGREC_SERVE_ACCESS_LOG"
ACCESS_LOG_FORMATS = ("text", "json", "off")
WORKER_PING_SECONDS = 60
# The neighbour table costs O(N²) at start (3 s on one core for Beauty's 12k products, ~1 min at
# 50k); beyond this an ANN index answers (fusion.serving.ann), loaded from next to the checkpoint.
NEIGHBOUR_TABLE_MAX_PRODUCTS = 50_000
# Text encodings at once per process: each holds a transformer's activations, and more than the
# cores only queue inside torch (16 uncapped clients: p99 10.5 s, +234 MB never given back).
ENCODE_SLOTS = max(1, min(4, os.cpu_count() or 1))
ENCODE_WAIT_SECONDS = 2.0
RETRY_AFTER_SECONDS = 2
LIVENESS_PATH = "/health/live"

K = Annotated[int, Query(ge=1, le=100, description="Number of answers.")]
Explain = Annotated[bool, Query(description="Attach knowledge-graph paths to each answer.")]
Diversity = Annotated[
    float,
    Query(ge=0, le=1, description="Trade relevance for varied categories (0: none)."),
]
Weights = Annotated[
    str | None,
    Query(
        description="Multi-objective models: weight per objective, e.g. purchase=1,revenue=0.3 "
        "(default: the training weights).",
    ),
]


class Answer(BaseModel):
    query: str
    results: list[Result]


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


class ApiKeyMiddleware:
    """401 for any request but liveness without the key (constant-time comparison)."""

    def __init__(self, app: ASGIApp, key: str) -> None:
        self.app, self.key = app, key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] != LIVENESS_PATH:
            headers = dict(scope["headers"])
            given = headers.get(b"x-api-key")
            scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
            if given is None and scheme.lower() == b"bearer":
                given = token.strip()
            if given is None or not secrets.compare_digest(given, self.key):
                refused = JSONResponse(
                    status_code=401,
                    content={"detail": "missing or wrong API key (send X-API-Key)"},
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await refused(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(
    rec: Recommender | Service,
    close_at_shutdown: bool = False,
    api_key: str | None = None,
    encode_slots: int = ENCODE_SLOTS,
    encode_wait: float = ENCODE_WAIT_SECONDS,
    json_access: bool = False,
) -> FastAPI:
    """The REST app answering from `rec` (a Service can reload; closed when the server stops if
    `close_at_shutdown`); `api_key` = required on every endpoint but liveness; at most
    `encode_slots` text encodings at once, a request waiting `encode_wait` s for one;
    `json_access` = a JSON access-log line per request on stderr."""
    service = rec if isinstance(rec, Service) else Service(rec)
    encoding = asyncio.Semaphore(encode_slots)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        hup = _reload_on_sighup(service)
        yield
        hup()
        if close_at_shutdown:
            service.close()

    app = FastAPI(
        title="kgrec",
        description="Related products, recommendations and search over a product knowledge "
        "graph, each answer explained by graph paths.",
        lifespan=lifespan,
    )
    if api_key:
        app.add_middleware(ApiKeyMiddleware, key=api_key)
    metrics = Metrics()
    access = json_access_log() if json_access else None
    app.add_middleware(MetricsMiddleware, metrics=metrics, access_log=access)  # counts 401s too

    @app.exception_handler(UnknownIdError)
    async def _unknown(_: Request, exc: UnknownIdError) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(exc)})

    @app.exception_handler(InvalidArgumentError)
    async def _invalid(_: Request, exc: InvalidArgumentError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    for error in STORE_DOWN:

        @app.exception_handler(error)
        async def _store_down(request: Request, exc: Exception) -> JSONResponse:
            log.warning("%s %s: graph store unavailable: %s", request.method, request.url, exc)
            return _unavailable(f"graph store unavailable ({type(exc).__name__}); retry later")

    @asynccontextmanager
    async def encoder_slot() -> AsyncIterator[None]:
        try:
            # Cancelling acquire() on timeout gives up the wait cleanly (wait_for could lose a
            # slot granted at the moment it timed out).
            async with asyncio.timeout(encode_wait):
                await encoding.acquire()
        except TimeoutError:
            raise HTTPException(
                503,
                detail=f"busy: {encode_slots} text encodings already running; retry shortly",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            ) from None
        try:
            yield
        finally:
            encoding.release()

    @app.get(LIVENESS_PATH)
    async def live() -> dict[str, str]:
        """The process answers (no store check: restart it only if this fails)."""
        return {"status": "alive"}

    @app.get("/health", response_model=Health, responses={503: {"model": Health}})
    @app.get("/health/ready", response_model=Health, responses={503: {"model": Health}})
    async def ready() -> Response:
        """Ready to answer: the store answers. Says whether answers are stale: the store or the
        checkpoint changed since the model was loaded (reload with POST /admin/reload)."""
        health = await run_in_threadpool(service.health)
        code = 200 if health.store_reachable else 503
        return Response(health.model_dump_json(), code, media_type="application/json")

    @app.get(METRICS_PATH, response_class=Response)
    async def prometheus() -> Response:
        """Prometheus metrics: requests, latency and errors per endpoint; model id and age,
        store reachable, answers stale."""
        health = await run_in_threadpool(service.health)
        return Response(metrics.render(health), media_type=metrics.content_type)

    @app.post("/admin/reload", response_model=Health)
    async def reload() -> Response:
        """Load the checkpoint and the store's graph afresh; the old model answers meanwhile."""
        if service.loader is None:
            raise HTTPException(409, detail="this server cannot reload: no checkpoint to load")
        try:
            await service.reload()
        except (ValueError, OSError, LookupError) as exc:  # a broken or missing checkpoint
            raise HTTPException(
                500, detail=f"reload failed, still answering from the previous model: {exc}"
            ) from None
        return await ready()

    @app.get(
        "/related/{product_id:path}",
        response_model=Answer,
        responses={404: {"description": "Unknown product"}, 503: {"description": "Busy"}},
    )
    async def related(
        product_id: str,
        f: FilterParams,
        k: K = 10,
        explain: Explain = True,
        diversity: Diversity = 0.0,
    ) -> Response:
        """Products related to `product_id` (which may contain `/`)."""
        async with service.using() as rec:
            known = rec.knows(product_id)
            inline = known and (rec.store_in_memory or not explain)
            async with nullcontext() if known else encoder_slot():
                return await _answer(inline, rec.related, product_id, k, f, explain, diversity)

    @app.get(
        "/recommend/{user_id:path}",
        response_model=Answer,
        responses={404: {"description": "Unknown user"}},
    )
    async def recommend(
        user_id: str,
        f: FilterParams,
        k: K = 10,
        explain: Explain = True,
        diversity: Diversity = 0.0,
        weights: Weights = None,
    ) -> Response:
        """Products for `user_id` (which may contain `/`), leaving out those the user has; a
        multi-objective model ranks by the weighted objectives and returns each one's score
        (422 for an unknown objective, a non-number or a negative weight)."""
        async with service.using() as rec:
            recommend = partial(rec.recommend, weights=weights)
            return await _answer(rec.store_in_memory, recommend, user_id, k, f, explain, diversity)

    @app.get("/search", response_model=Answer, responses={503: {"description": "Busy"}})
    async def search(
        q: Annotated[str, Query(min_length=1, pattern=r"\S", description="Query text.")],
        f: FilterParams,
        k: K = 10,
        explain: Explain = True,
    ) -> Response:
        """Products matching a free-text query."""
        async with service.using() as rec, encoder_slot():
            return await _answer(False, rec.search, q, k, f, explain)

    mount_web(app, service)
    return app


def _unavailable(detail: str) -> JSONResponse:
    return JSONResponse(
        status_code=503,
        content={"detail": detail},
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _reload_on_sighup(service: Service) -> Callable[[], None]:
    """SIGHUP reloads the model (in the main thread of a server process; a `--workers`
    supervisor restarts its workers on SIGHUP instead). Returns the undo."""
    if service.loader is None or threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()

    def reload() -> None:
        task = loop.create_task(service.reload())
        task.add_done_callback(_log_failed_reload)

    loop.add_signal_handler(signal.SIGHUP, reload)
    return lambda: loop.remove_signal_handler(signal.SIGHUP)


def _log_failed_reload(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error(
            "reload on SIGHUP failed, still answering from the previous model: %s", task.exception()
        )


def exposure_warning(host: str, api_key: str | None) -> str | None:
    """A warning when `host` is reachable from other machines; None for loopback."""
    if host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:  # a host name: assume it resolves to a reachable interface
        pass
    if api_key:
        return (
            f"kgrec serve listens on {host}: reachable from other machines; every endpoint but "
            f"{LIVENESS_PATH} requires the API key, sent in clear text unless a TLS proxy is "
            "in front"
        )
    return (
        f"kgrec serve listens on {host} WITHOUT AUTHENTICATION: anyone who can reach this "
        f"machine can query it; set --api-key (or ${API_KEY_ENV}) or bind 127.0.0.1"
    )


def serve(
    checkpoint: str | Path,
    store: str | None = None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    workers: int = 1,
    access_log: str = "text",
    api_key: str | None = None,
) -> None:
    """Serve the model in `checkpoint` over `store` until interrupted, from `workers` processes
    that each load it once; `access_log` = a line per request, "text" (uvicorn's), "json" (one
    object per line) or "off" (about a tenth of the CPU an answer from memory costs);
    `api_key` = required on every endpoint but liveness."""
    if access_log not in ACCESS_LOG_FORMATS:
        raise InvalidArgumentError(
            f"--access-log {access_log!r}: choose one of {', '.join(ACCESS_LOG_FORMATS)}"
        )
    warning = exposure_warning(host, api_key)
    if warning:
        log.warning(warning)
    uvicorn_access = access_log == "text"
    if workers == 1:
        service = Service(load(checkpoint, store), lambda: load(checkpoint, store), checkpoint)
        try:
            app = create_app(service, api_key=api_key, json_access=access_log == "json")
            uvicorn.run(app, host=host, port=port, access_log=uvicorn_access)
        finally:
            service.close()
        return
    read_meta(checkpoint)  # a missing checkpoint fails here once, not in every worker
    os.environ.update(
        {CHECKPOINT_ENV: str(checkpoint), STORE_ENV: store or "", ACCESS_LOG_ENV: access_log}
    )
    if api_key:
        os.environ[API_KEY_ENV] = api_key
    uvicorn.run(
        f"{__name__}:worker_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=uvicorn_access,
        # A worker answers the supervisor's pings from a thread that needs the GIL, which
        # loading the model holds for long stretches: the default 5 s kills slow starters.
        timeout_worker_healthcheck=WORKER_PING_SECONDS,
    )


def worker_app() -> FastAPI:
    """The app of one `--workers` process: the model named by the environment, loaded once."""
    checkpoint, store = os.environ[CHECKPOINT_ENV], os.environ.get(STORE_ENV) or None
    service = Service(load(checkpoint, store), lambda: load(checkpoint, store), checkpoint)
    return create_app(
        service,
        close_at_shutdown=True,
        api_key=os.environ.get(API_KEY_ENV),
        json_access=os.environ.get(ACCESS_LOG_ENV) == "json",
    )


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
