"""Diversity re-ranking: λ = 0 changes nothing; λ > 0 varies the categories of answers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import fusion.serving.recommender as recommender_module
from fusion.cli import app
from fusion.serving.recommender import Recommender
from fusion.serving.rerank import (
    DiversifiedScorer,
    ProductDistance,
    diversify,
    diversify_batch,
    label_sets,
    pool_size,
)
from fusion.serving.rest import create_app
from kg.stores import EmbeddedStore
from tests.fusion.serving.test_recommender import TinyModel, write_slice


def test_diversify_by_hand() -> None:
    relevance = torch.tensor([2.0, 1.9, 1.0, 0.0])  # likelihood vs the best: 1, .905, .368, .135
    distance = 1 - torch.tensor(
        [[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
    )  # 0 and 1 share a category; 2 and 3 differ from everyone
    assert diversify(relevance, distance, 3, 0.0) == [0, 1, 2]
    # After 0: 1 gains .7 · .905 = .634 > 2's .7 · .368 + .3 · 1 = .558.
    assert diversify(relevance, distance, 2, 0.3) == [0, 1]
    # At λ = .5: 2 gains .684 > 3's .568 > 1's .452.
    assert diversify(relevance, distance, 2, 0.5) == [0, 2]
    # Picked 0, 2, then 1 (.452 + .5 · mean distance .5 = .702 > 3's .568); shown by relevance.
    assert diversify(relevance, distance, 3, 0.5) == [0, 1, 2]
    assert diversify(relevance, distance, 2, 1.0) == [0, 2]  # ties: the more relevant
    with pytest.raises(ValueError, match="diversity"):
        diversify(relevance, distance, 2, 1.5)
    assert pool_size(10, 0.0) == 10 and pool_size(10, 0.3) == 50


def test_a_confident_head_is_kept_and_an_uncertain_tail_varied() -> None:
    """Relevance is the model's probability relative to the best answer: the same λ keeps a
    far-ahead second answer of the same category and swaps a barely-ahead one."""
    distance = 1 - torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    confident = torch.tensor([9.0, 8.9, 4.0])  # the third is e^-5 as likely
    uncertain = torch.tensor([1.0, 0.9, 0.8])
    assert diversify(confident, distance, 2, 0.3) == [0, 1]
    assert diversify(uncertain, distance, 2, 0.3) == [0, 2]


def _pairwise_distance(distance: torch.Tensor, picked: list[int]) -> float:
    pairs = [(a, b) for i, a in enumerate(picked) for b in picked[i + 1 :]]
    return sum(distance[a, b].item() for a, b in pairs) / len(pairs)


def test_more_diversity_never_gives_a_less_varied_list() -> None:
    """A pool led by one category (six lipsticks), then eye and skin products, graded by a
    category tree: the list's mean category distance does not fall as λ rises, and the
    relevance it gives up does not shrink."""
    tree = [["beauty", "makeup", "lips"]] * 6 + [["beauty", "makeup", "eyes"]] * 3
    tree += [["beauty", "skin"]] * 3 + [["beauty", "hair"]] * 2
    distance = ProductDistance(torch.zeros(len(tree), 2), label_sets(tree))(torch.arange(len(tree)))
    relevance = torch.linspace(3.0, 0.0, len(tree))
    levels = [i / 10 for i in range(11)]
    picks = [diversify(relevance, distance, 5, level) for level in levels]
    spread = [_pairwise_distance(distance, p) for p in picks]
    kept = [relevance[p].sum().item() for p in picks]
    assert all(a <= b + 1e-9 for a, b in zip(spread, spread[1:], strict=False))
    assert all(a >= b - 1e-9 for a, b in zip(kept, kept[1:], strict=False))
    assert picks[0] == [0, 1, 2, 3, 4] and spread[-1] > spread[0] + 0.3
    assert {tuple(tree[i]) for i in picks[-1]} >= {("beauty", "skin"), ("beauty", "hair")}


class CategoryModel(TinyModel):
    """Vectors clustered by category set: related items at λ = 0 share categories."""

    def __init__(self, catalogue) -> None:
        super().__init__(catalogue)
        keys = [[frozenset(catalogue.products[pid].categories)] for pid in self.product_ids]
        label = label_sets(keys)[:, 0]
        g = torch.Generator().manual_seed(1)
        centre = torch.randn(int(label.max()) + 1, self.vectors.shape[1], generator=g)
        noise = torch.randn(self.vectors.shape, generator=g)
        self.vectors = F.normalize(centre[label] + 0.6 * noise, dim=-1)


@pytest.fixture(scope="module")
def rec(tmp_path_factory: pytest.TempPathFactory) -> Recommender:
    store = EmbeddedStore(tmp_path_factory.mktemp("graph"))
    return Recommender(CategoryModel(write_slice(store)), store, name="tiny")


def _category_diversity(rec: Recommender, ids: list[str]) -> float:
    """Mean Jaccard distance of the answers' category sets over their pairs."""
    sets = [set(rec.products[pid].categories) for pid in ids]
    pairs = [(a, b) for i, a in enumerate(sets) for b in sets[i + 1 :] if a | b]
    return sum(1 - len(a & b) / len(a | b) for a, b in pairs) / len(pairs)


