from __future__ import annotations

import math

import pytest
import torch

from fusion.evaluation.metrics import ranking_metrics, target_positions


def _metrics(scores, targets, exclusions=None, ks=(1, 2, 3), candidates=None):
    targets = [torch.tensor(t) for t in targets]
    exclusions = [torch.tensor(e, dtype=torch.long) for e in exclusions or [[]] * len(targets)]
    out = ranking_metrics(torch.tensor(scores), targets, exclusions, ks, candidates)
    return {name: value.tolist() for name, value in out.items()}


def test_single_target_with_exclusion() -> None:
    # Item 0 is excluded, so the ranking is 3 (.7), 2 (.5), 4 (.3), 1 (.1): target 2 is 2nd.
    m = _metrics([[0.9, 0.1, 0.5, 0.7, 0.3]], [[2]], [[0]])
    assert m["recall@1"] == m["hr@1"] == m["ndcg@1"] == [0.0]
    assert m["recall@2"] == m["hr@2"] == [1.0]
    assert m["ndcg@2"] == pytest.approx([1 / math.log2(3)])
    assert m["mrr"] == [0.5]


def test_several_targets() -> None:
    # Ranking 3, 1, 4, 2, 5, 0: the targets 1, 2, 5 sit at positions 2, 4, 5.
    m = _metrics([[0.1, 0.8, 0.3, 0.9, 0.5, 0.2]], [[1, 2, 5]], ks=(1, 3, 5))
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)  # min(3 targets, K) ideal hits
    assert m["recall@1"] == m["hr@1"] == [0.0]
    assert m["recall@3"] == pytest.approx([1 / 3])
    assert m["hr@3"] == [1.0]
    assert m["ndcg@3"] == pytest.approx([(1 / math.log2(3)) / idcg])
    assert m["recall@5"] == [1.0]
    dcg = 1 / math.log2(3) + 1 / math.log2(5) + 1 / math.log2(6)
    assert m["ndcg@5"] == pytest.approx([dcg / idcg])
    assert m["mrr"] == [0.5]


def test_recall_denominator_is_min_of_targets_and_k() -> None:
    m = _metrics([[0.0, 0.5, 0.2, 0.9]], [[1, 3]], ks=(1, 2))
    assert m["recall@1"] == m["ndcg@1"] == [1.0]  # one slot, one hit: 1 / min(2, 1)
    assert m["recall@2"] == m["ndcg@2"] == [1.0]


def test_ties_are_pessimistic() -> None:
    # A constant scorer ranks its target last, not first by index.
    m = _metrics([[0.0, 0.0, 0.0, 0.0]], [[0]], ks=(3,))
    assert m["hr@3"] == [0.0]
    assert m["mrr"] == [0.25]
    # Tied targets go after tied non-targets, and among themselves by index: 1, 0, 2, 3.
    m = _metrics([[1.0, 1.0, 1.0, 0.0]], [[0, 2]], ks=(2, 3))
    assert m["recall@2"] == [0.5]
    assert m["ndcg@3"] == pytest.approx(
        [(1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3))]
    )
    assert m["mrr"] == [0.5]


def test_targets_are_never_masked_and_candidates_are() -> None:
    m = _metrics([[0.9, 0.8, 0.1]], [[0]], [[0, 1]])
    assert m["mrr"] == [1.0]
    # Item 1 is no candidate (an out-of-catalogue stub): the target 3 moves up to 2nd.
    candidates = torch.tensor([True, False, True, True])
    m = _metrics([[0.1, 0.9, 0.5, 0.2]], [[3]], candidates=candidates)
    assert m["mrr"] == [0.5]


def test_rows_are_independent() -> None:
    m = _metrics([[0.9, 0.1, 0.5], [0.9, 0.1, 0.5]], [[0], [1]], [[], [0]], ks=(1,))
    assert m["hr@1"] == [1.0, 0.0]
    assert m["mrr"] == [1.0, 0.5]


def test_nan_scores_rank_last() -> None:
    m = _metrics([[float("nan"), 0.1, 0.2]], [[0]])
    assert m["mrr"] == [pytest.approx(1 / 3)]


def test_query_without_targets_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one target"):
        _metrics([[0.1, 0.2]], [[]])


def _positions_by_sorting(scores, targets, exclusions, candidates):
    """Reference: sort each row by (score desc, target after non-target, index) in Python."""
    out = []
    for i, row in enumerate(scores.tolist()):
        tgt, excl = set(targets[i].tolist()), set(exclusions[i].tolist())
        masked = {j for j in excl if j not in tgt}
        if candidates is not None:
            masked |= {j for j, c in enumerate(candidates.tolist()) if not c and j not in tgt}
        key = [-math.inf if (j in masked or math.isnan(s)) else s for j, s in enumerate(row)]
        order = sorted(range(len(row)), key=lambda j: (-key[j], j in tgt, j))
        out += [(i, order.index(t)) for t in sorted(tgt)]
    return out


def test_positions_match_sorting_with_ties_nans_exclusions_and_candidates() -> None:
    gen = torch.Generator().manual_seed(0)
    for trial in range(100):
        batch, n = 1 + trial % 5, 2 + trial % 23
        scores = torch.randint(0, 4, (batch, n), generator=gen).float()  # many ties
        scores[torch.rand(batch, n, generator=gen) < 0.1] = float("nan")
        targets = [torch.randperm(n, generator=gen)[: 1 + trial % min(n, 6)] for _ in range(batch)]
        exclusions = [
            torch.randperm(n, generator=gen)[: trial % (n // 2 + 1)] for _ in range(batch)
        ]
        candidates = torch.rand(n, generator=gen) < 0.8 if trial % 2 else None
        row, pos = target_positions(scores, targets, exclusions, candidates)
        expected = _positions_by_sorting(scores, targets, exclusions, candidates)
        assert list(zip(row.tolist(), pos.tolist(), strict=True)) == expected
