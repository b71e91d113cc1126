"""FusedModel: the scorer contract's shapes, determinism, inductive products, text residual."""

from __future__ import annotations

import pytest
import torch

from fusion.config import FusedConfig
from fusion.data.histories import history_matrix
from fusion.data.splits import recommend_split
from fusion.model.fused import FusedModel


def text_for(data, dim: int = 32, seed: int = 0) -> torch.Tensor:
    n = data["product"].num_nodes
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def build(data, task: str, seed: int = 0, **kw) -> FusedModel:
    torch.manual_seed(seed)
    return FusedModel(data, text_for(data), FusedConfig(task=task, dim=16, **kw)).eval()


def test_recommend_full_sort_predict_shape_and_stage(beauty):
    split = recommend_split(beauty)
    model = build(split.train_graph, "recommend")
    users = split.queries("test")[:7]
    num_users = beauty["user"].num_nodes
    model.use_histories(
        {s: history_matrix(split.history(s), num_users, 20) for s in ("valid", "test")}
    )
    test, valid = model.full_sort_predict(users), model.full_sort_predict(users, stage="valid")
    assert test.shape == (7, beauty["product"].num_nodes) and test.dtype == torch.float32
    assert not torch.equal(test, valid)  # the test stage also sees the validation item


def test_recommend_needs_histories(beauty):
    with pytest.raises(RuntimeError, match="histories"):
        build(beauty, "recommend").full_sort_predict(torch.tensor([0]))


def test_related_shape_and_seed_determinism(beauty):
    query = torch.tensor([0, 5, 9])
    a = build(beauty, "related", seed=1).full_sort_predict(query)
    b = build(beauty, "related", seed=1).full_sort_predict(query)
    assert a.shape == (3, beauty["product"].num_nodes)
    assert torch.equal(a, b)


def test_a_product_without_edges_is_embedded_from_its_text(beauty):
    model = build(beauty, "related", item_id_embedding=False)
    isolated = {
        et: ei[:, (ei[0] != 0) & (ei[1] != 0)] if "product" in (et[0], et[2]) else ei
        for et, ei in model.edges.items()
    }
    with torch.no_grad():
        items = model.item_embeddings(isolated)
        model.text[0] = model.text[1]  # another text -> another embedding
        moved = model.item_embeddings(isolated)
    assert torch.isfinite(items[0]).all()
    assert not torch.allclose(items[0], moved[0])


def test_related_score_keeps_the_text_cosine(beauty):
    """With the learned part silenced the ranking is exactly text-only."""
    model = build(beauty, "related", item_id_embedding=False)
    with torch.no_grad():
        model.fusion.text.weight.zero_()
        model.fusion.text.bias.zero_()
        model.fusion.gate.bias.fill_(50.0)  # gate -> 1: the (zero) text path only
    scores = model.full_sort_predict(torch.tensor([3]))
    assert torch.allclose(scores, model.text_scale * model.text[[3]] @ model.text.T, atol=1e-5)


def test_config_and_inputs_are_checked(beauty):
    with pytest.raises(ValueError, match="task"):
        FusedConfig(task="ranking")
    with pytest.raises(ValueError, match="text vectors"):
        FusedModel(beauty, torch.randn(3, 8), FusedConfig())


@pytest.mark.parametrize("num_negatives", [0, 64])
def test_loss_full_and_sampled_softmax(beauty, num_negatives):
    model = build(beauty, "related", num_negatives=num_negatives).train()
    batch = {"query": torch.tensor([0, 1, 2]), "target": torch.tensor([3, 4, 5])}
    loss = model.calculate_loss(batch)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert model.fusion.gate.weight.grad is not None


@pytest.mark.parametrize("task", ["related", "recommend"])
def test_sampled_loss_embeds_only_the_batch_rows_and_matches_the_full_computation(beauty, task):
    """The O(batch) sampled step must give the loss the all-products computation gives."""
    model = build(beauty, task, num_negatives=32)  # eval: dropout off, so both are exact
    query = torch.tensor([[-1, 4, 7], [2, 2, 9]]) if task == "recommend" else torch.tensor([0, 8])
    batch = {"query": query, "target": torch.tensor([3, 5])}
    torch.manual_seed(7)
    sampled = model.calculate_loss(batch)
    torch.manual_seed(7)  # the same random negatives, scored against every product's row
    rand = torch.randint(0, beauty["product"].num_nodes, (32,))
    cand, label = torch.unique(torch.cat([batch["target"], rand]), return_inverse=True)
    full = torch.nn.functional.cross_entropy(
        model.scores(model.item_embeddings(), query, cand), label[:2]
    )
    assert torch.allclose(sampled, full, atol=1e-5)
    rows = torch.tensor([9, 0, 4])
    assert torch.allclose(model.item_embeddings(index=rows), model.item_embeddings()[rows])
