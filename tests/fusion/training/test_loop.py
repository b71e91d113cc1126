"""Training: it learns on a real slice, never sees held-out edges, is seeded, resolves devices;
warm starts train on the new targets plus a replay sample only."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from fusion.config import FusedConfig, TrainConfig
from fusion.data.replay import trained_pairs
from fusion.data.splits import INTERACTED, PAIR_SHIFT, recommend_split, related_split
from fusion.model.fused import FusedModel
from fusion.training.device import autocast, resolve_device
from fusion.training.loop import PENALTIES, fit, validate
from fusion.training.tasks import RecommendTask, RelatedTask

FAST = {"epochs": 3, "batch_size": 4096, "lr": 1e-2, "patience": 3, "device": "cpu"}


def make(split, task: str, **kw) -> FusedModel:
    n = split.num_products
    text = torch.randn(n, 32, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    return FusedModel(split.train_graph, text, FusedConfig(task=task, dim=16, **kw))


@pytest.mark.slow
def test_training_improves_the_validation_metric(beauty):
    split = related_split(beauty, "also_viewed")
    model = make(split, "related").eval()
    queries = split.sample_queries("valid", 10_000)
    before = validate(model, split, queries, "recall@20")
    result = fit(model, split, TrainConfig(**{**FAST, "epochs": 4, "batch_size": 2048}))
    assert result.best > 1.5 * before
    assert validate(model, split, queries, "recall@20") == result.best  # best weights kept
    assert result.peak_memory_mb > 0 and len(result.history) == result.epochs


def test_recommendation_training_is_seeded(beauty):
    split = recommend_split(beauty)
    users = split.queries("test")[:50]
    runs = []
    for _ in range(2):
        model = make(split, "recommend")
        fit(model, split, TrainConfig(**{**FAST, "epochs": 1}))
        runs.append(model.full_sort_predict(users))
    assert torch.equal(*runs)


def test_no_epoch_starts_that_would_overrun_the_time_budget(beauty):
    split = related_split(beauty, "bought_together")
    result = fit(make(split, "related"), split, TrainConfig(**{**FAST, "max_minutes": 1e-6}))
    assert result.epochs == 1 and len(result.history) == 1 and result.stopped_by == "time budget"


def pairs(edge_index: torch.Tensor) -> set[int]:
    return set((edge_index[0] * PAIR_SHIFT + edge_index[1]).tolist())


def test_fit_never_sees_held_out_edges(beauty):
    split = related_split(beauty, "also_viewed")
    held = {
        s * PAIR_SHIFT + t
        for stage in ("valid", "test")
        for s, ts in split.targets(stage).items()
        for t in ts.tolist()
    }
    held |= {t * PAIR_SHIFT + s for s_t in list(held) for s, t in [divmod(s_t, PAIR_SHIFT)]}
    model = make(split, "related")
    seen: list[dict] = []
    original = model.calculate_loss
    model.calculate_loss = lambda batch: seen.append(batch) or original(batch)
    fit(model, split, TrainConfig(**{**FAST, "epochs": 1}))
    for et in (("product", "also_viewed", "product"), ("product", "rev_also_viewed", "product")):
        assert not pairs(model.edges[et]) & held  # stored message-passing graph
        for batch in seen:  # and every graph a training step was scored on
            assert not pairs(batch["edges"][et]) & held
    targets = {
        s * PAIR_SHIFT + t
        for b in seen
        for s, t in zip(b["query"].tolist(), b["target"].tolist(), strict=True)
    }
    assert targets and not targets & held


def test_recommend_fit_never_sees_held_out_interactions(beauty):
    split = recommend_split(beauty)
    held = {
        u * PAIR_SHIFT + t
        for stage in ("valid", "test")
        for u, ts in split.targets(stage).items()
        for t in ts.tolist()
    }
    model = make(split, "recommend", use_interactions=True)
    assert not pairs(model.edges[("user", "interacted", "product")]) & held
    assert not pairs(model.edges[("product", "rev_interacted", "user")].flip(0)) & held


def test_device_resolution():
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with autocast(torch.device("cpu")):
        assert not torch.is_autocast_enabled()


def test_warm_start_trains_on_the_window_and_a_replay_sample(beauty):
    split = recommend_split(beauty)
    users, products = split.train_graph["user"].node_id, split.train_graph["product"].node_id
    # A checkpoint trained before each user's latest training item: those items are the window.
    history = split.history("valid")
    trained = {users[u]: [products[p] for p in seq[:-1].tolist()] for u, seq in history.items()}
    window = {(u, seq[-1].item()) for u, seq in history.items() if len(seq) > 1}
    model = make(split, "recommend")
    task = RecommendTask(model, split, trained, TrainConfig(replay_ratio=0.5))
    assert task.window == len(window) and len(task) == len(window) + round(0.5 * len(window))
    pairs = list(zip(task.users.tolist(), task.targets.tolist(), strict=True))
    assert {pairs[r] for r in task.rows.fresh.tolist()} == window
    # Prefixes stay whole: a window target is predicted from the user's every earlier item.
    row = task.rows.fresh[0].item()
    prefix = task.prefixes[row]
    u = task.users[row].item()
    assert prefix[prefix >= 0].tolist() == history[u][:-1][-model.config.max_history :].tolist()

    epochs: list[list[int]] = []  # each epoch's targets; an epoch starts by propagating
    propagate, loss = model.propagate, model.calculate_loss
    model.propagate = lambda edges=None: (
        (edges is not None and epochs.append([])) or propagate(edges)
    )
    model.calculate_loss = lambda batch: epochs[-1].extend(batch["target"].tolist()) or loss(batch)
    config = TrainConfig(**{**FAST, "epochs": 2, "replay_ratio": 0.5})
    result = fit(model, split, config, trained)
    assert (result.window, result.targets) == (len(window), len(task))
    assert len(epochs) == 2 and all(len(e) == len(task) for e in epochs)
    window_targets = sorted(p for _, p in window)
    for targets in epochs:  # every epoch: the whole window, and a fresh replay draw
        rest = list(targets)
        for p in window_targets:
            rest.remove(p)  # raises if a window target is missing
    assert sorted(epochs[0]) != sorted(epochs[1])


def test_related_warm_start_trains_on_new_edges_and_replay(beauty):
    split = related_split(beauty, "also_viewed")
    products = split.train_graph["product"].node_id
    edges = split.train_edges.t().tolist()
    trained: dict[str, list[str]] = {}
    for s, t in edges[: len(edges) * 9 // 10]:
        trained.setdefault(products[s], []).append(products[t])
    task = RelatedTask(make(split, "related"), split, trained, TrainConfig(replay_ratio=1.0))
    fresh = {tuple(e) for e in edges[len(edges) * 9 // 10 :]}
    drawn = task.pairs[:, task.rows.draw(torch.Generator().manual_seed(0))]
    rows = {tuple(e) for e in drawn.t().tolist()}
    assert task.window == len(fresh) and fresh <= rows and len(rows) == 2 * len(fresh)


def test_warm_start_resumes_the_optimizer(beauty):
    split = related_split(beauty, "bought_together")
    model = make(split, "related")
    steps: list[int] = []
    loss = model.calculate_loss
    model.calculate_loss = lambda batch: steps.append(1) or loss(batch)
    config = TrainConfig(**{**FAST, "epochs": 1})
    first = fit(model, split, config)
    cold_steps = len(steps)
    products = split.train_graph["product"].node_id
    trained: dict[str, list[str]] = {}
    for s, t in split.train_edges[:, ::2].t().tolist():  # half the edges were trained on
        trained.setdefault(products[s], []).append(products[t])
    second = fit(model.train(), split, config, trained, first.optimizer_state)
    # Adam's step counts go on from where the first run's best epoch left them.
    counts = {state["step"].item() for state in second.optimizer_state["state"].values()}
    assert counts == {len(steps)} and len(steps) > cold_steps
    assert "optimizer_state" not in second.to_dict()


def test_warm_start_with_nothing_new_is_refused(beauty):
    split = related_split(beauty, "bought_together")
    with pytest.raises(ValueError, match="nothing new"):
        fit(make(split, "related"), split, TrainConfig(**FAST), trained_pairs(split))


def test_the_popularity_penalty_is_chosen_on_validation_and_applied(beauty):
    split = recommend_split(beauty)
    model = make(split, "recommend")
    fit(model, split, TrainConfig(**{**FAST, "epochs": 1}))
    chosen = model.config.popularity_penalty
    assert chosen in PENALTIES
    queries = split.sample_queries("valid", TrainConfig().valid_queries, 0)
    scores = {}
    for penalty in PENALTIES:
        model.config = replace(model.config, popularity_penalty=penalty)
        scores[penalty] = validate(model, split, queries, "ndcg@10")
    assert scores[chosen] == max(scores.values())
    users = split.queries("test")[:20]
    model.config = replace(model.config, popularity_penalty=0.0)
    plain = model.full_sort_predict(users)
    model.config = replace(model.config, popularity_penalty=0.5)
    popularity = torch.bincount(
        split.train_graph[INTERACTED].edge_index[1], minlength=plain.shape[1]
    )
    assert torch.allclose(
        model.full_sort_predict(users), plain - 0.5 * torch.log1p(popularity.float())
    )

    fixed = make(split, "recommend", popularity_penalty=0.0)
    fit(fixed, split, TrainConfig(**{**FAST, "epochs": 1}))
    assert fixed.config.popularity_penalty == 0.0  # a fixed value is not re-chosen
