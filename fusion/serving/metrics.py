"""`/metrics` in Prometheus text format (prometheus-client): requests, latency and errors per
endpoint, and at each scrape the model (id, age, products), whether the store answers and
whether answers are stale. One registry per app; with `--workers N` each process counts its
own requests (a scrape reaches one worker). The same timing feeds JSON access-log lines.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import UTC, datetime

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fusion.serving.service import Health

METRICS_PATH = "/metrics"
# From an in-memory lookup (~0.1 ms) to a slow text encoding under load (seconds).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    """The app's registry: request instruments, and a collector asking `health` at scrape."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "kgrec_requests",
            "HTTP requests by endpoint (route template), method and status.",
            ("endpoint", "method", "status"),
            registry=self.registry,
        )
        self.errors = Counter(
            "kgrec_errors",
            "Responses with a 5xx status, by endpoint.",
            ("endpoint",),
            registry=self.registry,
        )
        self.latency = Histogram(
            "kgrec_request_seconds",
            "Time from request to the response's start, by endpoint.",
            ("endpoint",),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._state = _StateCollector()
        self.registry.register(self._state)

    def render(self, health: Health) -> bytes:
        """The exposition text, with the service state as `health` reports it now."""
        self._state.health = health
        try:
            return generate_latest(self.registry)
        finally:
            self._state.health = None

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, method, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)
        if status >= 500:
            self.errors.labels(endpoint).inc()


class _StateCollector(Collector):
    """Gauges read from the `Health` of the scrape in progress."""

    health: Health | None = None

    def collect(self) -> list[Metric]:
        health = self.health
        if health is None:  # registration calls collect() once to learn the names
            return []
        info = InfoMetricFamily("kgrec_model", "The model answering.")
        info.add_metric([], {"model": health.model, "store": health.store})
        age = health.model_age_seconds
        gauges = [
            ("kgrec_model_age_seconds", "Seconds since the checkpoint was saved.", age),
            ("kgrec_model_products", "Products the model answers for.", health.products),
            ("kgrec_store_reachable", "1 if the graph store answers.", health.store_reachable),
            ("kgrec_answers_stale", "1 if store or checkpoint changed since load.", health.stale),
            ("kgrec_loaded_timestamp_seconds", "When the model was loaded (unix time).",
             health.loaded_at.timestamp()),
        ]  # fmt: skip
        families: list[Metric] = [info]
        for name, doc, value in gauges:
            if value is not None:
                families.append(GaugeMetricFamily(name, doc, value=float(value)))
        return families


ACCESS_LOGGER = "kgrec.access"


def json_access_log() -> logging.Logger:
    """The access logger writing one JSON object per line to stderr, nothing else on the line
    (uvicorn's own access lines are turned off when this is used)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # the root handler would prefix it and break the JSON
    return logger


class MetricsMiddleware:
    """Times every request but the scrape itself and counts it by route template (bounded
    label values: the template, never the raw path); with `access_log`, every request also
    becomes a JSON line there (raw path without the query string, which may carry ids)."""

    def __init__(
        self, app: ASGIApp, metrics: Metrics, access_log: logging.Logger | None = None
    ) -> None:
        self.app, self.metrics, self.access_log = app, metrics, access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # unless a response starts

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", "unmatched")
            seconds = time.perf_counter() - start
            if scope["path"] != METRICS_PATH:
                self.metrics.observe(endpoint, scope["method"], status, seconds)
            if self.access_log is not None:
                self.access_log.info(_access_line(scope, endpoint, status, seconds))


def _access_line(scope: Scope, endpoint: str, status: int, seconds: float) -> str:
    client = scope.get("client")
    return json.dumps(
        {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "method": scope["method"],
            "path": scope["path"],
            "endpoint": endpoint,
            "status": status,
            "ms": round(seconds * 1000, 3),
            "client": client[0] if client else None,
        }
    )
