"""The family's evaluation against hand-computed cases."""
import math

import pytest
import torch

from lightning_modules.rerank.base import accuracy_at_k, alpha_ndcg_at_k, check_permutation, mad


def test_hr_and_ndcg_at_k_by_hand():
    order = torch.tensor([[2, 0, 1, 3], [0, 1, 2, 3], [3, 2, 1, 0]])
    target = torch.tensor([0, 3, -1])  # rank 2; rank 4 (outside k=2); absent
    hr, ndcg = accuracy_at_k(order, target, k=2)
    assert hr.tolist() == [1.0, 0.0, 0.0]
    assert ndcg.tolist() == pytest.approx([1 / math.log2(3), 0.0, 0.0])
    hr, ndcg = accuracy_at_k(order, target, k=4)
    assert hr.tolist() == [1.0, 1.0, 0.0] and ndcg[1] == pytest.approx(1 / math.log2(5))


def test_alpha_ndcg_by_hand():
    # genres: item0 {a}, item1 {a}, item2 {b}, item3 {a, b}; alpha = 0.5
    genres = torch.tensor([[[1, 0], [1, 0], [0, 1], [1, 1]]], dtype=torch.float32)
    order = torch.tensor([[0, 1, 2, 3]])
    # gains: a=1; a again 0.5; b=1; a (seen twice) 0.25 + b (seen once) 0.5 = 0.75
    dcg = 1 + 0.5 / math.log2(3) + 1 / math.log2(4) + 0.75 / math.log2(5)
    # greedy ideal: item3 (2), then item0 (a seen once: 0.5) ties item1, item2 (b seen once: 0.5) -> first is
    # item0 (0.5); then item1 (a seen twice: 0.25) vs item2 (b once: 0.5) -> item2; then item1 0.25
    ideal = 2 + 0.5 / math.log2(3) + 0.5 / math.log2(4) + 0.25 / math.log2(5)
    value, defined = alpha_ndcg_at_k(order, genres, k=4, alpha=0.5)
    assert value.item() == pytest.approx(dcg / ideal, rel=1e-6) and defined.item()
    # at k = 2 only the first two ranks count
    value, _ = alpha_ndcg_at_k(order, genres, k=2, alpha=0.5)
    assert value.item() == pytest.approx((1 + 0.5 / math.log2(3)) / (2 + 0.5 / math.log2(3)), rel=1e-6)
    # the ideal order itself scores 1; candidates without any genre are undefined
    assert alpha_ndcg_at_k(torch.tensor([[3, 0, 2, 1]]), genres, 4)[0].item() == pytest.approx(1.0)
    assert not alpha_ndcg_at_k(order, torch.zeros_like(genres), 4)[1].item()


def test_mad_by_hand():
    # N = 4: positions carry R = 1, 2/3, 1/3, 0
    group = torch.tensor([[0, 0, 1, 1], [0, 1, 0, 1], [0, 0, 0, 0]])
    order = torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0], [0, 1, 2, 3]])
    value, defined = mad(order, group)
    # list 0: group 0 at the top two (1 + 2/3) / 2, group 1 below (1/3 + 0) / 2 -> 2/3
    # list 1: positions hold items 3, 2, 1, 0 = groups 1, 0, 1, 0 -> |(2/3 + 0)/2 - (1 + 1/3)/2| = 1/3
    assert value[:2].tolist() == pytest.approx([2 / 3, 1 / 3])
    assert defined.tolist() == [True, True, False]


def test_a_reranker_output_that_is_not_a_permutation_is_one_clear_error():
    with pytest.raises(ValueError, match="not a permutation"):
        check_permutation(torch.tensor([[0, 1, 1, 3]]), 4, "Broken")
    with pytest.raises(ValueError, match=r"must return \[batch, 4\]"):
        check_permutation(torch.tensor([[0, 1, 2]]), 4, "Broken")
