"""Editing metrics: per edit (vectorised over the batch) and set-level (`edit_report`, over every task of a split).

Set level, the board's questions (`edit_report`; all series in training standard deviations):
  segment_rel_error  |<W,x_edit> - m| / |m - <W,x_src>| per active segment: 0 = target met, 1 = no closer than the
                     source (a copy scores 1), averaged over segments
  anchor_rel_error   the same for anchors, |x_edit - v| / |v - x_src|, confidence-weighted
  anchor_pull_c50/c75/c100  mean pull (x_edit - x_src) / (v - x_src) of anchors with confidence 0.5 / 0.75 / 1
                     (1 = reached, 0 = not moved)
  anchor_conf_slope  least-squares slope of pull on confidence; anchor_conf_corr  Spearman rank correlation of
                     pull and confidence (0 when either is constant). Following confidence (higher confidence, closer
                     adherence) gives a positive slope and correlation; a method that ignores confidence (every anchor
                     met, or none) a flat line: 0
  boundary_jump      sum |dx_edit| / sum |dx_src| over the first differences at the edit's boundaries (into and out
                     of every anchor, across each segment's two ends): 1 = as smooth as the source there
  jump_rate          share of those boundary differences beyond the 99th percentile of the data's own |dx| (per
                     channel, over every position of the split's real source windows); jump_rate_src is the same
                     for the sources (the data's own rate)
  realism_fd         Frechet distance between encoder features of the edits and of held-out real windows with the
                     same attribute (per attribute, weighted by the edits' counts); realism_fd_real is the same for
                     the real source windows (the floor at this sample size), realism_fd_wrong for the sources against
                     real windows of the other attributes; realism_gap = (realism_fd - realism_fd_real) /
                     realism_fd_wrong (0 = as real as real windows; 1 = as far again as a wrong-attribute window)
  constraint_error   every constraint's relative error capped at 1, anchors weighted by confidence, segments by 1
  edit_error         the primary: (constraint_error + max(0, realism_gap)) / 2 (constraint_error alone without a
                     realism reference)
The encoder (`realism_encoder`) is a small 1-D CNN trained contrastively on training windows (two views by
amplitude scaling, jitter and masking; InfoNCE), in the spirit of Context-FID (Diffusion-TS) with a TS2Vec-like
encoder; it never sees validation or test windows.

Per edit (all in training standard deviations):
  anchor_error     confidence-weighted mean |x[c,t] - v| over anchors:  sum w|e| / sum w
  segment_error    |<W,x> - m| / scale per active segment (scale = 1 for means, n for sums: a per-point error)
  constraint_met   share of constraints (anchors and segments) met within their tolerance
  preservation_mse mean squared difference to the source outside the edited region
  anchor_roughness mean |x[t-1] - 2x[t] + x[t+1]| at anchors (a kink detector; compare with the source's)
A non-finite edit gives NaN errors (its constraints count as not met); the family's MeanMetrics keep NaN, so the
method's mean errors are NaN, never a good number.
  spectral_dist    (set level) mean over channels and frequencies of |log PSD_edit - log PSD_src| (PSDs averaged
                   over windows)
"""
from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

from contracts.batch import tsedit as B
from lightning_modules.tsedit.constraints import segment_stats


def second_difference(x: torch.Tensor) -> torch.Tensor:
    """|x[t-1] - 2x[t] + x[t+1]| with zeros at both ends, same shape as x."""
    d2 = (x[..., :-2] - 2 * x[..., 1:-1] + x[..., 2:]).abs()
    return torch.nn.functional.pad(d2, (1, 1))


