"""Each negative sampler against its definition, ESANS's codebooks and interpolation, and logQ correction."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lightning_modules.retrieval import samplers as S
from lightning_modules.retrieval.clustering import fuse, residual_codebooks


def frequencies(ids: torch.Tensor, n: int) -> torch.Tensor:
    return torch.bincount(ids.reshape(-1), minlength=n + 1).float() / ids.numel()


def test_uniform_and_popularity_draw_their_distributions():
    torch.manual_seed(0)
    n = 20
    draws = torch.cat([S.uniform(n, 500).ids for _ in range(100)])
    freq = frequencies(draws, n)
    assert freq[0] == 0
    assert torch.allclose(freq[1:], torch.full((n,), 1 / n), atol=0.01)

    count = torch.arange(n + 1).float()  # item i seen i times
    probs = S.popularity_probs(count, 0.75)
    expected = count[1:] ** 0.75 / (count[1:] ** 0.75).sum()
    assert torch.allclose(probs[1:], expected, atol=1e-6) and probs[0] == 0
    neg = S.popularity(probs, 50_000)
    assert torch.allclose(frequencies(neg.ids, n)[1:], expected, atol=0.01)
    assert torch.allclose(neg.log_q, torch.log(50_000 * probs[neg.ids]))


def test_unseen_items_stay_drawable_by_popularity():
    count = torch.tensor([0.0, 0.0, 4.0, 9.0])
    probs = S.popularity_probs(count, 0.5)
    assert probs[1] > 0 and torch.isclose(probs[1], probs[2])  # the floor is the smallest observed count


def test_mixed_log_q_is_the_mixtures_expected_count():
    frequency = torch.tensor([0.0, 0.5, 0.25, 0.25])
    targets = torch.tensor([1, 1, 2, 3])
    neg = S.mixed(targets, frequency, num_items=3, m=6)
    assert neg.ids.shape == (10,) and torch.equal(neg.ids[:4], targets)
    assert torch.allclose(neg.log_q, torch.log(4 * frequency[neg.ids] + 6 / 3))


def test_hard_miner_draws_from_the_requested_rank_window():
    torch.manual_seed(0)
    index = F.normalize(torch.randn(31, 8), dim=-1)
    user = F.normalize(torch.randn(4, 8), dim=-1)
    targets = torch.tensor([1, 2, 3, 4])
    neg = S.hard_from_index(user, index, targets, num_hard=200, pool=10, skip=3)
    scores = user @ index.T
    scores[:, 0] = float("-inf")
    scores.scatter_(1, targets[:, None], float("-inf"))
    ranked = scores.argsort(dim=1, descending=True)
    for b in range(4):
        assert set(neg.ids[b].tolist()) == set(ranked[b, 3:10].tolist())
    assert neg.log_q is None


def _planted_vectors(seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, 6)) * 10
    sub = rng.normal(size=(3, 6)) * 2
    x = np.concatenate([centres[g] + sub[s] + 0.05 * rng.normal(size=(5, 6)) for g in range(4) for s in range(3)])
    return np.concatenate([np.zeros((1, 6)), x]), np.repeat(np.arange(4), 15), np.repeat(np.arange(12), 5)


def test_codebooks_are_deterministic_and_recover_planted_clusters():
    vectors, group, cell = _planted_vectors()
    a = residual_codebooks(vectors, 4, 3, seed=0)
    b = residual_codebooks(vectors, 4, 3, seed=0)
    for field in a.__dataclass_fields__:
        assert torch.equal(getattr(a, field), getattr(b, field))
    primary = a.primary[1:].numpy()
    # Same planted group <=> same primary cluster (labels are a permutation).
    assert (primary[:, None] == primary[None, :]).tolist() == (group[:, None] == group[None, :]).tolist()
    assert a.order.sort().values.tolist() == list(range(1, 61))
    # Every cell is a contiguous range of `order`.
    for c in range(len(a.cell_size)):
        members = a.order[a.cell_start[c]:a.cell_start[c] + a.cell_size[c]]
        assert (a.cell[members] == c).all()


def test_msac_close_negatives_share_the_primary_but_not_the_cell_and_log_q_is_exact():
    torch.manual_seed(0)
    vectors, _, _ = _planted_vectors()
    books = residual_codebooks(vectors, 4, 3, seed=0)
    transition = S.cluster_transition(books.centroids, tau=50.0)
    assert torch.allclose(transition.sum(1), torch.ones(4)) and (transition.diagonal() == 0).all()
    targets = torch.tensor([1, 17, 33, 60]).repeat(2000)
    close, other = S.esans_msac(targets, books, transition, m_c=2, m_o=5)
    p, c = books.primary[targets], books.cell[targets]
    assert (books.primary[close.ids] == p[:, None]).all()
    assert (books.cell[close.ids] != c[:, None]).all()
    assert (books.primary[other.ids] != p[:, None]).all()
    # Close draws are uniform over the primary cluster minus the positive's cell.
    rows = targets == 1
    outside = books.primary_size[p[0]] - books.cell_size[c[0]]
    freq = torch.bincount(close.ids[rows].reshape(-1), minlength=61).float() / close.ids[rows].numel()
    drawn = freq[freq > 0]
    assert len(drawn) == outside and torch.allclose(drawn, torch.full_like(drawn, 1 / float(outside)), atol=0.02)
    assert torch.allclose(close.log_q[rows], torch.log(torch.tensor(2 / float(outside))))
    # Other draws: cluster j with probability transition[p, j], then uniform within j.
    j = books.primary[other.ids[rows]].reshape(-1)
    cluster_freq = torch.bincount(j, minlength=4).float() / j.numel()
    assert torch.allclose(cluster_freq, transition[p[0]], atol=0.02)
    q = transition[p[0], books.primary[other.ids[rows]]] / books.primary_size[books.primary[other.ids[rows]]]
    assert torch.allclose(other.log_q[rows], torch.log(5 * q))


def test_edis_virtual_negatives_lie_where_the_formulas_put_them():
    torch.manual_seed(0)
    neg = torch.randn(3, 7, 4)
    virtual = S.interpolate_negatives(neg, m_o=5)
    assert virtual.shape == (3, (5 + 2) * (5 - 1) // 2, 4)
    # Each virtual negative is a convex combination of the row's negatives: inside their bounding box, and the
    # least-squares weights reproduce it with weights >= 0 summing to 1.
    for b in range(3):
        lo, hi = neg[b].min(0).values, neg[b].max(0).values
        assert ((virtual[b] >= lo - 1e-5) & (virtual[b] <= hi + 1e-5)).all()
    pos = torch.randn(3, 4)
    for lam in (0.5, -0.3):
        hard = S.interpolate_with_positive(neg, pos, lam)
        assert torch.allclose(hard, (1 - lam) * neg + lam * pos[:, None, :])


def test_fuse_rejects_unknown_modalities():
    with pytest.raises(ValueError, match="unknown modality"):
        fuse({"text": torch.zeros(2, 2)}, ("image",))


def test_logq_correction_makes_the_popularity_sampled_gradient_match_the_full_softmax():
    """With many draws, the corrected sampled-softmax gradient approaches the full softmax's; uncorrected it is
    biased towards popular items."""
    torch.manual_seed(0)
    n = 30
    logits_full = torch.randn(n + 1)
    logits_full[0] = float("-inf")
    target = 5
    full = torch.softmax(logits_full, 0)
    full_grad = full.clone()
    full_grad[target] -= 1
    count = torch.arange(n + 1).float() ** 2
    probs = S.popularity_probs(count, 1.0)

    def sampled_grad(correct: bool) -> torch.Tensor:
        grads = []
        for _ in range(200):
            neg = S.popularity(probs, 400)
            s = logits_full.clone().requires_grad_(True)
            neg_logits = s[neg.ids] - (neg.log_q if correct else 0)
            neg_logits = neg_logits.masked_fill(neg.ids == target, float("-inf"))
            loss = -s[target] + torch.logsumexp(torch.cat([s[target:target + 1], neg_logits]), 0)
            loss.backward()
            grads.append(s.grad[1:])
        return torch.stack(grads).mean(0)

    corrected = (sampled_grad(True) - full_grad[1:]).abs().sum()
    uncorrected = (sampled_grad(False) - full_grad[1:]).abs().sum()
    assert corrected < 0.1
    assert uncorrected > 4 * corrected
