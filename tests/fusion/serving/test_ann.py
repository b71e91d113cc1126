"""The ANN index behind `related` in large catalogues: recall against exact search, saving and
reloading (and refusing a stale index), filters, and the fall back to the exact scan."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from fusion.serving import ann
from fusion.serving.ann import AnnIndex, load_or_build
from fusion.serving.recommender import Filters, Recommender, top_related
from kg.stores import EmbeddedStore
from tests.fusion.serving.test_recommender import TinyModel, beauty_slice, write_slice


def clustered(n: int = 4000, dim: int = 48, seed: int = 0) -> Tensor:
    """Unit vectors in clusters, as product embeddings are."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n // 20, dim, generator=g)
    pick = torch.randint(0, len(centres), (n,), generator=g)
    return F.normalize(centres[pick] + 0.8 * torch.randn(n, dim, generator=g), dim=-1)


def exact_top(vectors: Tensor, row: int, k: int) -> set[int]:
    scores = vectors @ vectors[row]
    scores[row] = float("-inf")
    return set(torch.topk(scores, k).indices.tolist())


def test_ann_recall_at_10_against_exact_search():
    vectors = clustered()
    ids = [f"p{i}" for i in range(len(vectors))]
    index = AnnIndex.build(vectors, ids)
    queries = range(0, len(vectors), 20)
    hits = 0
    for row in queries:
        found = [r for r in index.search(vectors[row], 11).tolist() if r != row][:10]
        hits += len(set(found) & exact_top(vectors, row, 10))
    assert hits / (10 * len(queries)) >= 0.98


def test_a_saved_index_reloads_and_answers_the_same(tmp_path):
    vectors = clustered(1000)
    ids = [f"p{i}" for i in range(len(vectors))]
    built = AnnIndex.build(vectors, ids)
    built.save(tmp_path)
    loaded = AnnIndex.load(tmp_path, vectors, ids)
    assert loaded is not None and loaded.size == len(ids)
    for row in (0, 17, 999):
        assert loaded.search(vectors[row], 10).tolist() == built.search(vectors[row], 10).tolist()


def test_a_stale_or_missing_index_is_not_loaded(tmp_path):
    vectors = clustered(500)
    ids = [f"p{i}" for i in range(len(vectors))]
    assert AnnIndex.load(tmp_path, vectors, ids) is None  # none saved
    AnnIndex.build(vectors, ids).save(tmp_path)
    assert AnnIndex.load(tmp_path, vectors, ids[::-1]) is None  # other products
    moved = vectors.clone()
    moved[::10] = F.normalize(torch.randn(len(moved[::10]), vectors.shape[1]), dim=-1)
    assert AnnIndex.load(tmp_path, moved, ids) is None  # another model's vectors
    (tmp_path / ann.INDEX_FILE).write_bytes(b"not an index")
    assert AnnIndex.load(tmp_path, vectors, ids) is None  # damaged


def test_load_or_build_builds_once_then_loads(tmp_path, monkeypatch):
    vectors = clustered(500)
    ids = [f"p{i}" for i in range(len(vectors))]
    first = load_or_build(tmp_path, vectors, ids)
    assert (tmp_path / ann.INDEX_FILE).exists() and (tmp_path / ann.META_FILE).exists()

    def no_build(*_: object) -> AnnIndex:
        raise AssertionError("rebuilt an index saved for these vectors")

    monkeypatch.setattr(AnnIndex, "build", classmethod(no_build))
    again = load_or_build(tmp_path, vectors, ids)
    assert again.search(vectors[3], 10).tolist() == first.search(vectors[3], 10).tolist()


@pytest.fixture(scope="module")
def approx(tmp_path_factory: pytest.TempPathFactory) -> Recommender:
    """A recommender over the Beauty slice answering `related` through the ANN index."""
    model = TinyModel(beauty_slice())
    store = EmbeddedStore(tmp_path_factory.mktemp("graph"))
    write_slice(store)
    rec = Recommender(model, store)
    rec.use_ann(AnnIndex.build(rec.vectors, rec.product_ids))
    return rec


def _exact(rec: Recommender, row: int, k: int, filters: Filters | None) -> list[str]:
    ok = rec.filters.mask(filters) if filters else torch.ones(len(rec.product_ids), dtype=bool)
    ok = ok.clone()
    ok[row] = False
    scores = (rec.vectors @ rec.vectors[row]).masked_fill(~ok, float("-inf"))
    top = torch.topk(scores, min(k, int(ok.sum())))
    return [rec.product_ids[i] for i in top.indices.tolist()]


