"""Bounded training: the time cap is checked every step, SIGTERM asks for the same graceful end,
propagated features follow the memory budget (float16 and memory-mapped ranking like float32),
and sampled softmax takes over on large catalogues."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from fusion.config import AUTO_NEGATIVES, FULL_SOFTMAX_MAX_PRODUCTS, FusedConfig, TrainConfig
from fusion.data.splits import related_split
from fusion.evaluation.harness import evaluate_scorer
from fusion.model.features import GIB, feature_matrix
from fusion.model.fused import FusedModel
from fusion.training.loop import fit, validate
from fusion.training.tasks import RelatedTask

FAST = {"epochs": 3, "batch_size": 4096, "lr": 1e-2, "patience": 3, "device": "cpu"}


def make(split, **kw) -> FusedModel:
    text = torch.randn(split.num_products, 32, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    return FusedModel(split.train_graph, text, FusedConfig(task="related", dim=16, **kw))


def count_steps(model: FusedModel, on_step=None) -> list[int]:
    steps: list[int] = []
    loss = model.calculate_loss

    def counted(batch):
        steps.append(1)
        if on_step:
            on_step(len(steps))
        return loss(batch)

    model.calculate_loss = counted
    return steps


def test_time_cap_ends_the_run_mid_epoch_and_keeps_the_validated_weights(beauty):
    split = related_split(beauty, "also_viewed")
    model = make(split)
    steps = count_steps(model)
    config = TrainConfig(**{**FAST, "batch_size": 16, "max_minutes": 0.05})  # 3 s
    per_epoch = RelatedTask(model, split, None, config).num_steps(config.batch_size)
    result = fit(model, split, config)
    assert result.stopped_by == "time budget" and result.epochs == 1
    assert 0 < len(steps) < per_epoch  # the first epoch was cut short
    assert result.seconds < 60 * config.max_minutes + 60
    # The cut epoch was validated once and its weights are the ones kept.
    assert result.best_epoch == 1 and len(result.history) == 1
    queries = split.sample_queries("valid", config.valid_queries, config.seed)
    assert validate(model, split, queries, result.metric) == result.best


def test_sigterm_finishes_the_step_validates_and_stops(beauty):
    split = related_split(beauty, "bought_together")
    model = make(split)
    before = signal.getsignal(signal.SIGTERM)
    # The signal arrives during the third step; training must not die of it.
    steps = count_steps(model, lambda n: n == 3 and os.kill(os.getpid(), signal.SIGTERM))
    result = fit(model, split, TrainConfig(**{**FAST, "batch_size": 8, "epochs": 30}))
    assert result.stopped_by == "interrupted by SIGTERM"
    assert len(steps) == 3 and result.best_epoch == 1 and len(result.history) == 1
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is removed afterwards


def test_a_stop_inside_propagation_abandons_it_without_another_step(beauty):
    split = related_split(beauty, "bought_together")
    model = make(split)
    steps = count_steps(model)
    seen: list[str] = []

    def progress(step: str, done: int, total: int) -> None:
        # The signal comes in epoch 2's first propagation, after epoch 1 was validated.
        if step == "propagating" and "validating" in seen and "signal" not in seen:
            seen.append("signal")
            os.kill(os.getpid(), signal.SIGTERM)
        seen.append(step)

    result = fit(model, split, TrainConfig(**{**FAST, "epochs": 30}), progress=progress)
    assert result.stopped_by == "interrupted by SIGTERM"
    assert len(result.history) == 1 and result.best_epoch == 1
    after = seen[seen.index("signal") :]
    assert "epoch" not in after and "validating" not in after  # no step, no second validation
    assert len(steps) == result.history[0]["steps"]


def test_progress_reports_propagation_epochs_and_validation(beauty):
    split = related_split(beauty, "bought_together")
    seen: dict[str, list[tuple[int, int]]] = {}
    fit(
        make(split),
        split,
        TrainConfig(**{**FAST, "epochs": 1}),
        progress=lambda s, d, t: seen.setdefault(s, []).append((d, t)),
    )
    assert set(seen) == {"propagating", "epoch", "validating"}
    for reports in seen.values():
        assert reports[-1][0] == reports[-1][1]  # each ran to completion
    assert [d for d, _ in seen["epoch"]] == list(range(1, len(seen["epoch"]) + 1))


def test_feature_storage_follows_the_memory_budget():
    cpu = torch.device("cpu")
    assert feature_matrix(1000, 100, 1.0, cpu).dtype == torch.float32
    half = 1000 * 100 * 3 / GIB  # fits float16 (2 B), not float32 (4 B)
    assert feature_matrix(1000, 100, half, cpu).dtype == torch.float16
    mapped = feature_matrix(1000, 100, 1000 / GIB, cpu)
    assert mapped.dtype == torch.float16 and mapped.untyped_storage().filename is not None
    mapped[:] = 0.5
    assert mapped.float().mean().item() == 0.5


def test_float16_and_memory_mapped_features_rank_like_float32(beauty):
    """The same training in three precisions: the Beauty slice's test metrics agree within
    0.01 (float16 keeps ~3 significant digits of features that are means of unit vectors)."""
    split = related_split(beauty, "also_viewed")
    size = split.num_products * (1 + len(make(split).metapaths)) * 32  # elements
    budgets = {"float32": 1.0, "float16": 3 * size / GIB, "mapped": size / GIB}
    metrics = {}
    for name, budget in budgets.items():
        model = make(split, memory_budget=budget)
        fit(model, split, TrainConfig(**{**FAST, "epochs": 1}))
        assert model.propagate().dtype == (torch.float32 if name == "float32" else torch.float16)
        metrics[name] = evaluate_scorer(model, split, "test")
    for name in ("float16", "mapped"):
        for metric in ("recall@20", "ndcg@10"):
            assert metrics[name][metric] == pytest.approx(metrics["float32"][metric], abs=0.01)
    assert metrics["float16"] == metrics["mapped"]  # the same numbers, only stored elsewhere


def test_sampled_softmax_is_chosen_above_the_product_threshold():
    config = FusedConfig(task="related")
    assert config.negatives(FULL_SOFTMAX_MAX_PRODUCTS) == 0
    assert config.negatives(FULL_SOFTMAX_MAX_PRODUCTS + 1) == AUTO_NEGATIVES
    assert FusedConfig(task="related", num_negatives=0).negatives(10**7) == 0
    with pytest.raises(ValueError, match="num_negatives"):
        FusedConfig(num_negatives=-2)
