"""The REST service: answers, validation, errors and docs, through FastAPI's TestClient."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from fastapi.testclient import TestClient

import fusion.serving.rest as serve_module
from fusion.serving.recommender import Recommender
from fusion.serving.rest import create_app
from kg.catalogue import Catalogue
from kg.stores import EmbeddedStore
from tests.fusion.serving.test_recommender import TinyModel, write_slice


@pytest.fixture(scope="module")
def rec(tmp_path_factory: pytest.TempPathFactory) -> Recommender:
    store = EmbeddedStore(tmp_path_factory.mktemp("graph"))
    return Recommender(TinyModel(write_slice(store)), store, name="tiny")


@pytest.fixture(scope="module")
def client(rec: Recommender) -> TestClient:
    return TestClient(create_app(rec))


def test_health_names_the_model_and_its_size(client, rec):
    body = client.get("/health").json()
    assert body == client.get("/health/ready").json()
    assert {k: body[k] for k in ("status", "model", "products", "store", "store_reachable")} == {
        "status": "ok",
        "model": "tiny",
        "products": len(rec.product_ids),
        "store": rec.store.uri,
        "store_reachable": True,
    }
    assert body["stale"] is False and body["store_changed"] is False
    assert client.get("/health/live").json() == {"status": "alive"}


def test_related_returns_what_the_python_api_returns(client, rec):
    pid = rec.product_ids[5]
    response = client.get(f"/related/{pid}", params={"k": 7})
    assert response.status_code == 200
    body = response.json()
    assert body["query"] == pid
    expected = [r.model_dump(mode="json") for r in rec.related(pid, k=7)]
    assert body["results"] == expected


def test_recommend_and_search_answer(client, rec):
    user = rec.model.user_ids[0]
    assert len(client.get(f"/recommend/{user}", params={"k": 3}).json()["results"]) == 3
    found = client.get("/search", params={"q": "nail polish", "k": 4, "explain": False}).json()
    assert len(found["results"]) == 4 and found["query"] == "nail polish"


def test_filters_apply(client, rec):
    pid = rec.product_ids[0]
    body = client.get(f"/related/{pid}", params={"brand": "nyx", "k": 20}).json()
    assert body["results"]
    assert {rec.products[r["product_id"]].brand for r in body["results"]} == {"NYX"}


@pytest.mark.parametrize(
    "url",
    [
        "/related/{pid}?k=0",
        "/related/{pid}?k=101",
        "/related/{pid}?k=ten",
        "/related/{pid}?min_price=-1",
        "/related/{pid}?min_price=9&max_price=1",
        "/search",
        "/search?q=%20%20",
    ],
)
def test_bad_parameters_are_422(client, rec, url):
    response = client.get(url.format(pid=rec.product_ids[0]))
    assert response.status_code == 422, response.text


def test_unknown_ids_are_404_with_a_message(client):
    response = client.get("/related/NOPE")
    assert response.status_code == 404
    assert response.json() == {
        "detail": "unknown product 'NOPE': not in the model nor in the graph"
    }
    assert client.get("/recommend/NOBODY").status_code == 404


def test_openapi_documents_every_endpoint(client):
    paths = client.get("/openapi.json").json()["paths"]
    documented = {"/related/{product_id}", "/recommend/{user_id}", "/search", "/health"}
    assert documented | {"/health/live", "/health/ready", "/admin/reload"} <= set(paths)
    for path in ("/related/{product_id}", "/recommend/{user_id}", "/search"):
        ok = paths[path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": "#/components/schemas/Answer"}  # serialised by hand, still documented
    assert client.get("/docs").status_code == 200


@pytest.fixture
def new_product(rec: Recommender) -> str:
    """A product written to the store after the model was built: a copy of a known one."""
    twin = rec.products[rec.product_ids[11]]
    rec.store.write(Catalogue(products={"NEW-HTTP": replace(twin, id="NEW-HTTP")}))
    return "NEW-HTTP"


def test_a_product_added_after_training_is_answered_over_http(client, rec, new_product):
    assert not rec.knows(new_product)  # encoded from its text, off the event loop
    response = client.get(f"/related/{new_product}", params={"k": 3})
    assert response.status_code == 200, response.text
    assert len(response.json()["results"]) == 3


def test_servers_precompute_and_run_torch_on_one_thread(monkeypatch, rec):
    # Loading runs on torch's default threads; `load` narrows them to one afterwards.
    monkeypatch.setattr(Recommender, "load", lambda *_: torch.set_num_threads(2) or rec)
    before = torch.get_num_threads()
    try:
        assert serve_module.load("ckpt", None) is rec
        assert torch.get_num_threads() == 1
        assert rec._precomputed(0, 10, None) is not None  # related items are precomputed
    finally:
        torch.set_num_threads(before)


def test_workers_start_from_the_app_factory(monkeypatch, rec, tmp_path):
    calls, loaded = [], []
    monkeypatch.setattr(serve_module, "read_meta", lambda _dir: {})
    monkeypatch.setattr(serve_module.uvicorn, "run", lambda *a, **kw: calls.append((a, kw)))
    monkeypatch.setattr(serve_module, "load", lambda *args: loaded.append(args) or rec)
    monkeypatch.setattr(serve_module, "create_app", lambda got, **kw: (got, kw))
    env = (serve_module.CHECKPOINT_ENV, serve_module.STORE_ENV, serve_module.API_KEY_ENV)
    for var in (*env, serve_module.ACCESS_LOG_ENV):
        monkeypatch.setenv(var, "")  # restored after the test, whatever `serve` sets
    serve_module.serve(
        tmp_path / "ckpt", "embedded:/g", port=9999, workers=3, access_log="json", api_key="k"
    )
    ((args, kwargs),) = calls
    assert args == ("fusion.serving.rest:worker_app",)
    assert kwargs["factory"] and kwargs["workers"] == 3 and kwargs["port"] == 9999
    assert kwargs["access_log"] is False  # uvicorn's text lines off: the JSON ones replace them
    # Each spawned worker builds its app from the environment the parent set.
    service, options = serve_module.worker_app()
    assert loaded == [(str(tmp_path / "ckpt"), "embedded:/g")] and service.rec is rec
    assert options == {"close_at_shutdown": True, "api_key": "k", "json_access": True}
    assert service.checkpoint == tmp_path / "ckpt" and service.loader is not None


def test_worker_apps_close_their_store_at_shutdown(monkeypatch, rec):
    closed = []
    monkeypatch.setattr(rec, "close", lambda: closed.append(True))
    with TestClient(create_app(rec, close_at_shutdown=True)) as http:
        assert http.get("/health").status_code == 200
    assert closed == [True]
    with TestClient(create_app(rec)):  # the caller owns `rec`
        pass
    assert closed == [True]


def test_cli_serve_rejects_zero_workers():
    from typer.testing import CliRunner

    from fusion.cli import app

    result = CliRunner().invoke(app, ["serve", "--workers", "0"])
    assert result.exit_code == 2