@pytest.mark.parametrize("filters", [None, Filters(in_catalogue=True), Filters(min_price=10)])
def test_related_through_the_ann_matches_the_exact_scan(approx, filters):
    rows = range(0, len(approx.product_ids), 13)
    hits = 0
    for row in rows:
        pid = approx.product_ids[row]
        assert approx._approximate(approx.vectors[row], 10, filters, [row]) is not None
        results = approx.related(pid, k=10, filters=filters, explain=False)
        assert pid not in {r.product_id for r in results}
        scores = [r.score for r in results]
        assert scores == sorted(scores, reverse=True)
        # Scores are exact cosines, whatever found the product.
        for r in results:
            cosine = approx.vectors[approx.product_ids.index(r.product_id)] @ approx.vectors[row]
            assert r.score == pytest.approx(cosine.item(), abs=1e-6)
        if filters:
            passing = approx.filters.mask(filters)
            assert all(passing[approx.product_ids.index(r.product_id)] for r in results)
        hits += len({r.product_id for r in results} & set(_exact(approx, row, 10, filters)))
    assert hits / (10 * len(rows)) >= 0.98


def test_too_few_filtered_candidates_fall_back_to_the_exact_scan(approx):
    # A brand with fewer products than k: the ANN's candidates cannot hold k of them.
    brands: dict[str, int] = {}
    for p in approx.products.values():
        if p.brand:
            brands[p.brand] = brands.get(p.brand, 0) + 1
    brand = max(brands, key=brands.get)
    f = Filters(brand=brand)
    row = next(i for i, pid in enumerate(approx.product_ids) if approx.products[pid].brand != brand)
    k = brands[brand] + 5
    query = approx.vectors[row]
    assert approx._approximate(query, k, f, [row]) is None
    results = approx.related(approx.product_ids[row], k=k, filters=f, explain=False)
    assert [r.product_id for r in results] == _exact(approx, row, k, f)
    assert len(results) == brands[brand]


def test_an_index_of_other_products_is_refused(approx):
    vectors = approx.vectors[:10]
    with pytest.raises(ValueError, match="ANN index of 10 products"):
        approx.use_ann(AnnIndex.build(vectors, approx.product_ids[:10]))


def test_ann_top_related_matches_the_exact_ranking_publish_uses():
    vectors = clustered(2000)
    index = AnnIndex.build(vectors, [f"p{i}" for i in range(len(vectors))])
    exact = {start: idx for start, _, idx in top_related(vectors, 10, chunk=512)}
    hits = 0
    for start, scores, idx in index.top_related(vectors, 10, chunk=512):
        rows = torch.arange(start, start + len(idx)).unsqueeze(1)
        assert not (idx == rows).any()  # never the product itself
        assert (scores[:, :-1] >= scores[:, 1:]).all()
        cosines = torch.einsum("bd,bkd->bk", vectors[start : start + len(idx)], vectors[idx])
        assert torch.allclose(scores, cosines, atol=1e-6)  # exact scores
        hits += sum(
            len(set(a) & set(b)) for a, b in zip(idx.tolist(), exact[start].tolist(), strict=True)
        )
    assert hits / (10 * len(vectors)) >= 0.98


def test_a_large_catalogue_server_answers_through_an_index_saved_next_to_the_checkpoint(
    tmp_path, monkeypatch
):
    import fusion.serving.rest as rest

    store = EmbeddedStore(tmp_path / "graph")
    write_slice(store)
    model = TinyModel(beauty_slice())
    monkeypatch.setattr(rest, "NEIGHBOUR_TABLE_MAX_PRODUCTS", 10)  # the slice counts as large
    monkeypatch.setattr(Recommender, "load", classmethod(lambda cls, _c, _s: cls(model, store)))
    first = rest.load(tmp_path, None)
    assert first.ann is not None and first._neighbours is None
    assert (tmp_path / ann.INDEX_FILE).exists()

    def no_build(*_: object) -> AnnIndex:
        raise AssertionError("the saved index was rebuilt")

    monkeypatch.setattr(AnnIndex, "build", classmethod(no_build))
    again = rest.load(tmp_path, None)
    pid = again.product_ids[5]
    assert again.related(pid, explain=False) == first.related(pid, explain=False)
