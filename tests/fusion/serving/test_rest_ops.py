"""Running the REST service: stale answers and reloads, ids with `/`, the text-encoding cap,
the API key and the warning for a service reachable from other machines (embedded store; the
Neo4j faults are in test_rest_neo4j_down.py)."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from torch import Tensor

import fusion.serving.rest as serve_module
from fusion.serving.recommender import Recommender
from fusion.serving.rest import create_app, exposure_warning
from fusion.serving.service import Service
from kg.catalogue import Catalogue
from kg.errors import InvalidArgumentError
from kg.schema import Interaction
from kg.stores import EmbeddedStore
from tests.fusion.serving.test_recommender import TinyModel, beauty_slice, write_slice


@pytest.fixture
def graph(tmp_path: Path) -> Path:
    write_slice(EmbeddedStore(tmp_path / "graph"))
    return tmp_path / "graph"


def _recommender(graph: Path) -> Recommender:
    return Recommender(TinyModel(beauty_slice()), EmbeddedStore(graph), name="tiny")


def _copy(store: EmbeddedStore, source: str, new_id: str) -> None:
    """A product written after the model was loaded: a copy of `source` under `new_id`."""
    twin = store.get_products([source])[source]
    store.write(Catalogue(products={new_id: replace(twin, id=new_id)}))


def test_health_says_when_the_store_changed_and_a_reload_catches_up(graph: Path):
    rec = _recommender(graph)
    service = Service(rec, loader=lambda: _recommender(graph))
    http = TestClient(create_app(service))
    assert http.get("/health").json()["status"] == "ok"
    assert http.get("/related/NEW-AFTER-LOAD").status_code == 404

    _copy(EmbeddedStore(graph), rec.product_ids[3], "NEW-AFTER-LOAD")  # as `kgrec update` does
    body = http.get("/health").json()
    assert body["status"] == "stale" and body["store_changed"] is True and body["stale"]
    assert http.get("/health").status_code == 200  # stale answers are still answers

    reloaded = http.post("/admin/reload")
    assert reloaded.status_code == 200, reloaded.text
    assert reloaded.json()["status"] == "ok" and not reloaded.json()["store_changed"]
    assert service.rec is not rec
    assert http.get("/related/NEW-AFTER-LOAD", params={"k": 3}).status_code == 200


def test_a_server_given_a_loaded_model_cannot_reload(graph: Path):
    http = TestClient(create_app(_recommender(graph)))
    assert http.post("/admin/reload").status_code == 409


def test_health_reports_the_checkpoint_age_and_its_replacement(graph: Path, tmp_path: Path):
    checkpoint = tmp_path / "model"
    checkpoint.mkdir()
    http = TestClient(create_app(Service(_recommender(graph), checkpoint=checkpoint)))
    body = http.get("/health").json()
    assert 0 <= body["model_age_seconds"] < 60 and body["model_changed"] is False
    checkpoint.rename(tmp_path / "model.old")  # what a save does: a new directory swapped in
    checkpoint.mkdir()
    body = http.get("/health").json()
    assert body["model_changed"] is True and body["status"] == "stale"


def test_ids_containing_a_slash_are_reachable(graph: Path):
    store = EmbeddedStore(graph)
    known = sorted(beauty_slice().products)[5]
    _copy(store, known, "AB/CD-1")
    user = "shop/user 7"
    store.write(
        Catalogue(products={}, interactions=[Interaction(user=user, product=known, kind="review")])
    )
    rec = _recommender(graph)
    http = TestClient(create_app(rec))
    for path, query in (("/related/AB/CD-1", "AB/CD-1"), ("/recommend/shop/user%207", user)):
        response = http.get(path, params={"k": 3})
        assert response.status_code == 200, (path, response.text)
        assert response.json()["query"] == query
    expected = [r.product_id for r in rec.related("AB/CD-1", k=3)]
    assert [r["product_id"] for r in http.get("/related/AB%2FCD-1?k=3").json()["results"]] == (
        expected
    )


class GatedModel(TinyModel):
    """The model double whose text encoding waits for a gate, counting encodings at once."""

    def __init__(self) -> None:
        super().__init__(beauty_slice())
        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.running = self.peak = 0

    def text_to_vectors(self, texts: list[str]) -> Tensor:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            self.gate.wait(30)
            return super().text_to_vectors(texts)
        finally:
            with self.lock:
                self.running -= 1


def test_text_encoding_is_capped_and_the_excess_is_told_to_retry(graph: Path):
    model = GatedModel()
    rec = Recommender(model, EmbeddedStore(graph))
    clients = 16
    with (
        TestClient(create_app(rec, encode_slots=2, encode_wait=0.5)) as http,
        ThreadPoolExecutor(clients) as pool,
    ):
        futures = [
            pool.submit(http.get, "/search", params={"q": f"lipstick {i}", "explain": False})
            for i in range(clients)
        ]
        deadline = time.monotonic() + 20
        while sum(f.done() for f in futures) < clients - 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        model.gate.set()
        responses = [f.result() for f in futures]
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 2 + [503] * (clients - 2)
    busy = next(r for r in responses if r.status_code == 503)
    assert busy.headers["Retry-After"] == "2" and "busy" in busy.json()["detail"]
    assert model.peak == 2


def test_capped_requests_that_get_a_slot_in_time_are_all_answered(graph: Path):
    model = GatedModel()
    model.gate.set()
    rec = Recommender(model, EmbeddedStore(graph))
    with (
        TestClient(create_app(rec, encode_slots=2, encode_wait=30)) as http,
        ThreadPoolExecutor(16) as pool,
    ):
        codes = list(pool.map(lambda i: http.get("/search", params={"q": f"q{i}"}).status_code,
                              range(16)))  # fmt: skip
    assert codes == [200] * 16 and model.peak <= 2


def test_the_api_key_guards_every_endpoint_but_liveness(graph: Path):
    rec = _recommender(graph)
    http = TestClient(create_app(rec, api_key="s3cret-key"))
    pid = rec.product_ids[0]
    for path in (f"/related/{pid}", "/search?q=nail", "/health", "/health/ready", "/docs"):
        refused = http.get(path)
        assert refused.status_code == 401, path
        assert refused.json() == {"detail": "missing or wrong API key (send X-API-Key)"}
        assert http.get(path, headers={"X-API-Key": "wrong"}).status_code == 401
    assert http.post("/admin/reload").status_code == 401
    assert http.get("/health/live").status_code == 200
    assert http.get(f"/related/{pid}", headers={"X-API-Key": "s3cret-key"}).status_code == 200
    bearer = {"Authorization": "Bearer s3cret-key"}
    assert http.get("/health", headers=bearer).status_code == 200


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_hosts_need_no_warning(host: str):
    assert exposure_warning(host, None) is None


def test_serving_on_every_interface_warns_loudly(monkeypatch, caplog, graph: Path):
    assert "WITHOUT AUTHENTICATION" in exposure_warning("0.0.0.0", None)
    assert "requires the API key" in exposure_warning("::", "k")
    assert "WITHOUT AUTHENTICATION" in exposure_warning("shop.example.com", None)
    started = []
    monkeypatch.setattr(serve_module, "load", lambda *_: _recommender(graph))
    monkeypatch.setattr(serve_module.uvicorn, "run", lambda app, **kw: started.append(kw))
    with caplog.at_level(logging.WARNING, logger=serve_module.__name__):
        serve_module.serve("ckpt", None, host="0.0.0.0", port=9999)
    assert started == [{"host": "0.0.0.0", "port": 9999, "access_log": True}]
    with pytest.raises(InvalidArgumentError, match="--access-log 'xml': choose one of text"):
        serve_module.serve("ckpt", None, access_log="xml")
    assert "WITHOUT AUTHENTICATION" in caplog.text


def test_metrics_are_scraped_in_prometheus_format(graph: Path, tmp_path: Path):
    from prometheus_client.parser import text_string_to_metric_families

    checkpoint = tmp_path / "model"
    checkpoint.mkdir()
    rec = _recommender(graph)
    http = TestClient(create_app(Service(rec, checkpoint=checkpoint)))
    pid = rec.product_ids[0]
    for _ in range(3):
        assert http.get(f"/related/{pid}").status_code == 200
    assert http.get("/related/NOPE").status_code == 404
    scrape = http.get("/metrics")
    assert scrape.status_code == 200 and scrape.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(scrape.text)
        for s in family.samples
    }
    related = "/related/{product_id:path}"
    ok = (("endpoint", related), ("method", "GET"), ("status", "200"))
    assert samples["kgrec_requests_total", ok] == 3
    assert samples["kgrec_requests_total", ok[:2] + (("status", "404"),)] == 1
    assert samples["kgrec_request_seconds_count", (("endpoint", related),)] == 4
    assert samples["kgrec_request_seconds_bucket", (("endpoint", related), ("le", "+Inf"))] == 4
    assert samples["kgrec_store_reachable", ()] == 1 and samples["kgrec_answers_stale", ()] == 0
    assert 0 <= samples["kgrec_model_age_seconds", ()] < 60
    assert samples["kgrec_model_info", (("model", "tiny"), ("store", rec.store.uri))] == 1

    _copy(EmbeddedStore(graph), pid, "NEW-METRICS")
    stale = http.get("/metrics").text
    assert "kgrec_answers_stale 1.0" in stale


def test_json_access_logs_are_one_object_per_request_without_the_query(graph: Path, capfd):
    import json

    http = TestClient(create_app(_recommender(graph), json_access=True))
    pid = _recommender(graph).product_ids[0]
    assert http.get(f"/related/{pid}?k=3").status_code == 200
    assert http.get("/related/NOPE").status_code == 404
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line]
    assert [(r["path"], r["endpoint"], r["status"]) for r in lines] == [
        (f"/related/{pid}", "/related/{product_id:path}", 200),
        ("/related/NOPE", "/related/{product_id:path}", 404),
    ]
    assert all(r["method"] == "GET" and r["ms"] > 0 and r["time"].endswith("+00:00") for r in lines)
