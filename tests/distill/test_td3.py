"""TD3 and the distill family: Tucker reconstruction, summary memory, RaT-BPTT gradient flow, frozen negatives,
soft inputs for every target, learning on planted data, and a smoke test over the family's registry."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import datamodules  # noqa: F401
import lightning_modules  # noqa: F401
from contracts.batch import distill as B
from contracts.registry import DATASETS, MODELS
from datamodules.distill.wrapped import sample_negatives
from lightning_modules.distill.base import soft_hidden, summary_loss
from lightning_modules.distill.bilevel import adam_state
from lightning_modules.distill.td3 import TuckerSummary
from tests.conftest import fast_trainer

TINY_LEARNER = {"embed_dim": 8, "num_blocks": 1, "num_heads": 1, "dropout": 0.0, "loss": "ce"}


def tiny_td3(num_items=30, max_len=8, **kw):
    args = dict(synthetic_users=12, synthetic_len=8, user_rank=3, time_rank=3, inner_steps=6, window=2,
                inner_batch=2, learner_args=TINY_LEARNER, targets=("sasrec",), target_args={"sasrec": TINY_LEARNER})
    args.update(kw)
    model = MODELS.get("td3").cls(num_items=num_items, max_len=max_len, **args)
    model._learner_state = {n: p.detach().clone() for n, p in model.teacher.named_parameters()}
    return model


def real_batch(num_items=30, max_len=8, rows=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    seq = torch.randint(1, num_items + 1, (rows, max_len + 1), generator=g)
    seq[0, :3] = 0  # one left-padded user
    return {B.INPUT_IDS: seq[:, :-1], B.TARGET_IDS: torch.where(seq[:, :-1] == 0, 0, seq[:, 1:])}


# ----- the Tucker summary ------------------------------------------------------------------------------------------
def test_tucker_reconstruction_equals_dense_einsum():
    torch.manual_seed(0)
    summary = TuckerSummary(num_users=5, length=7, user_rank=3, time_rank=4, item_dim=6)
    items = torch.randn(11, 6)
    users = torch.arange(5)
    dense = torch.einsum("ijk,ai,bj,ck->abc", summary.core, summary.user_factor, summary.time_factor, items)
    assert torch.allclose(summary.logits(users, items), dense, atol=1e-6)
    # a minibatch of users is the same slice of the dense tensor
    assert torch.allclose(summary.logits(torch.tensor([3, 1]), items), dense[[3, 1]], atol=1e-6)


def test_summary_memory_is_core_plus_factors_never_dense():
    num_items, mu, zeta, d1, d2 = 5000, 50, 50, 16, 16
    model = MODELS.get("td3").cls(num_items=num_items, max_len=50, synthetic_users=mu, synthetic_len=zeta,
                                  user_rank=d1, time_rank=d2, targets=("sasrec",))
    d = model.teacher.embed_dim
    stored = {n: t.numel() for n, t in [*model.summary.named_parameters(), *model.summary.named_buffers()]}
    assert stored == {"core": d1 * d2 * d, "user_factor": mu * d1, "time_factor": zeta * d2}
    dense = mu * zeta * num_items
    everything = [*model.named_parameters(), *model.named_buffers()]
    assert max(t.numel() for _, t in everything) < dense / 50  # no parameter or buffer is O(mu x zeta x items)
    assert sum(t.numel() for _, t in everything) < dense / 20
    assert model.summary_floats() == d1 * d2 * d + mu * d1 + zeta * d2 + num_items * d  # + the item factor V


# ----- RaT-BPTT ------------------------------------------------------------------------------------------------------
def _outer_grad(model, skip, window, batch):
    model.summary.zero_grad()
    params = model.rat_bptt_unroll(model.initial_params(), skip, window)
    loss, _, _ = model.outer_loss(params, batch)
    loss.backward()
    return {n: p.grad.clone() for n, p in model.summary.named_parameters()}


def test_rat_bptt_gradients_flow_only_through_the_window():
    torch.manual_seed(0)
    model = tiny_td3()  # 12 synthetic users, inner batch 2: step s trains on users 2s, 2s+1 (6 steps cover all)
    skip, window = 3, 2
    grads = _outer_grad(model, skip, window, real_batch())
    per_user = grads["user_factor"].abs().sum(1)
    in_window = torch.zeros(12, dtype=torch.bool)
    in_window[2 * skip: 2 * (skip + window)] = True
    assert (per_user[~in_window] == 0).all(), "users of steps outside the window got gradient"
    assert (per_user[in_window] > 0).all(), "users of the window got no gradient"
    assert grads["core"].abs().sum() > 0 and grads["time_factor"].abs().sum() > 0


@sdpa_kernel(SDPBackend.MATH)  # fused CPU attention kernels have no second derivative
def _reference_full_bptt(model, batch, steps):
    """Independent full back-propagation through `steps` inner Adam steps (written out here, graph kept)."""
    shell = model.learner.train()
    params = model.initial_params()
    m = {k: torch.zeros_like(v) for k, v in params.items()}
    v = {k: torch.zeros_like(p) for k, p in params.items()}
    b1, b2, lr, wd = 0.9, 0.999, model.net_lr, model.net_weight_decay
    for t in range(1, steps + 1):
        users = (torch.arange(model.inner_batch) + (t - 1) * model.inner_batch) % model.num_summary_users
        dist, valid = model.summary_distributions(users)
        loss = summary_loss(shell, params, dist, valid, prefix=True, min_prefix=model.min_prefix)
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=True, allow_unused=True)
        new = {}
        for (k, p), g in zip(params.items(), grads):
            g = (torch.zeros_like(p) if g is None else g) + wd * p
            m[k] = b1 * m[k] + (1 - b1) * g
            v[k] = b2 * v[k] + (1 - b2) * g * g
            new[k] = p - lr * (m[k] / (1 - b1 ** t)) / (torch.sqrt(v[k] / (1 - b2 ** t) + 1e-24) + 1e-8)
        params = new
    loss, _, _ = model.outer_loss(params, batch)
    model.summary.zero_grad()
    loss.backward()
    return {n: p.grad.clone() for n, p in model.summary.named_parameters()}


def test_rat_bptt_matches_full_backprop_when_the_window_covers_the_unroll():
    torch.manual_seed(0)
    model = tiny_td3(inner_steps=4, window=4, synthetic_users=6)
    batch = real_batch()
    torch.manual_seed(1)
    ours = _outer_grad(model, skip=0, window=4, batch=batch)
    torch.manual_seed(1)  # same prefix draws
    reference = _reference_full_bptt(model, batch, steps=4)
    for name in ours:
        assert torch.allclose(ours[name], reference[name], rtol=1e-4, atol=1e-7), name
    # and a shorter window truncates: the gradient changes
    torch.manual_seed(1)
    truncated = _outer_grad(model, skip=2, window=2, batch=batch)
    assert not torch.allclose(truncated["core"], reference["core"])


def test_adam_state_starts_at_zero():
    state = adam_state({"w": torch.ones(3)})
    assert state["t"] == 0 and state["m"]["w"].abs().sum() == 0


# ----- soft inputs ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["sasrec", "gru4rec"])
def test_one_hot_soft_inputs_reproduce_hard_inputs(name):
    """A one-hot summary must give exactly the model's output on the ids themselves (left padding included)."""
    torch.manual_seed(0)
    model = MODELS.get(name).cls(num_items=20, max_len=6, embed_dim=8).eval()
    ids = torch.tensor([[0, 0, 3, 5, 7, 2], [1, 4, 4, 9, 20, 11]])
    one_hot = F.one_hot(ids, 21)[..., 1:].float()
    soft = soft_hidden(model, dict(model.named_parameters()), one_hot, ids != B.PAD)
    assert torch.allclose(soft, model(ids), atol=1e-5)