def test_zero_diversity_is_the_plain_ranking(rec: Recommender) -> None:
    for pid in rec.product_ids[:20]:
        plain = rec.related(pid, 10, explain=False)
        assert rec.related(pid, 10, explain=False, diversity=0.0) == plain
        own = rec.product_ids.index(pid)
        cosine = rec.vectors @ rec.vectors[own]
        cosine[own] = -torch.inf
        assert [r.product_id for r in plain] == [
            rec.product_ids[i] for i in torch.topk(cosine, 10).indices.tolist()
        ]
    user = rec.model.user_ids[0]
    assert rec.recommend(user, 10, explain=False, diversity=0.0) == rec.recommend(
        user, 10, explain=False
    )


def test_diversity_varies_categories_at_some_cost_in_similarity(rec: Recommender) -> None:
    sources = [pid for pid in rec.product_ids if rec.products[pid].in_catalogue][:60]
    by_level: dict[float, tuple[float, float]] = {}
    for level in (0.0, 0.3, 0.7):
        answers = [rec.related(pid, 10, explain=False, diversity=level) for pid in sources]
        diversity = sum(_category_diversity(rec, [r.product_id for r in a]) for a in answers)
        similarity = sum(r.score for a in answers for r in a)
        by_level[level] = (diversity / len(answers), similarity)
        assert all(len(a) == 10 and len({r.product_id for r in a}) == 10 for a in answers)
    (d0, s0), (d3, s3), (d7, s7) = by_level[0.0], by_level[0.3], by_level[0.7]
    assert d0 < d3 < d7 and d3 > 1.2 * d0
    assert s0 > s3 > s7  # answers carry their relevance, which falls as variety rises
    users = rec.model.user_ids[:20]
    plain = [rec.recommend(u, 10, explain=False) for u in users]
    varied = [rec.recommend(u, 10, explain=False, diversity=0.7) for u in users]
    assert sum(_category_diversity(rec, [r.product_id for r in a]) for a in varied) >= sum(
        _category_diversity(rec, [r.product_id for r in a]) for a in plain
    )


def test_rest_and_cli_take_the_knob(rec: Recommender, monkeypatch, tmp_path) -> None:
    client = TestClient(create_app(rec))
    pid = rec.product_ids[3]
    body = client.get(f"/related/{pid}", params={"k": 5, "diversity": 0.5}).json()
    expected = rec.related(pid, 5, diversity=0.5)
    assert [r["product_id"] for r in body["results"]] == [r.product_id for r in expected]
    assert client.get(f"/related/{pid}", params={"diversity": 1.5}).status_code == 422
    user = rec.model.user_ids[1]
    response = client.get(f"/recommend/{user}", params={"k": 4, "diversity": 0.5})
    assert [r["product_id"] for r in response.json()["results"]] == [
        r.product_id for r in rec.recommend(user, 4, diversity=0.5)
    ]

    write_slice(EmbeddedStore(tmp_path / "graph"))
    monkeypatch.setattr(recommender_module, "read_meta", lambda _dir: {})
    monkeypatch.setattr(recommender_module, "load_query_model", lambda _d, _s: rec.model)
    common = ["--checkpoint", str(tmp_path / "ckpt"), "--store", f"embedded:{tmp_path}/graph"]
    result = CliRunner().invoke(
        app, ["related", pid, "-k", "5", "--diversity", "0.5", "--json", *common]
    )
    assert result.exit_code == 0, result.output
    assert f'"product_id": "{expected[0].product_id}"' in result.output
    assert CliRunner().invoke(app, ["related", pid, "--diversity", "2", *common]).exit_code == 2