def edit_metrics(edited: torch.Tensor, batch: dict, anchor_tol: float, segment_tol: float) -> dict:
    """Per-edit values and their weights: {name: (values [N], weights [N] or None)} for MeanMetric.update."""
    conf = batch[B.ANCHOR_CONF]
    has_anchor = conf > 0
    anchor_abs = (edited - batch[B.ANCHOR_VALUE]).abs()
    conf_sum = conf.sum(dim=(1, 2))
    weighted = (conf * anchor_abs).sum(dim=(1, 2))
    rows = conf_sum > 0
    active = batch[B.SEG_ACTIVE] > 0
    seg_err = (segment_stats(edited, batch[B.SEG_WEIGHT]) - batch[B.SEG_TARGET]).abs() / batch[B.SEG_SCALE]
    seg_err = seg_err[active]
    anchor_met = (anchor_abs[has_anchor] <= anchor_tol).float()
    segment_met = (seg_err <= segment_tol).float()
    keep = batch[B.EDIT_MASK] <= 0
    kept = keep.sum(dim=(1, 2)).clamp(min=1)
    preservation = (((edited - batch[B.X]) ** 2) * keep).sum(dim=(1, 2)) / kept
    rough_edit = second_difference(edited)[has_anchor & _interior(conf)]
    rough_src = second_difference(batch[B.X])[has_anchor & _interior(conf)]
    return {
        "anchor_error": (weighted[rows] / conf_sum[rows], conf_sum[rows]),
        "segment_error": (seg_err, None),
        "anchor_met": (anchor_met, None),
        "segment_met": (segment_met, None),
        "constraint_met": (torch.cat([anchor_met, segment_met]), None),
        "preservation_mse": (preservation, kept.float()),
        "anchor_roughness": (rough_edit, None),
        "anchor_roughness_src": (rough_src, None),
    }


def _interior(like: torch.Tensor) -> torch.Tensor:
    mask = torch.zeros_like(like, dtype=torch.bool)
    mask[..., 1:-1] = True
    return mask


REPORT_KEYS = (B.X, B.ATTR, B.ANCHOR_VALUE, B.ANCHOR_CONF, B.SEG_WEIGHT, B.SEG_TARGET, B.SEG_SCALE, B.SEG_ACTIVE,
               B.EDIT_MASK)
CONFIDENCE_BINS = {"c50": (0.0, 0.625), "c75": (0.625, 0.875), "c100": (0.875, 1.01)}