# ----- sampled negatives ----------------------------------------------------------------------------------------------
def test_sampled_negatives_exclude_every_interaction_and_are_frozen():
    users = np.array([0, 0, 0, 1, 1])
    items = np.array([1, 2, 3, 4, 5])
    a = sample_negatives(users, items, num_users=2, num_items=12, num_negatives=6, seed=7)
    b = sample_negatives(users, items, num_users=2, num_items=12, num_negatives=6, seed=7)
    assert (a == b).all() and a.shape == (2, 6)
    assert not np.isin(a[0], [0, 1, 2, 3]).any() and not np.isin(a[1], [0, 4, 5]).any()
    assert all(len(set(row)) == 6 for row in a)
    with pytest.raises(ValueError, match="unseen items"):
        sample_negatives(users, items, num_users=2, num_items=8, num_negatives=6, seed=7)


def test_datamodule_hash_records_the_negatives():
    dm = DATASETS.get("distill-synthetic").cls(num_users=80, num_items=50, max_len=10, num_negatives=20)
    dm.prepare_data()
    dm.setup()
    test = dm.test_set.tensors
    assert test[B.NEGATIVES].shape == (80, 20)
    assert not (test[B.NEGATIVES] == test[B.TARGET].unsqueeze(1)).any()
    assert dm.negatives_hash and dm.negatives_hash in dm.data_hash
    other = DATASETS.get("distill-synthetic").cls(num_users=80, num_items=50, max_len=10, num_negatives=20,
                                                  negatives_seed=5)
    other.setup()
    assert other.data_hash != dm.data_hash


