"""`kgrec forget --user ID`, end to end on a real (tiny) recommendation checkpoint: afterwards no
store query, no file of the store or the checkpoint (decompressed) and no REST answer knows the
user, and the next warm start trains without them — on the embedded store and on Neo4j."""

from __future__ import annotations

import gzip
import io
import shutil
import zipfile
from pathlib import Path

import neo4j
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from fusion.cli import app
from fusion.model.checkpoint import ID_MAPS, read_trained
from fusion.serving.rest import create_app, load
from fusion.serving.service import Service
from kg.catalogue import Catalogue
from kg.export import load_id_maps
from kg.schema import Interaction
from kg.stores import EmbeddedStore, Neo4jStore
from tests.fusion.serving.conftest import USERS
from tests.fusion.serving.test_recommender import beauty_slice


def kgrec(*args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


def ok(*args: object) -> Result:
    result = kgrec(*args)
    assert result.exit_code == 0, f"kgrec {args}: {result.output}{result.exception!r}"
    return result


def files_naming(root: Path, needle: str) -> list[str]:
    """Every file under `root` whose content — gunzipped, or each member of a zip (torch
    files) — contains `needle`."""
    found = []
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        raw = file.read_bytes()
        parts = [raw]
        if raw[:2] == b"\x1f\x8b":
            parts.append(gzip.decompress(raw))
        if zipfile.is_zipfile(file):
            with zipfile.ZipFile(io.BytesIO(raw)) as z:
                parts += [z.read(name) for name in z.namelist()]
        if any(needle.encode() in part for part in parts):
            found.append(str(file.relative_to(root)))
    return found


@pytest.fixture
def copies(recommend_checkpoint: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """The store and the checkpoint copied for one test to change."""
    graph, model = (tmp_path / p.name for p in recommend_checkpoint)
    for src, dst in zip(recommend_checkpoint, (graph, model), strict=True):
        shutil.copytree(src, dst)
    return graph, model


@pytest.fixture(scope="module")
def user(recommend_checkpoint: tuple[Path, Path]) -> str:
    """A user the model trained on."""
    record = read_trained(recommend_checkpoint[1])
    assert record
    return max(record, key=lambda u: (len(record[u]), u))


def test_forget_leaves_no_trace_in_the_embedded_store_checkpoint_or_service(copies, user):
    graph, model = copies
    store_uri = f"embedded:{graph}"
    assert files_naming(model, user) and files_naming(graph, user)
    service = Service(load(model, store_uri), lambda: load(model, store_uri), model)
    http = TestClient(create_app(service))
    assert http.get(f"/recommend/{user}").status_code == 200
    had = sum(1 for row in EmbeddedStore(graph).snapshot().interactions if row.user == user)

    result = ok("forget", "--user", user, "--store", store_uri, "--checkpoint", model)
    assert f"{had} interactions" in result.output and "checkpoint" in result.output

    snap = EmbeddedStore(graph).snapshot()
    assert user not in snap.users and all(row.user != user for row in snap.interactions)
    assert files_naming(graph, user) == [] and files_naming(model, user) == []
    assert http.get("/health").json()["stale"]
    assert http.post("/admin/reload").status_code == 200
    assert http.get(f"/recommend/{user}").status_code == 404

    # The next warm start (after someone else's new event) trains without them.
    snap = EmbeddedStore(graph).snapshot()
    other = next(u for u in snap.users if u != user)
    has = {row.product for row in snap.interactions if row.user == other}
    product = next(p.id for p in snap.products if p.id not in has and p.in_catalogue)
    event = Interaction(user=other, product=product, ts=2e9, kind="rating", rating=5.0)
    EmbeddedStore(graph).write(Catalogue(interactions=[event]))
    ok(
        "train", "--task", "recommend", "--epochs", "1", "--dim", "16", "--max-minutes", "3",
        "--warm-start", model, "--store", store_uri, "--out", graph.parent / "warm",
    )  # fmt: skip
    warm = graph.parent / "warm"
    assert user not in read_trained(warm) and read_trained(warm)
    assert files_naming(warm, user) == []


def test_forget_on_neo4j(copies, user, neo4j_clean):
    graph, model = copies
    auth = (neo4j_clean.user, neo4j_clean.password)
    with Neo4jStore(neo4j_clean.uri, *auth) as store:
        store.write(beauty_slice(USERS))
        before = store.counts()["relationships"]["INTERACTED"]
    count = "MATCH (u:User {id: $id})-[r:INTERACTED]->() RETURN count(r) AS n"
    with neo4j.GraphDatabase.driver(neo4j_clean.uri, auth=auth) as driver:
        had = driver.execute_query(count, id=user).records[0]["n"]
        assert had > 0

        ok("forget", "--user", user, "--store", neo4j_clean.uri, "--checkpoint", model)

        assert driver.execute_query(count, id=user).records[0]["n"] == 0
        users = "MATCH (u:User) WHERE u.id = $id RETURN count(u) AS n"
        assert driver.execute_query(users, id=user).records[0]["n"] == 0
        # Nobody else lost anything.
        total = "MATCH ()-[r:INTERACTED]->() RETURN count(r) AS n"
        assert driver.execute_query(total).records[0]["n"] == before - had
    assert files_naming(model, user) == []
    assert user not in load_id_maps(model / ID_MAPS)["user"]
    with TestClient(create_app(load(model, neo4j_clean.uri), close_at_shutdown=True)) as http:
        assert http.get(f"/recommend/{user}").status_code == 404


def test_forgetting_an_unknown_user_is_a_clear_error(copies):
    graph, model = copies
    result = kgrec("forget", "--user", "NOBODY", "--store", f"embedded:{graph}", "--checkpoint",
                   model)  # fmt: skip
    assert result.exit_code == 1
    assert "unknown user 'NOBODY'" in result.output and "Traceback" not in result.output
