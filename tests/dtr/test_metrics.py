"""SAFER's statistics: conformal selection with BH controls the FDR and has power; the risk-aware loss's
gradient matches its formula; ranking metrics against hand-computed values."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lightning_modules.dtr.metrics import (benjamini_hochberg, conformal_pvalues, conformal_selection, fdr_and_power,
                                           hit_and_reciprocal_rank, kl_uncertainty, rank_of_target, risk_aware_loss)


def test_benjamini_hochberg_hand_example():
    p = np.array([0.01, 0.04, 0.03, 0.20, 0.9])
    # m=5, alpha=0.1: thresholds 0.02, 0.04, 0.06, 0.08, 0.1; sorted p = .01 .03 .04 .2 .9 -> k = 3
    assert benjamini_hochberg(p, 0.1).tolist() == [True, True, True, False, False]
    assert not benjamini_hochberg(np.array([0.5, 0.6]), 0.1).any()


def test_conformal_pvalue_hand_example():
    calib_pred = np.array([0.1, 0.2, 0.3, 0.4])
    calib_null = np.array([True, False, True, True])
    rng = np.random.default_rng(0)
    u = np.random.default_rng(0).random(2)
    p = conformal_pvalues(calib_pred, calib_null, np.array([0.35, 0.05]), rng)
    # test 0.35: null calibration preds below it = {0.1, 0.3} -> (2 + u) / 5; test 0.05: (0 + u) / 5
    np.testing.assert_allclose(p, [(2 + u[0]) / 5, u[1] / 5])


def _synthetic(rng, n, noise):
    kappa = rng.uniform(0, 1, n)
    h = np.c_[kappa + noise * rng.normal(size=n), rng.normal(size=(n, 3))]
    return h, kappa


@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("alpha", [0.1, 0.3])
def test_conformal_selection_controls_fdr(alpha, grouped):
    """Mean realised FDR over many repetitions stays <= alpha (within 3 standard errors), with a noisy score; also
    with the calibration pool split by patient (groups of 3 points)."""
    rng = np.random.default_rng(1)
    fdrs = []
    for rep in range(150):
        pool_h, pool_k = _synthetic(rng, 300, noise=0.5)
        test_h, test_k = _synthetic(rng, 100, noise=0.5)
        groups = np.arange(300) // 3 if grouped else None
        res = conformal_selection(pool_h, pool_k, test_h, test_k, [alpha], [0.3], repetitions=1, seed=rep,
                                  pool_groups=groups)
        fdrs.append(res[(alpha, 0.3)][0])
    fdrs = np.array(fdrs)
    assert fdrs.mean() <= alpha + 3 * fdrs.std(ddof=1) / np.sqrt(len(fdrs)), fdrs.mean()


def test_grouped_split_keeps_each_patient_on_one_side(monkeypatch):
    import lightning_modules.dtr.metrics as M

    sizes = []
    real = M.conformal_pvalues

    def spy(pred, null, test, rng):
        sizes.append(len(pred))
        return real(pred, null, test, rng)

    monkeypatch.setattr(M, "conformal_pvalues", spy)
    rng = np.random.default_rng(0)
    pool_h, pool_k = _synthetic(rng, 60, noise=0.1)
    groups = np.repeat(np.arange(10), 6)  # 10 patients x 6 windows: 70/30 -> 3 whole patients in calibration
    M.conformal_selection(pool_h, pool_k, pool_h[:5], pool_k[:5], [0.1], [0.3], repetitions=4, pool_groups=groups)
    assert sizes == [18] * 4


def test_conformal_selection_has_power_on_easy_case():
    rng = np.random.default_rng(2)
    pool_h, pool_k = _synthetic(rng, 400, noise=0.01)
    test_h, test_k = _synthetic(rng, 200, noise=0.01)
    fdr, power = conformal_selection(pool_h, pool_k, test_h, test_k, [0.1], [0.3], repetitions=20)[(0.1, 0.3)]
    assert power > 0.8 and fdr <= 0.15


def test_fdr_and_power_counts():
    selected = np.array([True, True, False, True])
    null = np.array([True, False, False, False])
    assert fdr_and_power(selected, null) == (1 / 3, 2 / 3)


def test_ranking_metrics_hand_values():
    scores = torch.tensor([[0.1, 0.5, 0.4], [0.3, 0.3, 0.2], [0.9, 0.05, 0.05]])
    rank = rank_of_target(scores, torch.tensor([2, 0, 1]))
    assert rank.tolist() == [2, 2, 3]  # ties count against the target
    hit, rr = hit_and_reciprocal_rank(rank, k=2)
    assert hit.tolist() == [1, 1, 0]
    torch.testing.assert_close(rr, torch.tensor([0.5, 0.5, 0.0]))
    # standard MRR counts the miss as 0; the SAFER code's hits-only MRR does not
    assert rr.mean().item() == pytest.approx(1 / 3) and (rr.sum() / hit.sum()).item() == pytest.approx(0.5)


def test_kl_uncertainty_formula():
    a, b = torch.randn(4, 25), torch.randn(4, 25)
    p, q = F.softmax(a, -1), F.softmax(b, -1)
    torch.testing.assert_close(kl_uncertainty(a, b), (p * (p.log() - q.log())).sum(-1))
    # the official code's expression is the same quantity
    torch.testing.assert_close(kl_uncertainty(a, b), F.kl_div(F.log_softmax(b, -1), p, reduction="none").sum(1))


@pytest.mark.parametrize("variant", ["paper", "paper_grad"])
def test_risk_aware_loss_gradient_matches_formula(variant):
    """Eq. 7, d/dz of (1 - kappa-hat) CE + gamma kappa^2, per sample / N: 'paper' treats the weight as a constant
    (stop-gradient, as the code's no_grad weight); 'paper_grad' also differentiates the weight."""
    torch.manual_seed(0)
    N, A, gamma, lo, hi = 6, 25, 0.3, 0.0, 5.0
    z = torch.randn(N, A, dtype=torch.float64, requires_grad=True)
    r = torch.randn(N, A, dtype=torch.float64)  # refinement logits (f_phi frozen, held fixed here)
    y = torch.randint(0, A, (N,))
    risk_aware_loss(z, r, y, gamma, lo, hi, variant).backward()
    p, q = F.softmax(z.detach(), -1), F.softmax(r, -1)
    log_ratio = p.log() - q.log()
    kappa = (p * log_ratio).sum(-1, keepdim=True)
    dkappa = p * (log_ratio - kappa)  # d kappa / d z
    ce = -p.log().gather(1, y[:, None])
    dce = p - F.one_hot(y, A)
    kappa_hat = (kappa - lo) / (hi - lo)
    assert ((kappa_hat > 0) & (kappa_hat < 1)).all()  # unclamped: the weight carries gradient
    weight_term = -ce * dkappa / (hi - lo) if variant == "paper_grad" else 0.0
    expected = ((1 - kappa_hat) * dce + weight_term + 2 * gamma * kappa * dkappa) / N
    torch.testing.assert_close(z.grad, expected)


def test_gradient_through_the_weight_inflates_uncertainty():
    """Why the default stops the gradient at (1 - kappa-hat): after the same 20 Adam steps on free logits, the
    literal Eq. 7 has raised kappa until kappa-hat clamps at 1 (every point a conformal null, weight 0); with the
    stop-gradient weight kappa grows only as far as fitting the labels moves p_theta away from p_phi."""
    final = {}
    for variant in ("paper", "paper_grad"):
        torch.manual_seed(0)
        r = torch.randn(64, 25)  # f_phi's logits (frozen)
        y = torch.distributions.Categorical(logits=r).sample()
        z = (r + 0.3 * torch.randn(64, 25)).requires_grad_(True)  # f_theta close to f_phi
        hi = float(kl_uncertainty(z.detach(), r).max()) * 1.5
        optimiser = torch.optim.Adam([z], lr=0.02)
        for _ in range(20):
            optimiser.zero_grad()
            risk_aware_loss(z, r, y, 0.5, 0.0, hi, variant).backward()
            optimiser.step()
        final[variant] = float((kl_uncertainty(z.detach(), r) / hi).clamp(0, 1).mean())
    assert final["paper_grad"] > 0.95, final
    assert final["paper"] < final["paper_grad"] - 0.3, final


def test_code_variant_has_no_gradient_through_the_penalty():
    torch.manual_seed(1)
    z = torch.randn(5, 25, dtype=torch.float64, requires_grad=True)
    r, y = torch.randn(5, 25, dtype=torch.float64), torch.randint(0, 25, (5,))
    risk_aware_loss(z, r, y, 0.5, 0.0, 5.0, "code").backward()
    with torch.no_grad():
        kappa = kl_uncertainty(z, r)
        w = (1 - (kappa / 5.0).clamp(0, 1)).clamp(0, 1)
        w = torch.where(w > 0.6, torch.ones_like(w), w)
    expected = w[:, None] * (F.softmax(z.detach(), -1) - F.one_hot(y, 25)) / 5
    torch.testing.assert_close(z.grad, expected)


def test_non_finite_scores_rank_against_the_target():
    nan, inf = float("nan"), float("inf")
    scores = torch.tensor([[0.1, nan, 0.4], [0.9, 0.2, inf], [nan, nan, nan]])
    assert rank_of_target(scores, torch.tensor([1, 0, 2])).tolist() == [3, 2, 3]


def test_a_nan_scoring_model_ranks_last_in_the_board_metrics():
    from lightning_modules.dtr.base import DTRModule

    module = DTRModule(vitals_dim=1, meds_dim=1, notes_dim=1, demo_dim=1, history_len=1, num_actions=25, topk=3)
    n = 40
    target = torch.arange(n) % 25
    data = {"probs": torch.full((n, 25), float("nan")), "target": target.float(), "died": torch.zeros(n),
            "calib": torch.zeros(n), "state": torch.zeros(n), "cf_rec": torch.zeros(n)}
    m = module.eval_metrics(data)
    assert m["hr@3"] == 0 and m["mrr@3"] == 0 and m["mrr@3_hits"] == 0 and m["top1_acc"] == 0
    assert m["micro_auc"] == pytest.approx(0.0) and m["macro_auc"] == pytest.approx(0.0)
    assert math.isnan(m["est_mort_reduction"])
    # one NaN row among perfect predictions ranks last, the others keep their ranks
    probs = F.one_hot(target, 25).float()
    probs[0] = float("nan")
    m = module.eval_metrics({**data, "probs": probs})
    assert m["hr@3"] == pytest.approx((n - 1) / n) and m["mrr@3"] == pytest.approx((n - 1) / n)


def test_resplit_fdr_estimator_is_unbiased_on_iid_scores():
    """i.i.d. synthetic units (one per patient) with a known null share: the mean over re-splits of one pool,
    averaged over pools, matches the FDR of fresh independent draws of the same sizes, and both respect alpha."""
    from lightning_modules.dtr.metrics import conformal_resplits

    c, alpha, pool_size = 0.5, 0.2, 120

    def draw(rng, n):
        h = rng.normal(size=(n, 2))
        kappa = 1 / (1 + np.exp(-(1.5 * h[:, 0] + rng.normal(size=n))))  # null share P(kappa >= 0.5) = 1/2
        return h, kappa

    rng = np.random.default_rng(0)
    # the estimator: many re-splits of each pool
    estimates = [conformal_resplits(*draw(rng, pool_size), np.arange(pool_size), [alpha], [c], repetitions=40,
                                    seed=s)[(alpha, c)]["fdr"] for s in range(30)]
    # the truth: one split of each of many fresh pools (a fresh draw of fit, calibration and test units)
    fresh = [conformal_resplits(*draw(rng, pool_size), np.arange(pool_size), [alpha], [c], repetitions=2,
                                seed=1000 + s)[(alpha, c)]["fdr"] for s in range(600)]
    est, truth = np.mean(estimates), np.mean(fresh)
    se = np.sqrt(np.var(estimates, ddof=1) / len(estimates) + np.var(fresh, ddof=1) / len(fresh))
    assert abs(est - truth) < 3 * se + 0.01, (est, truth, se)
    assert truth < alpha + 3 * np.std(fresh) / np.sqrt(len(fresh)) and est > 0.02  # controlled, not trivially 0
    # the known null share
    _, kappa = draw(np.random.default_rng(1), 20000)
    assert abs((kappa >= c).mean() - 0.5) < 0.02


def test_resplits_keep_patients_whole_and_report_mc_error():
    from lightning_modules.dtr import metrics as M

    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(60), 4)
    h = rng.normal(size=(240, 3))
    kappa = 1 / (1 + np.exp(-h[:, 0]))
    picked = M.one_per_group(groups, rng)
    assert sorted(groups[picked].tolist()) == list(range(60))
    out = M.conformal_resplits(h, kappa, groups, [0.1, 0.3], [0.5], repetitions=50)
    assert out[(0.3, 0.5)]["power"] >= out[(0.1, 0.5)]["power"]
    assert 0 < out[(0.3, 0.5)]["fdr_se"] < 0.1
    with pytest.raises(ValueError, match="at least 4 patients"):
        M.conformal_resplits(h[:3], kappa[:3], np.arange(3), [0.1], [0.5])
