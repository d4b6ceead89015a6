"""Ranking metrics against hand-computed cases."""
import math

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
