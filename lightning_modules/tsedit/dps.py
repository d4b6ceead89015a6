"""Diffusion Posterior Sampling (DPS; Chung et al., ICLR 2023, Alg. 1) with the constraints as a linear measurement.

y = A x0 collects the anchor values (rows weighted by sqrt(confidence): confidence acts as the observation
precision) and the segment targets (in per-point units). Each step: an ordinary DDIM step gives x'_{t-1}, then
x_{t-1} = x'_{t-1} - zeta_t grad_{x_t} ||y - A x0_hat(x_t)||^2 with zeta_t = zeta / ||y - A x0_hat(x_t)|| (the
step-size rule of the paper's Alg. 1 / App. C), the gradient taken through the denoiser.
Promise: constraints approached softly, no exactness; costs one backward pass per step.
"""
from __future__ import annotations

import torch

from contracts.batch import tsedit as B
from contracts.registry import register_model
from lightning_modules.tsedit.base import TSEditModule
from lightning_modules.tsedit.constraints import segment_stats


def measurement_residual(x0: torch.Tensor, batch: dict) -> torch.Tensor:
    """[B, C*L + K]: sqrt(w) (x0 - v) on anchors, (<W,x0> - m)/scale on active segments, 0 elsewhere."""
    conf = batch[B.ANCHOR_CONF]
    anchor = (conf.sqrt() * (x0 - batch[B.ANCHOR_VALUE])).flatten(1)
    segment = (segment_stats(x0, batch[B.SEG_WEIGHT]) - batch[B.SEG_TARGET]) / batch[B.SEG_SCALE] * batch[B.SEG_ACTIVE]
    return torch.cat([anchor, segment], dim=1)


@register_model("dps", family="tsedit")
class DPS(TSEditModule):
    def __init__(self, channels: int, window: int, num_classes: int, zeta: float = 1.0, **backbone_and_editing):
        super().__init__(channels, window, num_classes, **backbone_and_editing)
        self.zeta = zeta
        self.save_hyperparameters()

    def step(self, x, t, t_prev, batch, generator):
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            x0 = self.predict_x0(x_in, self.eps(x_in, t, batch[B.ATTR]), t)
            sq_norm = measurement_residual(x0, batch).pow(2).sum(dim=1)
            grad = torch.autograd.grad(sq_norm.sum(), x_in)[0]
        x_prev = self.ddim_step(x, x0.detach(), t, t_prev, generator)
        step_size = self.zeta / sq_norm.detach().sqrt().clamp(min=1e-8)
        return x_prev - step_size[:, None, None] * grad

    @staticmethod
    def search_space(trial) -> dict:
        return {**TSEditModule.search_space(trial), "zeta": trial.suggest_float("zeta", 0.05, 3.0, log=True)}
