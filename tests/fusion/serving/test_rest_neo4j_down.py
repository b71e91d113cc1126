"""The REST service over a Neo4j server that stops and comes back: a dedicated server of its
own (not the shared test instance), really stopped mid-test — 503 with a short message while it
is down, liveness still 200, answers again once it is back; a write by another client makes
`/health` stale until a reload."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient

from fusion.serving.recommender import Recommender
from fusion.serving.rest import create_app
from fusion.serving.service import Service
from kg import server
from kg.catalogue import Catalogue
from kg.server_conf import USER, ServerConfig, read_password
from kg.stores import Neo4jStore
from tests.fusion.serving.test_recommender import TinyModel, beauty_slice, write_slice


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerConfig]:
    home = tmp_path_factory.mktemp("down") / "neo4j"
    config = ServerConfig(home, _free_port(), _free_port(), heap="512m", pagecache="64m")
    try:
        server.start(config, timeout=600)
        yield config
    finally:
        server.stop(config)


def _store(config: ServerConfig) -> Neo4jStore:
    return Neo4jStore(config.uri, USER, read_password(config) or "")


def _recommender(config: ServerConfig) -> Recommender:
    return Recommender(TinyModel(beauty_slice()), _store(config), name="tiny")


def test_a_stopped_neo4j_gives_503_and_health_says_so(own_server: ServerConfig):
    with _store(own_server) as store:
        write_slice(store)
    service = Service(_recommender(own_server), loader=lambda: _recommender(own_server))
    model = service.rec.model
    user, pid = model.user_ids[0], model.product_ids[5]
    with TestClient(create_app(service, close_at_shutdown=True)) as http:
        assert http.get(f"/recommend/{user}").status_code == 200
        assert http.get(f"/related/{pid}").status_code == 200
        assert http.get("/health").json()["status"] == "ok"

        # Another client writes (as `kgrec update` does): the answers are now stale.
        with _store(own_server) as other:
            twin = other.get_products([pid])[pid]
            other.write(Catalogue(products={"NEW-1": replace(twin, id="NEW-1")}))
        stale = http.get("/health").json()
        assert stale["status"] == "stale" and stale["store_changed"] is True
        reloaded = http.post("/admin/reload")
        assert reloaded.status_code == 200 and reloaded.json()["status"] == "ok"
        assert http.get("/related/NEW-1", params={"k": 3}).status_code == 200

        server.stop(own_server)
        for path in (f"/recommend/{user}", f"/related/{pid}"):  # explanations come from Neo4j
            down = http.get(path)
            assert down.status_code == 503, (path, down.text)
            assert down.json()["detail"].startswith("graph store unavailable")
            assert "Traceback" not in down.text and down.headers["Retry-After"]
        health = http.get("/health")
        assert health.status_code == 503
        assert health.json()["status"] == "store unavailable"
        assert health.json()["store_reachable"] is False
        assert http.get("/health/live").status_code == 200
        # What needs no store still answers.
        assert http.get(f"/related/{pid}", params={"explain": False}).status_code == 200
        failed = http.post("/admin/reload")  # the old model keeps answering
        assert failed.status_code == 503 and service.rec.product_ids
        scrape = http.get("/metrics").text
        assert "kgrec_store_reachable 0.0" in scrape
        assert 'kgrec_errors_total{endpoint="/recommend/{user_id:path}"} 1.0' in scrape

        server.start(own_server, timeout=600)
        assert http.get(f"/recommend/{user}").status_code == 200
        assert http.get("/health").json()["status"] == "ok"
