"""Write-back to Neo4j: the vector index and RELATED_TO answer in Cypher as Python does."""

from __future__ import annotations

import neo4j
import pytest

from fusion.serving.publish import (
    EMBEDDING_PROPERTY,
    RELATED_QUERY,
    VECTOR_INDEX,
    VECTOR_QUERY,
    publish,
)
from fusion.serving.recommender import Recommender
from kg.stores import EmbeddedStore, Neo4jStore, StoreError
from tests.fusion.serving.test_recommender import TinyModel, beauty_slice, write_slice

K = 10


@pytest.fixture
def store(neo4j_clean):
    with Neo4jStore(neo4j_clean.uri, neo4j_clean.user, neo4j_clean.password) as s:
        write_slice(s)
        yield s


@pytest.fixture
def driver(neo4j_clean):
    with neo4j.GraphDatabase.driver(
        neo4j_clean.uri, auth=(neo4j_clean.user, neo4j_clean.password)
    ) as d:
        yield d


def _same_up_to_ties(cypher: list[tuple[str, float]], python: list[tuple[str, float]]) -> None:
    """Equal id sets, except that products tied on the k-th score may swap."""
    assert len(cypher) == len(python)
    last = python[-1][1]
    firm = {pid for pid, score in python if score > last + 1e-5}
    assert firm <= {pid for pid, _ in cypher}
    assert [s for _, s in cypher] == pytest.approx([s for _, s in python], abs=1e-5)


def test_vector_index_and_related_to_match_python_top_k(store, driver):
    rec = Recommender(TinyModel(beauty_slice()), store, name="tiny-v1")
    report = publish(rec, k=K, batch_size=64)
    n = len(rec.product_ids)
    assert report.vectors == n and report.related == n * K and report.dimensions == 16

    for pid in rec.product_ids[:: max(1, n // 25)]:
        python = [(r.product_id, r.score) for r in rec.related(pid, k=K, explain=False)]
        records = driver.execute_query(VECTOR_QUERY, id=pid, k=K).records
        # The index reports cosine as (1 + cos) / 2.
        _same_up_to_ties([(r["id"], 2 * r["score"] - 1) for r in records], python)
        records = driver.execute_query(RELATED_QUERY, id=pid, k=K, model="tiny-v1").records
        _same_up_to_ties([(r["id"], r["score"]) for r in records], python)


def test_republishing_replaces_other_models_and_resizes_the_index(store, driver):
    catalogue = beauty_slice()
    publish(Recommender(TinyModel(catalogue), store, name="old"), k=3)
    new = Recommender(TinyModel(catalogue, dim=8, seed=1), store, name="new")
    publish(new, k=2)
    publish(new, k=2)  # idempotent
    models = driver.execute_query(
        "MATCH ()-[r:RELATED_TO]->() RETURN r.model AS model, count(*) AS n"
    ).records
    assert [(r["model"], r["n"]) for r in models] == [("new", 2 * len(new.product_ids))]
    dims = driver.execute_query(
        "SHOW VECTOR INDEXES YIELD name, options WHERE name = $name "
        "RETURN options.indexConfig['vector.dimensions'] AS d",
        name=VECTOR_INDEX,
    ).records
    assert [r["d"] for r in dims] == [8]
    stored = driver.execute_query(
        f"MATCH (p:Product {{id: $id}}) RETURN size(p.{EMBEDDING_PROPERTY}) AS d",
        id=new.product_ids[0],
    ).records
    assert stored[0]["d"] == 8


def test_publish_needs_neo4j(tmp_path):
    store = EmbeddedStore(tmp_path)
    rec = Recommender(TinyModel(write_slice(store)), store)
    with pytest.raises(StoreError, match="not a Neo4j store"):
        publish(rec)
