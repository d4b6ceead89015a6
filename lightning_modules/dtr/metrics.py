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


def one_per_group(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of one uniformly drawn member of each group (vectorised: a random key, then the first per group)."""
    order = np.lexsort((rng.random(len(groups)), groups))
    first = np.r_[True, groups[order][1:] != groups[order][:-1]]
    return order[first]


def conformal_resplits(h: np.ndarray, kappa: np.ndarray, groups: np.ndarray, alphas, cs, repetitions: int = 200,
                       test_share: float = 0.5, fit_share: float = 0.7, ridge: float = 1.0, seed: int = 0,
                       one_window_per_patient: bool = True) -> dict[tuple[float, float], dict[str, float]]:
    """The conformal guarantee measured as one: mean false-discovery proportion (the FDR) and power over many random
    re-splits of a pool of patients that no training or model selection has touched.

    Each repetition splits the pool's patients at random into test patients (`test_share`) and the rest; the rest is
    split as SAFER's protocol splits its calibration pool: `fit_share` fits the ridge score predictor kappa-hat(h) (on
    all their windows), the remainder calibrates. Calibration and test units are one random window per patient
    (`one_window_per_patient`), so that units are i.i.d. across patients, as the guarantee (Jin & Candes 2023,
    Theorem 3) assumes; windows of one patient share history and are not. Then conformal p-values and BH at each
    alpha, for H_j: kappa_j >= c. A random split of an i.i.d. pool is distributed as a fresh draw of calibration and
    test patients, so the mean FDP over re-splits is an unbiased estimate of the FDR, with Monte-Carlo standard error
    `fdr_se` (std over repetitions / sqrt(repetitions)). Returns {(alpha, c): {fdr, fdr_se, power, power_se,
    selected}} (selected = mean share of test units selected)."""
    rng = np.random.default_rng(seed)
    groups = np.unique(np.asarray(groups), return_inverse=True)[1]
    num_groups = int(groups.max()) + 1 if len(groups) else 0
    if num_groups < 4:
        raise ValueError(f"conformal re-splits need at least 4 patients in the pool, got {num_groups}")
    mu, sd = h.mean(0), h.std(0) + 1e-6
    x_all = np.c_[(h - mu) / sd, np.ones(len(h))]
    fdp = {(a, c): np.zeros(repetitions) for a in alphas for c in cs}
    tpp, sel = {k: np.zeros(repetitions) for k in fdp}, {k: np.zeros(repetitions) for k in fdp}
    n_test = max(1, int(round(test_share * num_groups)))
    n_fit = max(1, int(round(fit_share * (num_groups - n_test))))
    for r in range(repetitions):
        role = np.empty(num_groups, dtype=np.int8)  # 0 test, 1 fit, 2 calibration
        perm = rng.permutation(num_groups)
        role[perm[:n_test]], role[perm[n_test:n_test + n_fit]], role[perm[n_test + n_fit:]] = 0, 1, 2
        unit_role = role[groups]
        fit = np.flatnonzero(unit_role == 1)
        w = np.linalg.solve(x_all[fit].T @ x_all[fit] + ridge * np.eye(x_all.shape[1]), x_all[fit].T @ kappa[fit])
        units = one_per_group(groups, rng) if one_window_per_patient else np.arange(len(groups))
        cal, test = units[unit_role[units] == 2], units[unit_role[units] == 0]
        pred_cal, pred_test = x_all[cal] @ w, x_all[test] @ w
        for c in cs:
            p = conformal_pvalues(pred_cal, kappa[cal] >= c, pred_test, rng)
            null = kappa[test] >= c
            for a in alphas:
                chosen = benjamini_hochberg(p, a)
                fdp[(a, c)][r], tpp[(a, c)][r] = fdr_and_power(chosen, null)
                sel[(a, c)][r] = chosen.mean() if len(chosen) else 0.0
    se = lambda v: float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")  # noqa: E731
    return {k: {"fdr": float(fdp[k].mean()), "fdr_se": se(fdp[k]), "power": float(tpp[k].mean()),
                "power_se": se(tpp[k]), "selected": float(sel[k].mean())} for k in fdp}