# ----- learning on planted data ---------------------------------------------------------------------------------------
# The acceptance numbers below were measured with each user's last window as the real side, so the test keeps it
# (the every-target default is tested in test_distill_stages.py).
PLANTED = dict(num_users=400, num_items=80, min_length=12, max_length=24, p_follow=0.9, max_len=12, seed=0,
               num_negatives=30, batch_size=100, train_windows="last")
TARGET = {"embed_dim": 16, "num_blocks": 1, "num_heads": 1, "dropout": 0.1, "loss": "ce"}
SHARED = dict(synthetic_users=6, synthetic_len=13, targets=("sasrec",), target_args={"sasrec": TARGET},
              target_steps=150, inner_batch=6, net_lr=0.01, reference_max_epochs=3, eval_ks=(10,))


def _fit_and_test(name, epochs=4, real_batch=None, seed=0, **kw):
    import lightning.pytorch as pl

    pl.seed_everything(seed, verbose=False)
    dm = DATASETS.get("distill-synthetic").cls(**{**PLANTED, "batch_size": real_batch or PLANTED["batch_size"]})
    dm.prepare_data()
    dm.setup()
    model = MODELS.get(name).cls(**dm.model_kwargs(), **SHARED, **kw)
    trainer = fast_trainer(max_epochs=epochs, limit_val_batches=0)
    trainer.fit(model, datamodule=dm)
    return trainer.test(model, datamodule=dm, verbose=False)[0], dm


def test_distilled_summary_beats_popularity_and_a_random_subset_of_the_same_size():
    """TD3's 6 x 13 summary against popularity and against random 6-user subsets. A single subset draw is noise
    (NDCG@10 of the SASRec trained on draws 0-7: 0.30 to 0.61, mean 0.47), so the baseline is the mean over five
    draws, as a board averages seeds. TD3 with the code's persistent learner gets 256 outer steps: at 128 its
    result depends on the CPU's floating-point paths (0.57 on one machine, 0.48 on another), at 256 it reached
    0.59-0.60."""
    td3, dm = _fit_and_test("td3", epochs=16, real_batch=25, user_rank=8, time_rank=8, inner_steps=20, window=10,
                            seq_lr=0.1, learner_args=TARGET, pretrain_epochs=30, trajectory_epochs=(2, 6))
    subsets = [_fit_and_test("random_subset", seed=seed)[0] for seed in range(5)]
    counts = torch.zeros(dm.num_items + 1)
    targets = dm.train_set.tensors[B.TARGET_IDS].flatten()
    counts.index_add_(0, targets, torch.ones_like(targets, dtype=torch.float))
    counts[0] = -1
    pop = MODELS.get("pop").cls(num_items=dm.num_items, max_len=dm.max_len, eval_ks=(10,))
    pop.counts.copy_(counts)
    pop_metrics = fast_trainer().test(pop, datamodule=dm.inner, verbose=False)[0]
    ours = td3["test/fr/sasrec/ndcg@10"]
    subset_scores = [s["test/fr/sasrec/ndcg@10"] for s in subsets]
    assert len(set(subset_scores)) > 1, "the random subsets should differ between seeds"
    assert td3["test/summary_floats"] > 0 and subsets[0]["test/summary_floats"] > 0
    assert ours > pop_metrics["test/ndcg@10"] + 0.05, (ours, pop_metrics)
    assert ours > float(np.mean(subset_scores)) + 0.03, (ours, subset_scores)


