"""Ranking metrics against hand-computed cases."""
import math

import pytest
import torch

from lightning_modules.seqrec.metrics import ranking_metrics, target_rank


def test_rank_counts_items_scoring_at_least_the_target():
    scores = torch.tensor([[0.0, 0.9, 0.5, 0.7, 0.1]])  # column 0 is padding
    assert target_rank(scores, torch.tensor([3])).item() == 2  # only item 1 beats 0.7
    assert target_rank(scores, torch.tensor([1])).item() == 1


def test_ties_count_against_the_target():
    scores = torch.tensor([[0.0, 0.5, 0.5, 0.5, 0.1]])
    assert target_rank(scores, torch.tensor([2])).item() == 3  # tied with items 1 and 3
    constant = torch.zeros(1, 6)
    assert target_rank(constant, torch.tensor([4])).item() == 6  # a constant model earns the worst rank


def test_excluded_items_are_not_candidates_but_the_target_always_is():
    scores = torch.tensor([[9.0, 0.9, 0.5, 0.7, 0.1]])
    exclude = torch.tensor([[True, True, False, True, False]])  # padding + history items 1 and 3 (the target)
    assert target_rank(scores, torch.tensor([3]), exclude).item() == 1
    assert target_rank(scores, torch.tensor([2]), exclude).item() == 1
    assert target_rank(scores, torch.tensor([4]), exclude).item() == 2


def test_metric_values_by_hand():
    rank = torch.tensor([1, 3, 11])
    m = ranking_metrics(rank, [10])
    assert m["hr@10"].tolist() == [1.0, 1.0, 0.0]
    assert torch.allclose(m["ndcg@10"], torch.tensor([1.0, 1 / math.log2(4), 0.0]))
    assert torch.allclose(m["mrr@10"], torch.tensor([1.0, 1 / 3, 0.0]))
    assert torch.allclose(m["mrr"], torch.tensor([1.0, 1 / 3, 1 / 11]))


def test_k_larger_than_the_catalogue_counts_every_rank_as_a_hit():
    scores = torch.tensor([[0.0, 0.1, 0.2, 0.3]])  # 3 real items
    rank = target_rank(scores, torch.tensor([1]), torch.tensor([[True, False, False, False]]))
    assert rank.item() == 3
    m = ranking_metrics(rank, [50])
    assert m["hr@50"].item() == 1.0
    assert math.isclose(m["ndcg@50"].item(), 1 / math.log2(4), rel_tol=1e-6)


def test_a_nan_scoring_model_ranks_last_in_every_ranking_metric():
    """A model whose scores are all NaN earns the worst rank (the number of candidates), so HR, NDCG and MRR at
    every k below the catalogue size are 0 and the untruncated MRR is 1 / candidates, never 1."""
    num_items, ks = 50, [1, 5, 10, 20]
    scores = torch.full((4, num_items + 1), float("nan"))
    exclude = torch.zeros(4, num_items + 1, dtype=torch.bool)
    exclude[:, 0] = True  # padding
    exclude[1, 10:20] = True  # a filtered history: 10 fewer candidates
    rank = target_rank(scores, torch.tensor([1, 5, 25, 50]), exclude)
    assert rank.tolist() == [50, 40, 50, 50]
    metrics = ranking_metrics(rank, ks)
    for k in ks:
        for name in ("hr", "ndcg", "mrr"):
            assert metrics[f"{name}@{k}"].eq(0).all(), f"{name}@{k}"
    assert torch.allclose(metrics["mrr"], 1.0 / rank.float())


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_target_score_ranks_last_and_other_non_finite_scores_rank_above_it(bad):
    scores = torch.tensor([[0.0, 0.9, 0.5, 0.7, 0.1]])
    scores[0, 3] = bad
    assert target_rank(scores, torch.tensor([3])).item() == 5  # padding not excluded here: 5 candidates
    assert target_rank(scores, torch.tensor([1])).item() == 2  # best finite score, but item 3 is non-finite
    exclude = torch.tensor([[True, False, False, True, False]])
    assert target_rank(scores, torch.tensor([1]), exclude).item() == 1  # an excluded column never counts
