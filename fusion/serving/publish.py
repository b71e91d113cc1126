"""Write-back (`kgrec publish`): the model's answers, queryable from Cypher without Python.

- every product's fused vector as `Product.kgrec_embedding`, under a cosine vector index;
- its top-K related products as `(:Product)-[:RELATED_TO {score, model}]->(:Product)`, replacing
  those of any other model.

The queries the README shows are `VECTOR_QUERY` and `RELATED_QUERY` below. The vector index is
approximate (HNSW) and reports cosine as `(1 + cos) / 2`; `RELATED_TO.score` is the exact cosine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, LiteralString

import neo4j
from pydantic import BaseModel

from fusion.serving.recommender import Recommender, top_related
from kg.schema import Label
from kg.stores import Neo4jStore, StoreError

EMBEDDING_PROPERTY = "kgrec_embedding"
VECTOR_INDEX = "kgrec_product_embedding"
RELATED_TO = "RELATED_TO"
BATCH_SIZE = 1000

# Nearest products by the published vectors ($k answers, the product itself left out). HNSW is
# approximate: searching 10·k candidates and keeping the best k makes the top k exact in practice.
VECTOR_QUERY: LiteralString = f"""
MATCH (p:{Label.PRODUCT} {{id: $id}})
CALL db.index.vector.queryNodes('{VECTOR_INDEX}', 10 * $k + 1, p.{EMBEDDING_PROPERTY})
YIELD node, score
WHERE node <> p
RETURN node.id AS id, node.title AS title, score
ORDER BY score DESC LIMIT $k
"""  # type: ignore[assignment]

# The published related products of one product.
RELATED_QUERY: LiteralString = f"""
MATCH (p:{Label.PRODUCT} {{id: $id}})-[r:{RELATED_TO} {{model: $model}}]->(q:{Label.PRODUCT})
RETURN q.id AS id, q.title AS title, r.score AS score
ORDER BY score DESC LIMIT $k
"""  # type: ignore[assignment]

_CREATE_INDEX = (
    f"CREATE VECTOR INDEX {VECTOR_INDEX} IF NOT EXISTS "
    f"FOR (p:{Label.PRODUCT}) ON p.{EMBEDDING_PROPERTY} "
    "OPTIONS {{indexConfig: {{`vector.dimensions`: {dim}, "
    "`vector.similarity_function`: 'cosine', "
    # Quantised scores are off by a few percent and reorder near-ties; vectors are small.
    "`vector.quantization.enabled`: false}}}}"
)
_INDEX_DIM = (
    "SHOW VECTOR INDEXES YIELD name, options WHERE name = $name "
    "RETURN options.indexConfig['vector.dimensions']"
)
_WRITE_VECTORS: LiteralString = f"""
UNWIND $rows AS row
MATCH (p:{Label.PRODUCT} {{id: row.id}})
CALL db.create.setNodeVectorProperty(p, '{EMBEDDING_PROPERTY}', row.vector)
RETURN count(p)
"""  # type: ignore[assignment]
# Per source product, in one transaction: its old RELATED_TO go, the new ones come.
_WRITE_RELATED: LiteralString = f"""
UNWIND $rows AS row
MATCH (p:{Label.PRODUCT} {{id: row.id}})
CALL (p) {{ MATCH (p)-[old:{RELATED_TO}]->() DELETE old }}
WITH p, row
UNWIND range(0, size(row.targets) - 1) AS i
MATCH (q:{Label.PRODUCT} {{id: row.targets[i]}})
CREATE (p)-[:{RELATED_TO} {{score: row.scores[i], model: $model}}]->(q)
RETURN count(*)
"""  # type: ignore[assignment]
_DROP_OTHER_MODELS: LiteralString = f"""
MATCH ()-[r:{RELATED_TO}]->() WHERE r.model <> $model
CALL (r) {{ DELETE r }} IN TRANSACTIONS OF 10000 ROWS
"""  # type: ignore[assignment]

Progress = Callable[[str, int, int], None]


class PublishReport(BaseModel):
    model: str
    dimensions: int
    vectors: int  # products whose vector was written
    related: int  # RELATED_TO relationships created


def publish(
    rec: Recommender,
    k: int = 10,
    batch_size: int = BATCH_SIZE,
    progress: Progress | None = None,
) -> PublishReport:
    """Write `rec`'s product vectors, vector index and top-`k` RELATED_TO into its Neo4j store."""
    if not isinstance(rec.store, Neo4jStore):
        raise StoreError(f"publish writes to Neo4j; {rec.store.uri} is not a Neo4j store")
    ids, vectors = rec.product_ids, rec.vectors
    dim = vectors.shape[1]
    with rec.store.session() as session:
        _ensure_index(session, dim)
        written = 0
        for start in range(0, len(ids), batch_size):
            rows = [
                {"id": pid, "vector": vec}
                for pid, vec in zip(
                    ids[start : start + batch_size],
                    vectors[start : start + batch_size].tolist(),
                    strict=True,
                )
            ]
            written += session.execute_write(_count, _WRITE_VECTORS, rows=rows)
            if progress:
                progress("vectors", min(start + batch_size, len(ids)), len(ids))
        related = 0
        # Exact all-pairs ranking is O(N²): an attached ANN index ranks large catalogues.
        ranked = top_related if rec.ann is None else rec.ann.top_related
        for start, scores, idx in ranked(vectors, k, chunk=batch_size):
            rows = [
                {"id": ids[start + i], "targets": [ids[j] for j in row_idx], "scores": row_scores}
                for i, (row_scores, row_idx) in enumerate(
                    zip(scores.tolist(), idx.tolist(), strict=True)
                )
            ]
            related += session.execute_write(_count, _WRITE_RELATED, rows=rows, model=rec.name)
            if progress:
                progress(RELATED_TO, min(start + batch_size, len(ids)), len(ids))
        session.run(_DROP_OTHER_MODELS, model=rec.name).consume()
        # Answer queries straight away: wait until the index has taken in every vector.
        session.run("CALL db.awaitIndex($name, 600)", name=VECTOR_INDEX).consume()
    return PublishReport(model=rec.name, dimensions=dim, vectors=written, related=related)


def _ensure_index(session: neo4j.Session, dim: int) -> None:
    # A vector index has a fixed dimension: a model of another size needs a new index.
    found = session.run(_INDEX_DIM, name=VECTOR_INDEX).values()
    if found and found[0][0] != dim:
        session.run(f"DROP INDEX {VECTOR_INDEX}").consume()
    session.run(_CREATE_INDEX.format(dim=int(dim))).consume()


def _count(tx: neo4j.ManagedTransaction, query: LiteralString, **params: Any) -> int:
    return sum(row[0] for row in tx.run(query, params).values())
