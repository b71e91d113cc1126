"""The query API over a real Beauty slice, with a seeded test double of the model.

`beauty_slice`, `TinyModel` and `write_slice` are shared by the other query-layer test modules.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import replace
from functools import cache
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import Tensor

from fusion.serving.recommender import Filters, Recommender, UnknownIdError, top_related
from kg.catalogue import Catalogue
from kg.readers.beauty import read_beauty
from kg.rejects import RejectLog
from kg.schema import Product
from kg.stores import EmbeddedStore, Store
from text_encoder.template import render_product_text

BEAUTY = Path(os.environ["KGREC_DATA"]) / "amazon-beauty-2014"
STUB = "STUB-0001"  # referenced-only product: in the graph, not in the catalogue


@cache
def beauty_slice(max_users: int = 300) -> Catalogue:
    """The first `max_users` Beauty users, their products (every other one priced), the edges
    among them, and one stub product."""
    full = read_beauty(BEAUTY, RejectLog())
    users = list(dict.fromkeys(i.user for i in full.interactions))[:max_users]
    keep = set(users)
    interactions = [i for i in full.interactions if i.user in keep]
    ids = sorted({i.product for i in interactions})
    products = {
        pid: replace(full.products[pid], price=None if n % 2 else 5.0 + n % 40)
        for n, pid in enumerate(ids)
    }
    products[STUB] = Product(STUB, title="Stub", in_catalogue=False)
    edges = [e for e in full.edges if e.src in products and e.dst in products]
    cats = {c for p in products.values() for c in p.categories}
    categories = {c: full.categories[c] for c in cats}
    return Catalogue(products, categories, edges, interactions)


def product_text(p: Product) -> str:
    # Categories sorted, as stores return them.
    fields = {"title": p.title, "description": p.description, "brand": p.brand}
    return render_product_text({**fields, "categories": sorted(p.categories)})


class TinyModel:
    """Test double of a trained model: seeded random vectors; a text maps to the vector of the
    product it describes, any other text to a vector seeded by its checksum."""

    def __init__(self, catalogue: Catalogue, dim: int = 16, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.product_ids = sorted(catalogue.products)
        users = sorted(catalogue.users)
        self.user_ids = users[: len(users) - 5]  # the last five users are new to the model
        self.vectors = F.normalize(torch.randn(len(self.product_ids), dim, generator=g), dim=-1)
        self.users = torch.randn(len(self.user_ids), dim, generator=g)
        self.texts = {
            product_text(catalogue.products[pid]): i for i, pid in enumerate(self.product_ids)
        }

    def product_vectors(self) -> Tensor:
        return self.vectors

    def user_scores(self, user_idx: Tensor) -> Tensor:
        return self.users[user_idx] @ self.vectors.T

    def text_to_vectors(self, texts: list[str]) -> Tensor:
        return torch.stack([self._text_vector(t) for t in texts])

    def _text_vector(self, text: str) -> Tensor:
        if text in self.texts:
            return self.vectors[self.texts[text]]
        g = torch.Generator().manual_seed(zlib.crc32(text.encode()))
        return F.normalize(torch.randn(self.vectors.shape[1], generator=g), dim=0)


def write_slice(store: Store) -> Catalogue:
    catalogue = beauty_slice()
    store.write(catalogue)
    return catalogue


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return beauty_slice()


@pytest.fixture(scope="module")
def model(catalogue: Catalogue) -> TinyModel:
    return TinyModel(catalogue)


@pytest.fixture(scope="module")
def rec(tmp_path_factory: pytest.TempPathFactory, model: TinyModel) -> Recommender:
    store = EmbeddedStore(tmp_path_factory.mktemp("graph"))
    write_slice(store)
    return Recommender(model, store)


@pytest.fixture(scope="module")
def tabled(tmp_path_factory: pytest.TempPathFactory, model: TinyModel) -> Recommender:
    """`rec` with a neighbour table narrow enough that filters and large k fall back."""
    store = EmbeddedStore(tmp_path_factory.mktemp("graph"))
    write_slice(store)
    rec = Recommender(model, store)
    rec.precompute_neighbours(width=30)
    return rec


def brute_force(scores: Tensor, k: int, allowed: Tensor) -> set[int]:
    return set(torch.topk(scores.masked_fill(~allowed, float("-inf")), k).indices.tolist())


def test_related_is_the_cosine_top_k_without_the_product_itself(rec, model):
    pid = model.product_ids[7]
    results = rec.related(pid, k=10)
    allowed = torch.ones(len(model.product_ids), dtype=torch.bool)
    allowed[7] = False
    expected = brute_force(model.vectors @ model.vectors[7], 10, allowed)
    assert {model.product_ids.index(r.product_id) for r in results} == expected
    scores = [r.score for r in results]
    assert scores == sorted(scores, reverse=True)
    assert all(r.title == rec.products[r.product_id].title for r in results)


@pytest.mark.parametrize("k", [1, 10, 100])
@pytest.mark.parametrize(
    "filters", [None, Filters(brand="NYX"), Filters(min_price=10), Filters(in_catalogue=True)]
)
@pytest.mark.parametrize("recommender", ["rec", "tabled"])
def test_related_is_the_exact_float32_top_k(request, model, k, filters, recommender):
    """Both ways `related` ranks — the bf16 shortlist + float32 rerank, and the neighbour table
    (with its fallback to the former) — give the exact float32 answer."""
    rec = request.getfixturevalue(recommender)
    allowed = rec.filters.mask(filters) if filters else None
    for i in range(0, len(model.product_ids), 7):
        ok = torch.ones(len(model.product_ids), dtype=torch.bool) if allowed is None else allowed
        ok = ok.clone()
        ok[i] = False
        scores = (model.vectors @ model.vectors[i]).masked_fill(~ok, float("-inf"))
        top = torch.topk(scores, min(k, int(ok.sum())))
        results = rec.related(model.product_ids[i], k=k, filters=filters, explain=False)
        assert [r.score for r in results] == pytest.approx(top.values.tolist(), abs=1e-6)
        expected = {model.product_ids[j] for j in top.indices.tolist()}
        # Equal scores may swap at the k-th place; everything above it must match.
        cut = top.values[-1].item() + 1e-6
        assert {r.product_id for r in results if r.score > cut} <= expected


def test_the_neighbour_table_answers_while_it_can(tabled, model):
    row = 3
    assert len(tabled._precomputed(row, 30, None)) == 30
    assert tabled._precomputed(row, 31, None) is None  # beyond the table: scan everything
    brand = next(p.brand for p in tabled.products.values() if p.brand)
    passing = tabled.filters.mask(Filters(brand=brand))[tabled._neighbours[1][row]].sum()
    assert tabled._precomputed(row, int(passing) + 1, Filters(brand=brand)) is None


def test_top_related_excludes_the_product_itself(model):
    vectors = model.vectors[:50]
    for start, scores, idx in top_related(vectors, k=5, chunk=16):
        rows = range(start, start + idx.shape[0])
        assert all(r not in set(i) for r, i in zip(rows, idx.tolist(), strict=True))
        assert (scores[:, :-1] >= scores[:, 1:]).all()


def test_related_answers_carry_kg_explanations(rec, catalogue):
    edge = next(e for e in catalogue.edges if e.src != e.dst)
    results = rec.related(edge.src, k=len(catalogue.products))
    answer = next(r for r in results if r.product_id == edge.dst)
    assert answer.explanations, "a directly related product is explained"
    assert 1 <= len(answer.explanations) <= 3
    assert not rec.related(edge.src, k=3, explain=False)[0].explanations


@pytest.mark.parametrize(
    ("filters", "check"),
    [
        (Filters(brand="NYX"), lambda p: p.brand == "NYX"),
        (Filters(brand="nyx"), lambda p: p.brand == "NYX"),
        (Filters(category="Nails"), lambda p: "Nails" in p.categories),
        (
            Filters(min_price=10, max_price=20),
            lambda p: p.price is not None and 10 <= p.price <= 20,
        ),
        (Filters(in_catalogue=True), lambda p: p.in_catalogue),
    ],
)
def test_filters_hold_for_every_answer(rec, model, filters, check):
    results = rec.related(model.product_ids[0], k=20, filters=filters, explain=False)
    assert results
    assert all(check(rec.products[r.product_id]) for r in results)


def test_filters_that_match_nothing_give_no_answers(rec, model):
    assert rec.related(model.product_ids[0], filters=Filters(brand="no such brand")) == []


def test_stub_products_are_dropped_by_the_in_catalogue_filter(rec):
    everything = rec.search("Stub", k=len(rec.product_ids), explain=False)
    assert STUB in {r.product_id for r in everything}
    filtered = rec.search("Stub", k=len(rec.product_ids), filters=Filters(in_catalogue=True))
    assert STUB not in {r.product_id for r in filtered}


def test_bad_filters_and_k_are_rejected(rec, model):
    with pytest.raises(ValidationError, match="min_price"):
        Filters(min_price=5, max_price=1)
    with pytest.raises(ValidationError):
        Filters(min_price=-1)
    with pytest.raises(ValueError, match="k must be"):
        rec.related(model.product_ids[0], k=0)


def test_k_larger_than_the_catalogue_returns_every_other_product(rec, model):
    results = rec.related(model.product_ids[0], k=10**6, explain=False)
    assert len(results) == len(model.product_ids) - 1


def test_recommend_excludes_what_the_user_has(rec, model, catalogue):
    user = model.user_ids[3]
    has = {i.product for i in catalogue.interactions if i.user == user}
    allowed = torch.tensor([pid not in has for pid in model.product_ids])
    expected = brute_force(model.user_scores(torch.tensor([3]))[0], 10, allowed)
    results = rec.recommend(user, k=10)
    assert {model.product_ids.index(r.product_id) for r in results} == expected
    for r in results:
        for path in r.explanations:
            assert path.nodes[0].id == user and path.rels[0].type == "INTERACTED"
            assert path.nodes[1].id in has and path.nodes[-1].id == r.product_id


def test_a_user_new_to_the_model_is_served_from_their_items(rec, catalogue, model):
    user = sorted(catalogue.users)[-1]
    assert user not in model.user_ids
    has = {i.product for i in catalogue.interactions if i.user == user}
    results = rec.recommend(user, k=5)
    assert len(results) == 5 and not has & {r.product_id for r in results}


def test_unknown_ids_raise_a_clear_error(rec):
    with pytest.raises(UnknownIdError, match="unknown product 'NOPE'"):
        rec.related("NOPE")
    with pytest.raises(UnknownIdError, match="unknown user 'NOBODY'"):
        rec.recommend("NOBODY")


def test_a_product_added_after_training_gets_related_items_from_its_text(rec, catalogue, model):
    twin = catalogue.products[model.product_ids[11]]
    rec.store.write(Catalogue(products={"NEW-1": replace(twin, id="NEW-1")}))
    results = rec.related("NEW-1", k=5)
    assert results[0].product_id == twin.id
    assert results[0].score == pytest.approx(1.0)


def test_search_finds_the_product_a_text_describes(rec, catalogue, model):
    target = catalogue.products[model.product_ids[21]]
    results = rec.search(product_text(target), k=5)
    assert results[0].product_id == target.id
    if target.brand:
        assert any(p.rels[0].type == "MADE_BY" for p in results[0].explanations)
    with pytest.raises(ValueError, match="empty"):
        rec.search("   ")


@pytest.fixture
def cli(monkeypatch, tmp_path, model):
    """`kgrec` with the model double standing in for a checkpoint, over an embedded store."""
    from typer.testing import CliRunner

    import fusion.serving.recommender
    from fusion.cli import app

    write_slice(EmbeddedStore(tmp_path / "graph"))
    recommender = fusion.serving.recommender
    monkeypatch.setattr(recommender, "read_meta", lambda _dir: {})
    monkeypatch.setattr(recommender, "load_query_model", lambda _dir, _store: model)
    common = ["--checkpoint", str(tmp_path / "ckpt"), "--store", f"embedded:{tmp_path}/graph"]
    return lambda *args: CliRunner().invoke(app, [*args, *common])


def test_cli_prints_a_table_with_explanations(cli, catalogue):
    edge = next(e for e in catalogue.edges if e.src != e.dst)
    result = cli("related", edge.src, "-k", "3")
    assert result.exit_code == 0, result.output
    assert "answers for" in result.output and "score" in result.output


def test_cli_json_matches_the_python_api(cli, rec, model):
    pid = model.product_ids[2]
    result = cli("related", pid, "-k", "4", "--brand", "NYX", "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    expected = rec.related(pid, k=4, filters=Filters(brand="NYX"))
    assert [r["product_id"] for r in body["results"]] == [r.product_id for r in expected]
    assert cli("recommend", model.user_ids[0], "--json").exit_code == 0
    assert cli("search", "nail polish", "--in-catalogue").exit_code == 0


def test_cli_unknown_ids_exit_1_with_a_message(cli):
    result = cli("related", "NOPE")
    assert result.exit_code == 1
    assert "unknown product 'NOPE'" in result.output
    assert "Traceback" not in result.output
    assert cli("related", "X", "-k", "0").exit_code == 2  # bad parameter: usage error