def test_batched_is_one_row_at_a_time() -> None:
    g = torch.Generator().manual_seed(0)
    relevance = torch.rand(6, 12, generator=g)
    vectors = F.normalize(torch.randn(6, 12, 4, generator=g), dim=-1)
    distance = 1 - (vectors @ vectors.transpose(1, 2)).clamp(min=0)
    for level in (0.0, 0.3, 1.0):
        batch = diversify_batch(relevance, distance, 5, level)
        assert batch.tolist() == [
            diversify(r, d, 5, level) for r, d in zip(relevance, distance, strict=True)
        ]
    plain = diversify_batch(relevance, distance, 12, 0.0)
    assert plain.tolist() == relevance.argsort(1, descending=True).tolist()
    # A masked candidate (-inf) is never picked while a rankable one is left.
    relevance[:, 0] = -torch.inf
    assert not (diversify_batch(relevance, distance, 11, 0.5) == 0).any()
    assert (diversify_batch(relevance, distance, 12, 0.5)[:, -1] == 0).all()


def test_diversified_scorer_reorders_the_top_k_only() -> None:
    scores = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])
    category = label_sets([["a"], ["a"], ["b"], ["b"], ["c"], ["c"]])
    distance = ProductDistance(torch.eye(6), category)

    class Fixed:
        def full_sort_predict(self, query_idx, stage="test"):
            return scores.expand(len(query_idx), -1)

    candidates = torch.ones(6, dtype=torch.bool)
    exclusions = {0: torch.tensor([1])}  # product 1 is the user's own: never picked
    plain = DiversifiedScorer(Fixed(), distance, 0.0, exclusions, candidates, k=3)
    assert plain.full_sort_predict(torch.tensor([0])).argsort(descending=True)[0, :3].tolist() == [
        0,
        2,
        3,
    ]
    varied = DiversifiedScorer(Fixed(), distance, 0.9, exclusions, candidates, k=3)
    top = varied.full_sort_predict(torch.tensor([0])).argsort(descending=True)[0].tolist()
    assert top[:3] == [0, 2, 4]  # one per category
    assert top[3:] == [1, 3, 5]  # below the lifted three, the old order (the metrics mask 1)


def test_category_distance_is_graded_with_vectors_where_unknown() -> None:
    sets = label_sets([["lips", "makeup"], ["makeup"], ["skin"], [], ["makeup", "lips"]])
    assert sets.tolist() == [[0, 1], [1, -1], [2, -1], [-1, -1], [0, 1]]
    vectors = F.normalize(torch.tensor([[1.0, 0], [1, 1], [0, 1], [1, 0], [-1, 0]]), dim=-1)
    distance = ProductDistance(vectors, sets)
    # Jaccard distance of the category sets; product 3 has none: 1 − clipped cosine.
    h = 1 - 0.5**0.5
    expected = torch.tensor(
        [
            [0, 0.5, 1, 0, 0],
            [0.5, 0, 1, h, 0.5],
            [1, 1, 0, 1, 1],
            [0, h, 1, 0, 1],
            [0, 0.5, 1, 1, 0],
        ]
    )
    assert torch.allclose(distance(torch.tensor([0, 1, 2, 3, 4])), expected, atol=1e-6)
    assert distance(torch.tensor([[0, 1], [2, 4]])).shape == (2, 2, 2)