# ----- the registry -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS.names(family="distill"))
def test_every_distill_method_runs_end_to_end(name):
    import lightning.pytorch as pl

    pl.seed_everything(0, verbose=False)
    dm = DATASETS.get("distill-synthetic").cls(num_users=60, num_items=40, max_len=8, num_negatives=10,
                                               batch_size=30)
    dm.setup()
    tiny = {"embed_dim": 8, "num_blocks": 1, "num_heads": 1, "dropout": 0.0, "loss": "ce"}
    kwargs = dict(targets=("sasrec", "gru4rec"), target_args={"sasrec": tiny, "gru4rec": {"embed_dim": 8}},
                  reference_max_epochs=2, eval_ks=(10,))
    if name != "full_data":
        kwargs.update(synthetic_users=4, synthetic_len=9, target_steps=5, inner_batch=2)
    if name in ("td3", "farzi"):
        kwargs.update(inner_steps=4, window=2, learner_args=tiny, pretrain_epochs=2, trajectory_epochs=(1, 2))
    model = MODELS.get(name).cls(**dm.model_kwargs(), **kwargs)
    trainer = fast_trainer(max_epochs=1)
    trainer.fit(model, datamodule=dm)
    val = trainer.validate(model, datamodule=dm, verbose=False)[0]
    test = trainer.test(model, datamodule=dm, verbose=False)[0]
    for target in ("sasrec", "gru4rec"):
        for proto in ("fr", "s100"):
            assert 0 <= test[f"test/{proto}/{target}/ndcg@10"] <= 1
            assert f"test/{proto}/{target}/ndcg@10_frac" in test
        assert test[f"test/{target}/speedup"] > 0
    assert "val/fr/sasrec/ndcg@10" in val and test["test/summary_floats"] > 0
    if name == "full_data":  # the upper bound is its own reference
        assert test["test/fr/sasrec/ndcg@10_frac"] == pytest.approx(1.0)
    assert callable(MODELS.get(name).cls.search_space)


def test_a_nan_scoring_model_ranks_last_under_both_protocols():
    from lightning_modules.distill.base import DistillModule

    class NaNScores(torch.nn.Module):
        def score_all(self, batch):
            return torch.full((len(batch[B.TARGET]), 21), float("nan"))

        def candidate_exclusions(self, batch, num_columns):
            exclude = torch.zeros(len(batch[B.TARGET]), num_columns, dtype=torch.bool)
            exclude[:, 0] = True
            return exclude

    batch = {B.TARGET: torch.tensor([3, 7]), B.NEGATIVES: torch.tensor([[1, 2, 4, 5], [8, 9, 10, 11]])}
    ranks = DistillModule.ranks(NaNScores(), batch)
    assert ranks["fr"].tolist() == [20, 20]  # all 20 items
    assert ranks["s100"].tolist() == [5, 5]  # the target and its 4 negatives


def test_references_select_on_a_cut_off_the_board_asks():
    import lightning.pytorch as pl

    pl.seed_everything(0, verbose=False)
    dm = DATASETS.get("distill-synthetic").cls(num_users=60, num_items=40, max_len=8, num_negatives=10, batch_size=30)
    dm.setup()
    model = MODELS.get("full_data").cls(**dm.model_kwargs(), targets=("sasrec",), eval_ks=(5,),
                                        target_args={"sasrec": {"embed_dim": 8, "num_blocks": 1, "num_heads": 1,
                                                                "dropout": 0.0, "loss": "ce"}},
                                        reference_max_epochs=1)
    assert model.selection_metric == "ndcg@5"
    fast_trainer(max_epochs=1).fit(model, datamodule=dm)  # would raise KeyError on ndcg@10 without the cut-off
