"""The dtr family's evaluation and SAFER's statistical pieces, as plain functions (tested against formulas).

- `rank_of_target`, `hit_and_reciprocal_rank`: HR@k and MRR@k from the rank of the clinician's action among the
  25 (ties and non-finite scores count against the target). Standard MRR@k counts a miss as 0; the SAFER code averages the reciprocal
  rank over hits only (`utils.py`), reported as the secondary `mrr@k_hits`.
- `kl_uncertainty`: SAFER's kappa = KL(p_theta || p_phi) (paper Eq. 5).
- `risk_aware_loss`: paper Eq. 7 (gradient through the weight and the penalty) or the official code's variant.
- `conformal_pvalues`, `benjamini_hochberg`, `conformal_selection`: selection with conformal p-values and BH
  (Jin & Candes 2023, JMLR, "Selection by prediction with conformal p-values"; SAFER paper §5, Theorem 5.1).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def rank_of_target(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1-based rank of target among the columns; ties and non-finite scores count against the target (a NaN or
    +-inf target ranks last; any other NaN or +-inf column ranks above it)."""
    target_score = scores.gather(1, target[:, None])
    beats = (scores >= target_score) | ~torch.isfinite(scores) | ~torch.isfinite(target_score)
    return beats.sum(1)


def worst_for_nonfinite(probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """`probs` [B, A] with each non-finite entry replaced by the worst value for the AUC: 0 for the target's
    column, 1 for the others (a NaN would otherwise make torchmetrics' AUROC squash the batch and rank it high)."""
    worst = 1.0 - F.one_hot(target, probs.shape[1]).to(probs.dtype)
    return torch.where(torch.isfinite(probs), probs, worst)


def hit_and_reciprocal_rank(rank: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    hit = (rank <= k).float()
    return hit, hit / rank.float()


def kl_uncertainty(logits_theta: torch.Tensor, logits_phi: torch.Tensor) -> torch.Tensor:
    """kappa_i = sum_l p_theta(l) [log p_theta(l) - log p_phi(l)]  (Eq. 5; code: F.kl_div(log_softmax(refine),
    softmax(logits)).sum(1), the same quantity)."""
    log_p = F.log_softmax(logits_theta, dim=-1)
    return (log_p.exp() * (log_p - F.log_softmax(logits_phi, dim=-1))).sum(-1)


def normalise_kappa(kappa: torch.Tensor, kappa_min: float, kappa_max: float) -> torch.Tensor:
    """kappa-hat in [0, 1] from the min and max recorded by the check step (`check_difference`). The code writes
    `diff - min/(max-min)` (an operator-precedence bug); we use the intended (diff - min)/(max - min)."""
    return ((kappa - kappa_min) / max(kappa_max - kappa_min, 1e-12)).clamp(0, 1)


def risk_aware_loss(logits_theta: torch.Tensor, logits_phi: torch.Tensor, target: torch.Tensor, gamma: float,
                    kappa_min: float, kappa_max: float, variant: str = "paper") -> torch.Tensor:
    """Risk-aware fine-tuning loss, paper Eq. 7: L = 1/N sum_i [ (1 - kappa-hat_i) CE_i + gamma kappa_i^2 ], with
    kappa_i = KL(p_theta || p_phi) (f_phi frozen; its logits may still depend on theta through h).

    paper (default): the weight (1 - kappa-hat_i) is a per-sample importance weight computed without gradient (as
        the official code computes it, under no_grad); the penalty gamma kappa_i^2 carries gradient (Eq. 7).
    paper_grad: gradient also through the weight. This literal reading is degenerate: d/d kappa of
        (1 - kappa-hat) CE = -CE / (max - min), so the model lowers its loss by RAISING its uncertainty until
        kappa-hat clamps at 1 and the sample's CE weight is 0 (on dtr-icu-sepsis it drove the median kappa from
        0.6 to 1.15 nats, above the training max, in two epochs; every test point then became a conformal null).
    code (`train.py`): w = clamp(1 - kappa-hat, 0, 1), w[w > 0.6] = 1, L = mean(CE w + gamma (1 - w)) with w
        computed under no_grad: the gamma term carries no gradient (CE re-weighting only).
    """
    ce = F.cross_entropy(logits_theta, target, reduction="none")
    kappa = kl_uncertainty(logits_theta, logits_phi)
    if variant in ("paper", "paper_grad"):
        kappa_hat = normalise_kappa(kappa, kappa_min, kappa_max)
        if variant == "paper":
            kappa_hat = kappa_hat.detach()
        return ((1 - kappa_hat) * ce + gamma * kappa.pow(2)).mean()
    if variant == "code":
        with torch.no_grad():
            w = (1 - normalise_kappa(kappa, kappa_min, kappa_max)).clamp(0, 1)
            w = torch.where(w > 0.6, torch.ones_like(w), w)
        return (ce * w + gamma * (1 - w)).mean()
    raise ValueError(f"unknown risk-aware loss variant {variant!r}; use 'paper', 'paper_grad' or 'code'")


def conformal_pvalues(calib_pred: np.ndarray, calib_null: np.ndarray, test_pred: np.ndarray,
                      rng: np.random.Generator) -> np.ndarray:
    """Randomised conformal p-values of Jin & Candes (2023), for nulls H_j: kappa_j >= c ("not reliable"):

        p_j = [ sum_i 1{pred_i < pred_j, null_i} + U_j (1 + sum_i 1{pred_i = pred_j, null_i}) ] / (n + 1),

    where pred is the predicted kappa, null_i = 1{kappa_i >= c} on the n calibration points, U_j ~ Unif(0,1).
    A small predicted kappa gives a small p-value (evidence of reliability). Vectorised with a sort."""
    null_pred = np.sort(calib_pred[calib_null.astype(bool)])
    below = np.searchsorted(null_pred, test_pred, side="left")
    equal = np.searchsorted(null_pred, test_pred, side="right") - below
    u = rng.random(len(test_pred))
    return (below + u * (1 + equal)) / (len(calib_pred) + 1)


def benjamini_hochberg(pvalues: np.ndarray, alpha: float) -> np.ndarray:
    """Boolean selection: k = max{r : p_(r) <= alpha r / m}; select p_j <= alpha k / m (none when no such r)."""
    m = len(pvalues)
    if m == 0:
        return np.zeros(0, dtype=bool)
    sorted_p = np.sort(pvalues)
    ok = np.flatnonzero(sorted_p <= alpha * np.arange(1, m + 1) / m)
    if len(ok) == 0:
        return np.zeros(m, dtype=bool)
    return pvalues <= alpha * (ok[-1] + 1) / m


def fdr_and_power(selected: np.ndarray, null: np.ndarray) -> tuple[float, float]:
    """Realised FDR = #{selected and null} / max(1, #selected); power = #{selected, non-null} / max(1, #non-null)."""
    false = (selected & null).sum()
    fdr = false / max(1, selected.sum())
    power = (selected & ~null).sum() / max(1, (~null).sum())
    return float(fdr), float(power)


def conformal_selection(pool_h: np.ndarray, pool_kappa: np.ndarray, test_h: np.ndarray, test_kappa: np.ndarray,
                        alphas, cs, repetitions: int = 100, train_fraction: float = 0.7, ridge: float = 1.0,
                        seed: int = 0, pool_groups: np.ndarray | None = None
                        ) -> dict[tuple[float, float], tuple[float, float]]:
    """SAFER's selection protocol (`logistic_regression.py`, `conformal_fdr.py`): per repetition, split the
    calibration pool 70/30, fit a ridge regression kappa-hat(h) on the 70 %, compute conformal p-values of the
    test points against the 30 %, run BH at each alpha; return the mean realised (FDR, power) per (alpha, c).

    `pool_groups` (the patient of each pool point) makes the 70/30 split patient-level. The conformal guarantee
    needs the 30 % to be exchangeable with the test points, which come from unseen patients; a window-level split
    puts windows of one patient (sharing 7 of 8 history steps) on both sides, so the regression has seen the
    calibration patients and its calibration predictions are better than its test predictions. The code's data
    has one window per stay, so its window-level split is a patient-level one."""
    rng = np.random.default_rng(seed)
    n = len(pool_kappa)
    groups = np.arange(n) if pool_groups is None else np.unique(np.asarray(pool_groups), return_inverse=True)[1]
    num_groups = groups.max() + 1 if n else 0
    out = {(a, c): [0.0, 0.0] for a in alphas for c in cs}
    mu, sd = pool_h.mean(0), pool_h.std(0) + 1e-6
    zp, zt = (pool_h - mu) / sd, (test_h - mu) / sd
    for _ in range(repetitions):
        fit_group = np.zeros(num_groups, dtype=bool)
        fit_group[rng.permutation(num_groups)[: int(train_fraction * num_groups)]] = True
        fit, cal = np.flatnonzero(fit_group[groups]), np.flatnonzero(~fit_group[groups])
        x = np.c_[zp[fit], np.ones(len(fit))]
        w = np.linalg.solve(x.T @ x + ridge * np.eye(x.shape[1]), x.T @ pool_kappa[fit])
        pred_cal, pred_test = np.c_[zp[cal], np.ones(len(cal))] @ w, np.c_[zt, np.ones(len(zt))] @ w
        for c in cs:
            p = conformal_pvalues(pred_cal, pool_kappa[cal] >= c, pred_test, rng)
            null = test_kappa >= c
            for a in alphas:
                fdr, power = fdr_and_power(benjamini_hochberg(p, a), null)
                out[(a, c)][0] += fdr / repetitions
                out[(a, c)][1] += power / repetitions
    return {k: (v[0], v[1]) for k, v in out.items()}
