"""MLLM-MSR's 1 + 20 protocol: the user split, the negatives (drawn once per split from a seed, never the positive
or an item of the user's sequence), and the metrics against hand-computed values."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from contracts.batch import mllmrec as B
from datamodules.mllmrec import MLLMSynthetic
from datamodules.mllmrec.base import sample_negatives
from lightning_modules.mllmrec.base import candidate_metrics

SIZES = dict(num_users=120, num_items=40, num_topics=4, min_length=4, max_length=12, train_windows=2)


def dm(**kwargs):
    module = MLLMSynthetic(**{**SIZES, **kwargs})
    module.setup("fit")
    return module


def users_items(module) -> dict[int, set[int]]:
    users, items, _ = module.load_sequences()
    out: dict[int, set[int]] = {}
    for u, i in zip(users.tolist(), items.tolist()):
        out.setdefault(u, set()).add(i)
    return out


@pytest.fixture(scope="module")
def data():
    return dm()


def test_negatives_are_deterministic_per_seed_and_change_with_it(data, tmp_path, monkeypatch):
    monkeypatch.setenv("PAPERBOARD_CACHE", str(tmp_path))  # rebuilt from scratch, not read from a cache
    again = dm()
    other = dm(negative_seed=1)
    for split in ("train_set", "val_set", "test_set"):
        a, b, c = (getattr(m, split).tensors[B.CANDIDATES] for m in (data, again, other))
        assert torch.equal(a, b)
        assert not torch.equal(a[:, 1:], c[:, 1:]) and torch.equal(a[:, 0], c[:, 0])
    assert data.describe()["test_negatives_hash"] == again.describe()["test_negatives_hash"] \
        != other.describe()["test_negatives_hash"]


def test_negatives_never_hit_the_positive_or_any_item_of_the_user(data):
    seen = users_items(data)
    for split, k in (("train_set", 1), ("val_set", 20), ("test_set", 20)):
        t = getattr(data, split).tensors
        candidates, users = t[B.CANDIDATES].numpy(), t[B.USER].numpy()
        assert candidates.shape[1] == 1 + k
        # the user index is the rank of the raw user id; the synthetic users are 0..N-1 so they coincide
        for row, user in zip(candidates, users):
            assert row[0] in seen[user]
            assert not set(row[1:].tolist()) & seen[user]
            assert len(set(row[1:].tolist())) == k
        history = t[B.HISTORY].numpy()
        assert (history[:, -1] != B.PAD).all()  # at least one item of history, right-aligned


def test_users_are_split_not_interactions(data):
    groups = [set(getattr(data, s).tensors[B.USER].tolist()) for s in ("train_set", "val_set", "test_set")]
    assert not (groups[0] & groups[1]) and not (groups[0] & groups[2]) and not (groups[1] & groups[2])
    assert len(data.val_set) == len(groups[1])  # one sample per evaluation user
    assert len(data.train_set) > len(groups[0])  # train_windows=2: two per training user


def test_sampler_redraws_until_valid_when_the_catalogue_is_almost_seen():
    seen = np.sort(np.array([0 * 11 + i for i in range(1, 8)]))  # user 0 has seen items 1..7 of 10
    out = sample_negatives(np.zeros(50, dtype=np.int64), seen, 10, 3, np.random.default_rng(0))
    assert set(out.ravel().tolist()) == {8, 9, 10}
    assert all(len(set(r)) == 3 for r in out.tolist())


def test_metrics_against_hand_computed_values():
    # positive (column 0) ranked 1st, 3rd (a tie counts against it), and 6th of 6
    scores = torch.tensor([[0.9, 0.1, 0.2, 0.3, 0.0, 0.5],
                           [0.5, 0.5, 0.9, 0.1, 0.0, 0.2],
                           [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]])
    m = candidate_metrics(scores, (3, 5))
    torch.testing.assert_close(m["recall@3"], torch.tensor([1.0, 1.0, 0.0]))
    torch.testing.assert_close(m["mrr@3"], torch.tensor([1.0, 1 / 3, 0.0]))
    torch.testing.assert_close(m["ndcg@5"], torch.tensor([1.0, 0.5, 0.0]))
    assert m["recall@5"][2] == 0
    assert candidate_metrics(torch.full((1, 4), float("nan")), (3,))["recall@3"].item() == 0  # NaN never first
