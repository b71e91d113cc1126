"""The REST service: answers, validation, errors and docs, through FastAPI's TestClient."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from fusion.query import Recommender
from fusion.serve import create_app
from kg.stores import EmbeddedStore
from tests.fusion.test_query import TinyModel, write_slice


@pytest.fixture(scope="module")
def rec(tmp_path_factory: pytest.TempPathFactory) -> Recommender:
    store = EmbeddedStore(tmp_path_factory.mktemp("graph"))
    return Recommender(TinyModel(write_slice(store)), store, name="tiny")


@pytest.fixture(scope="module")
def client(rec: Recommender) -> TestClient:
    return TestClient(create_app(rec))


def test_health_names_the_model_and_its_size(client, rec):
    body = client.get("/health").json()
    assert body == {
        "status": "ok",
        "model": "tiny",
        "products": len(rec.product_ids),
        "store": rec.store.uri,
    }


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
    assert {"/related/{product_id}", "/recommend/{user_id}", "/search", "/health"} <= set(paths)
    assert client.get("/docs").status_code == 200
