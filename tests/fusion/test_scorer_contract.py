"""The scorer contract (PyKEEN-style shared cases): popularity, text-only, LightGCN and the fused
model all give `[B, num_products]` float scores, the same scores when fitted twice under a seed,
honour the stage, and depend on the training data only. The metrics agree with PyG's.

Every fit is one epoch, so no scorer picks an epoch by its validation metric: validation
targets may then not move a score either, except through the test-stage history."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable

import pytest
import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.metrics import LinkPredHitRatio, LinkPredMRR, LinkPredNDCG, LinkPredRecall

from fusion.config import FusedConfig, TrainConfig
from fusion.data.splits import INTERACTED, Split, recommend_split, related_split, rev
from fusion.evaluation.metrics import ranking_metrics
from fusion.model.baselines import LightGCNScorer, PopularityScorer, TextScorer
from fusion.model.fused import FusedModel
from fusion.training.loop import fit, seed_everything

TASKS = ("recommend", "related")
RELATION = "bought_together"


def _fused(split: Split, text: Tensor) -> FusedModel:
    seed_everything(0)  # the initial weights follow the seed, as in `fusion.pipeline.train`
    # One epoch and a fixed popularity penalty: nothing chosen on the validation targets (as
    # early stopping and the penalty's choice do), so the valid stage reads the training data only.
    config = FusedConfig(task=_task(split), dim=16, popularity_penalty=0.3)
    model = FusedModel(split.train_graph, text, config)
    fit(model, split, TrainConfig(epochs=1, batch_size=4096, lr=1e-2, device="cpu"))
    return model


# name → (fit a scorer on a split given text vectors, does it read per-query histories?)
SCORERS: dict[str, tuple[Callable[[Split, Tensor], object], bool]] = {
    "popularity": (lambda split, text: PopularityScorer().fit(split), False),
    "text-only": (lambda split, text: TextScorer(text).fit(split), True),
    "lightgcn": (
        lambda split, text: LightGCNScorer(embedding_dim=16, num_layers=2, epochs=1).fit(split),
        False,
    ),
    "fused": (_fused, True),
}


def _task(split: Split) -> str:
    return "recommend" if split.task == "recommend" else "related"


def _text(data: HeteroData) -> Tensor:
    n = data["product"].num_nodes
    return torch.randn(n, 32, generator=torch.Generator().manual_seed(0))


def _split(data: HeteroData, task: str) -> Split:
    return recommend_split(data) if task == "recommend" else related_split(data, RELATION)


@pytest.fixture(scope="module")
def fitted(beauty) -> Callable[[str, str], tuple[Split, object]]:
    """(split, scorer fitted on it) per scorer and task, each fitted once per module."""
    done: dict[tuple[str, str], tuple[Split, object]] = {}

    def get(name: str, task: str) -> tuple[Split, object]:
        if (name, task) not in done:
            split = _split(beauty, task)
            done[name, task] = split, SCORERS[name][0](split, _text(beauty))
        return done[name, task]

    return get


def _scores(scorer, split: Split, stage: str) -> Tensor:
    return scorer.full_sort_predict(split.queries("test")[:64], stage)


def _same(a: Tensor, b: Tensor) -> bool:
    return torch.allclose(a, b, rtol=0, atol=1e-5)  # up to float summation order


def _replace_interactions(data: HeteroData, from_end: int) -> HeteroData:
    """`data` with each user's `from_end`-th last interaction (1 = the test one, 2 = the
    validation one; users with ≥ 3) moved to another product the user never touched, same ts."""
    store = data[INTERACTED]
    users, items = store.edge_index.clone()
    order = torch.argsort(store.ts, stable=True)
    order = order[torch.argsort(users[order], stable=True)]  # by (user, ts), as the split
    num_products = data["product"].num_nodes
    per_user: dict[int, list[int]] = {}
    for edge in order.tolist():
        per_user.setdefault(int(users[edge]), []).append(edge)
    for edges in per_user.values():
        if len(edges) < 3:
            continue
        seen = {int(items[e]) for e in edges}
        edge, other = edges[-from_end], int(items[edges[-from_end]])
        while other in seen or not data["product"].in_catalogue[other]:
            other = (other + 7919) % num_products
        items[edge] = other
    out = copy.copy(data)
    keys = users * num_products + items
    perm = torch.argsort(keys, stable=True)  # the contract: edges sorted by (src, dst)
    out[INTERACTED].edge_index = torch.stack([users, items])[:, perm]
    rperm = torch.argsort(items * data["user"].num_nodes + users, stable=True)
    out[rev(INTERACTED)].edge_index = torch.stack([items, users])[:, rperm]
    for key in ("ts", "rating", "kind"):
        out[INTERACTED][key], out[rev(INTERACTED)][key] = store[key][perm], store[key][rperm]
    return out


@pytest.fixture(scope="module", params=list(SCORERS))
def scorer_name(request) -> str:
    return request.param


@pytest.mark.parametrize("task", TASKS)
def test_scores_are_batch_by_products(beauty, fitted, scorer_name, task):
    split, scorer = fitted(scorer_name, task)
    for stage in ("valid", "test"):
        queries = split.queries(stage)[:37]
        scores = scorer.full_sort_predict(queries, stage)
        assert scores.shape == (37, beauty["product"].num_nodes)
        assert scores.dtype == torch.float32 and bool(torch.isfinite(scores).all())


@pytest.mark.parametrize("task", TASKS)
def test_a_seed_gives_the_same_scores(beauty, fitted, scorer_name, task):
    split, scorer = fitted(scorer_name, task)
    again = SCORERS[scorer_name][0](split, _text(beauty))
    for stage in ("valid", "test"):
        assert _same(_scores(scorer, split, stage), _scores(again, split, stage))


def test_the_stage_is_honoured(beauty, fitted, scorer_name):
    """Recommendations: at test time the validation item joins the history, so a scorer that
    reads histories scores differently by stage and follows the validation item; one that
    does not scores alike. Related items have no per-query history: stages score alike."""
    fitter, reads_history = SCORERS[scorer_name]
    split, scorer = fitted(scorer_name, "recommend")
    valid, test = _scores(scorer, split, "valid"), _scores(scorer, split, "test")
    assert _same(valid, test) != reads_history

    moved = _split(_replace_interactions(beauty, from_end=2), "recommend")
    assert torch.equal(moved.train_edges, split.train_edges)
    assert any(not torch.equal(moved.valid[u], split.valid[u]) for u in split.valid)
    other = fitter(moved, _text(beauty))
    assert _same(_scores(other, moved, "valid"), valid)
    assert _same(_scores(other, moved, "test"), test) != reads_history

    related, scorer = fitted(scorer_name, "related")
    assert _same(_scores(scorer, related, "valid"), _scores(scorer, related, "test"))


@pytest.mark.parametrize("task", TASKS)
def test_scores_depend_on_the_training_data_only(beauty, fitted, scorer_name, task):
    """Other test targets (recommend: each user's last item moved to another product in the
    full data; related: the split's test targets redrawn) leave every score unchanged."""
    fitter = SCORERS[scorer_name][0]
    split, scorer = fitted(scorer_name, task)
    if task == "recommend":
        moved = _split(_replace_interactions(beauty, from_end=1), task)
    else:
        gen = torch.Generator().manual_seed(1)
        redrawn = {
            q: torch.randint(split.num_products, t.shape, generator=gen)
            for q, t in split.test.items()
        }
        moved = dataclasses.replace(
            split, targets_by_stage={**split.targets_by_stage, "test": redrawn}
        )
    assert torch.equal(moved.train_edges, split.train_edges)
    assert any(not torch.equal(moved.test[q], split.test[q]) for q in split.test)
    other = fitter(moved, _text(beauty))
    for stage in ("valid", "test"):
        assert _same(_scores(other, moved, stage), _scores(scorer, split, stage))


def test_metrics_agree_with_pyg():
    """Tie-free random scores, up to 5 targets per query (so recall's min(|targets|, K) is
    |targets|, PyG's denominator), exclusions and non-candidates ranked last."""
    gen = torch.Generator().manual_seed(0)
    batch, num_items = 64, 300
    scores = torch.stack([torch.randperm(num_items, generator=gen) for _ in range(batch)]).float()
    candidates = torch.rand(num_items, generator=gen) > 0.1
    targets, exclusions = [], []
    for _ in range(batch):
        perm = torch.randperm(num_items, generator=gen)
        n = int(torch.randint(1, 6, (1,), generator=gen))
        targets.append(perm[:n].sort().values)
        exclusions.append(perm[n : n + 20].sort().values)
    ours = ranking_metrics(scores, targets, exclusions, ks=(10, 20), candidates=candidates)

    masked = scores.clone()
    for row, (t, e) in enumerate(zip(targets, exclusions, strict=True)):
        hidden = torch.zeros(num_items, dtype=torch.bool)
        hidden[e] = True
        hidden |= ~candidates
        hidden[t] = False  # targets are never masked
        masked[row, hidden] = -1.0  # below every real score, ties among them do not matter
    ranking = masked.argsort(dim=1, descending=True)
    label_index = torch.stack(
        [
            torch.repeat_interleave(torch.arange(batch), torch.tensor([len(t) for t in targets])),
            torch.cat(targets),
        ]
    )
    for k in (10, 20):
        for name, metric in (
            (f"ndcg@{k}", LinkPredNDCG(k)),
            (f"recall@{k}", LinkPredRecall(k)),
            (f"hr@{k}", LinkPredHitRatio(k)),
        ):
            metric.update(ranking[:, :k], label_index)
            assert ours[name].mean().item() == pytest.approx(metric.compute().item(), abs=1e-6)
    mrr = LinkPredMRR(num_items)  # our MRR is over the full ranking
    mrr.update(ranking, label_index)
    assert ours["mrr"].mean().item() == pytest.approx(mrr.compute().item(), abs=1e-6)
    assert 0 < ours["hr@20"].mean() < 1  # the case is not degenerate