def anchor_pulls(edited: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Confidence and pull (x_edit - x_src) / (v - x_src) of every anchor: two [A] tensors."""
    conf = batch[B.ANCHOR_CONF]
    on = conf > 0
    requested = (batch[B.ANCHOR_VALUE] - batch[B.X])[on]
    requested = torch.where(requested.abs() < 1e-6, torch.full_like(requested, 1e-6), requested)
    return conf[on], (edited - batch[B.X])[on] / requested


def segment_relative_errors(edited: torch.Tensor, batch: dict) -> torch.Tensor:
    """|<W,x_edit> - m| / |m - <W,x_src>| for every active segment: [S]."""
    active = batch[B.SEG_ACTIVE] > 0
    target = batch[B.SEG_TARGET]
    requested = (target - segment_stats(batch[B.X], batch[B.SEG_WEIGHT])).abs().clamp(min=1e-6)
    return ((segment_stats(edited, batch[B.SEG_WEIGHT]) - target).abs() / requested)[active]


def boundary_mask(batch: dict) -> torch.Tensor:
    """[B,C,L-1] True at the first differences d[j] = x[j+1] - x[j] that cross an edit boundary: into and out of
    every anchor (j = t-1, t) and across each active segment's ends (j = start-1, end-1)."""
    conf = batch[B.ANCHOR_CONF] > 0
    mask = conf[..., 1:] | conf[..., :-1]
    inside = (batch[B.SEG_WEIGHT] != 0) & (batch[B.SEG_ACTIVE] > 0)[:, :, None, None]  # [B,K,C,L]
    edges = (inside[..., 1:] != inside[..., :-1]).any(dim=1)
    return mask | edges


def jump_statistics(edited: torch.Tensor, batch: dict, quantile: float = 0.99,
                    jump_limit: torch.Tensor | None = None) -> dict[str, float]:
    """boundary_jump, jump_rate, jump_rate_src; `jump_limit` [C] replaces the sources' own |dx| quantile (the API
    passes the quantile over a user's whole series)."""
    source = batch[B.X]
    at = boundary_mask(batch)
    d_edit, d_src = edited.diff(dim=-1).abs(), source.diff(dim=-1).abs()
    # the data's own scale: the per-channel quantile of |dx| over every position of the real source windows
    limit = jump_limit if jump_limit is not None else \
        torch.quantile(d_src.transpose(0, 1).reshape(source.shape[1], -1).double(), quantile, dim=1).float()
    limit = limit.float()[None, :, None].expand_as(d_src)
    if not at.any():
        return {"boundary_jump": math.nan, "jump_rate": math.nan, "jump_rate_src": math.nan}
    return {"boundary_jump": (d_edit[at].sum() / d_src[at].sum().clamp(min=1e-12)).item(),
            "jump_rate": (d_edit[at] > limit[at]).float().mean().item(),
            "jump_rate_src": (d_src[at] > limit[at]).float().mean().item()}


def confidence_statistics(conf: torch.Tensor, pull: torch.Tensor) -> dict[str, float]:
    out = {f"anchor_pull_{name}": pull[(conf > lo) & (conf <= hi)].mean().item() if ((conf > lo) & (conf <= hi)).any()
           else math.nan for name, (lo, hi) in CONFIDENCE_BINS.items()}
    if len(conf) < 2:
        return {**out, "anchor_conf_slope": math.nan, "anchor_conf_corr": math.nan}
    c, p = conf.double() - conf.double().mean(), pull.double() - pull.double().mean()
    slope = (c * p).sum() / (c * c).sum() if (c * c).sum() > 0 else torch.zeros((), dtype=torch.float64)
    flat = bool((conf == conf[0]).all() or (pull - pull[0]).abs().max() < 1e-6)
    # pulls equal to 1e-6 are ties (float noise would otherwise break them and lower the rank correlation)
    corr = 0.0 if flat else float(spearmanr(conf.numpy(), np.round(pull.double().numpy(), 6)).statistic)
    return {**out, "anchor_conf_slope": float(slope), "anchor_conf_corr": corr}


def edit_report(edited: torch.Tensor, batch: dict, reference: torch.Tensor | None = None,
                reference_attr: torch.Tensor | None = None, encoder: nn.Module | None = None,
                jump_limit: torch.Tensor | None = None) -> dict[str, float]:
    """The set-level metrics of the module docstring for edits [N,C,L] of the tasks `batch` (see
    `contracts.batch.tsedit`); realism needs held-out real windows, their attributes and an encoder. Every value is
    NaN when an edit is not finite, so a diverged method never ranks first."""
    edited = edited.detach().float().cpu()
    batch = {k: v.detach().cpu() for k, v in batch.items()}
    names = ["segment_rel_error", "anchor_rel_error", *(f"anchor_pull_{n}" for n in CONFIDENCE_BINS), "anchor_conf_slope",
             "anchor_conf_corr", "boundary_jump", "jump_rate", "jump_rate_src", "constraint_error", "edit_error"]
    if reference is not None:
        names += ["realism_fd", "realism_fd_real", "realism_fd_wrong", "realism_gap"]
    if not torch.isfinite(edited).all():
        return dict.fromkeys(names, math.nan)
    seg = segment_relative_errors(edited, batch)
    conf, pull = anchor_pulls(edited, batch)
    anchor_rel = (1 - pull).abs()
    out = {"segment_rel_error": seg.mean().item() if seg.numel() else math.nan,
           "anchor_rel_error": ((conf * anchor_rel).sum() / conf.sum()).item() if conf.numel() else math.nan,
           **confidence_statistics(conf, pull), **jump_statistics(edited, batch, jump_limit=jump_limit)}
    weight = conf.sum() + seg.numel()
    out["constraint_error"] = ((conf * anchor_rel.clamp(max=1)).sum() + seg.clamp(max=1).sum()).item() / max(float(weight), 1e-12)
    out["edit_error"] = out["constraint_error"]
    if reference is not None:
        out.update(realism(edited, batch[B.X], batch[B.ATTR], reference.float().cpu(), reference_attr.cpu(), encoder))
        out["edit_error"] = (out["constraint_error"] + max(0.0, out["realism_gap"])) / 2
    return out


# ----- realism: Frechet distance in the feature space of a small encoder trained on the training windows ----------
class RealismEncoder(nn.Module):
    def __init__(self, channels: int, hidden: int = 32, features: int = 16):
        super().__init__()
        self.net = nn.Sequential(nn.Conv1d(channels, hidden, 5, padding=2), nn.GELU(),
                                 nn.Conv1d(hidden, hidden, 5, padding=2, stride=2), nn.GELU(),
                                 nn.Conv1d(hidden, hidden, 5, padding=2, stride=2), nn.GELU(),
                                 nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(hidden, features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    B, C, L = x.shape
    scale = 0.8 + 0.4 * torch.rand(B, C, 1, generator=generator)
    jitter = 0.1 * torch.randn(B, C, L, generator=generator)
    keep = (torch.rand(B, 1, L, generator=generator) > 0.1).float()
    return (x * scale + jitter) * keep


def train_realism_encoder(windows: torch.Tensor, seed: int = 0, steps: int = 300, batch_size: int = 128,
                          temperature: float = 0.1) -> RealismEncoder:
    """Instance-contrastive (InfoNCE) training on two augmented views of each training window; deterministic."""
    generator = torch.Generator().manual_seed(seed)
    windows = windows.detach().float().cpu()
    with torch.random.fork_rng(devices=[]), torch.inference_mode(False), torch.enable_grad():
        torch.manual_seed(seed)
        encoder = RealismEncoder(windows.shape[1])
        optimiser = torch.optim.Adam(encoder.parameters(), lr=1e-3)
        labels = torch.arange(min(batch_size, len(windows)))
        for _ in range(steps):
            x = windows[torch.randint(0, len(windows), (len(labels),), generator=generator)]
            a = nn.functional.normalize(encoder(_augment(x, generator)), dim=1)
            b = nn.functional.normalize(encoder(_augment(x, generator)), dim=1)
            logits = a @ b.T / temperature
            loss = (nn.functional.cross_entropy(logits, labels) + nn.functional.cross_entropy(logits.T, labels)) / 2
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return encoder.eval().requires_grad_(False)


def realism_encoder(windows: torch.Tensor, seed: int = 0, steps: int = 300, cache: Path | None = None) -> RealismEncoder:
    """`train_realism_encoder`, cached in `cache` (weights only) when given: every method of a seed shares it."""
    if cache is not None and Path(cache).exists():
        encoder = RealismEncoder(windows.shape[1])
        encoder.load_state_dict(torch.load(cache, map_location="cpu", weights_only=True))
        return encoder.eval().requires_grad_(False)
    encoder = train_realism_encoder(windows, seed, steps)
    if cache is not None:
        cache = Path(cache)
        cache.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache.parent, suffix=".tmp")
        os.close(fd)
        torch.save(encoder.state_dict(), tmp)
        os.replace(tmp, cache)
    return encoder


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2) of two feature sets [n, d] (float64)."""
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T
    middle = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp(min=0).sqrt().sum()
    return float((mu_a - mu_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * middle)


def realism(edited: torch.Tensor, source: torch.Tensor, attr: torch.Tensor, reference: torch.Tensor,
            reference_attr: torch.Tensor, encoder: nn.Module) -> dict[str, float]:
    """Per-attribute Frechet distances (edits and sources against held-out real windows), weighted by counts."""
    with torch.no_grad():
        f_edit, f_src, f_ref = encoder(edited), encoder(source), encoder(reference)
    totals = {"fd": 0.0, "real": 0.0, "wrong": 0.0}
    count = 0
    for k in attr.unique().tolist():
        mine, same, other = attr == k, reference_attr == k, reference_attr != k
        if mine.sum() < 2 or same.sum() < 2 or other.sum() < 2:
            continue
        n = int(mine.sum())
        totals["fd"] += n * frechet_distance(f_edit[mine], f_ref[same])
        totals["real"] += n * frechet_distance(f_src[mine], f_ref[same])
        totals["wrong"] += n * frechet_distance(f_src[mine], f_ref[other])
        count += n
    if count == 0:
        return {"realism_fd": math.nan, "realism_fd_real": math.nan, "realism_fd_wrong": math.nan, "realism_gap": math.nan}
    fd, real, wrong = (totals[k] / count for k in ("fd", "real", "wrong"))
    return {"realism_fd": fd, "realism_fd_real": real, "realism_fd_wrong": wrong,
            "realism_gap": (fd - real) / max(wrong, 1e-12)}


def spectral_distance(real: torch.Tensor, fake: torch.Tensor, eps: float = 1e-8) -> float:
    """Mean |log PSD_fake - log PSD_real| over channels and non-zero frequencies, PSDs averaged over windows; NaN when
    an edit is not finite."""
    if not torch.isfinite(fake).all():
        return float("nan")
    def log_psd(x):
        x = x.float() - x.float().mean(dim=-1, keepdim=True)
        return torch.log((torch.fft.rfft(x, dim=-1).abs() ** 2).mean(dim=0)[:, 1:] + eps)

    return (log_psd(fake) - log_psd(real)).abs().mean().item()
