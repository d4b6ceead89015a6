"""Editing metrics (per edit, vectorised over the batch) and the set-level realism scores.

Per edit (all in training standard deviations):
  anchor_error     confidence-weighted mean |x[c,t] - v| over anchors:  sum w|e| / sum w
  segment_error    |<W,x> - m| / scale per active segment (scale = 1 for means, n for sums: a per-point error)
  constraint_met   share of constraints (anchors and segments) met within their tolerance
  preservation_mse mean squared difference to the source outside the edited region
  anchor_roughness mean |x[t-1] - 2x[t] + x[t+1]| at anchors (a kink detector; compare with the source's)
A non-finite edit gives NaN errors (its constraints count as not met); the family's MeanMetrics keep NaN, so the
method's mean errors are NaN, never a good number.
Set level (computed once over all edits of a method):
  disc_score       |accuracy - 0.5| of a small 1-D CNN trained to tell edits from real windows on one half and
                   tested on the other (TimeGAN's discriminative score; 0 = indistinguishable)
  spectral_dist    mean over channels and frequencies of |log PSD_edit - log PSD_real| (PSDs averaged over windows)
"""
from __future__ import annotations

import torch
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


class _Discriminator(nn.Module):
    def __init__(self, channels: int, hidden: int = 32):
        super().__init__()
        self.net = nn.Sequential(nn.Conv1d(channels, hidden, 5, padding=2), nn.ReLU(),
                                 nn.Conv1d(hidden, hidden, 5, padding=2, stride=2), nn.ReLU(),
                                 nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(hidden, 1))

    def forward(self, x):
        return self.net(x).squeeze(-1)


def discriminative_score(real: torch.Tensor, fake: torch.Tensor, steps: int = 300, seed: int = 0) -> float:
    """Train on half of (real, fake), report |test accuracy - 0.5| on the other half. Full-batch Adam, fixed seed.
    NaN when an edit is not finite: a discriminator trained on NaN outputs NaN and scores chance, the best value."""
    if not torch.isfinite(fake).all():
        return float("nan")
    with torch.inference_mode(False):  # called from Lightning's eval loops, which run in inference mode
        return _discriminative_score(real.detach().float().cpu().clone(), fake.detach().float().cpu().clone(), steps, seed)


def _discriminative_score(real: torch.Tensor, fake: torch.Tensor, steps: int, seed: int) -> float:
    generator = torch.Generator().manual_seed(seed)
    n = min(len(real), len(fake))
    real, fake = real[:n], fake[:n]
    order = torch.randperm(n, generator=generator)
    half = n // 2
    train_idx, test_idx = order[:half], order[half:]
    x_train = torch.cat([real[train_idx], fake[train_idx]])
    y_train = torch.cat([torch.ones(half), torch.zeros(half)])
    x_test = torch.cat([real[test_idx], fake[test_idx]])
    y_test = torch.cat([torch.ones(n - half), torch.zeros(n - half)])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _Discriminator(real.shape[1])
        optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
        with torch.enable_grad():
            for _ in range(steps):
                optimiser.zero_grad()
                loss = nn.functional.binary_cross_entropy_with_logits(model(x_train), y_train)
                loss.backward()
                optimiser.step()
        with torch.no_grad():
            accuracy = ((model(x_test) > 0).float() == y_test).float().mean().item()
    return abs(accuracy - 0.5)


def spectral_distance(real: torch.Tensor, fake: torch.Tensor, eps: float = 1e-8) -> float:
    """Mean |log PSD_fake - log PSD_real| over channels and non-zero frequencies, PSDs averaged over windows; NaN when
    an edit is not finite."""
    if not torch.isfinite(fake).all():
        return float("nan")
    def log_psd(x):
        x = x.float() - x.float().mean(dim=-1, keepdim=True)
        return torch.log((torch.fft.rfft(x, dim=-1).abs() ** 2).mean(dim=0)[:, 1:] + eps)

    return (log_psd(fake) - log_psd(real)).abs().mean().item()
