"""Constrained Posterior Sampling (CPS; Narasimhan et al., "Constrained Posterior Sampling: Time Series
Generation with Hard Constraints", 2024): at every denoising step the predicted clean series x0_hat is projected
onto the constraint set, and the step continues from the projected x0_hat (DDIM posterior for it).

Difference from the paper, flag `penalty_schedule`: CPS solves a penalised problem
min ||z - x0_hat||^2 + rho_t * violation(z) with rho_t growing as noise falls. Our constraints (anchors and linear
segment statistics) are affine, so we use the exact Euclidean projection, i.e. the rho -> infinity limit, at every
step (`penalty_schedule="exact"`); `"late"` projects only at steps t <= late_start * t0, t0 being the step the
edit starts from (with late_start 0.5: the second half of the steps actually taken; a weaker schedule).
Promise: every constraint met exactly at the end (the last step returns the projected x0_hat).
"""
from __future__ import annotations

import torch

from contracts.batch import tsedit as B
from contracts.registry import register_model
from lightning_modules.tsedit.base import TSEditModule, schedule_weight
from lightning_modules.tsedit.overwrite import project_batch


@register_model("cps", family="tsedit")
class ConstrainedPosteriorSampling(TSEditModule):
    def __init__(self, channels: int, window: int, num_classes: int, penalty_schedule: str = "exact",
                 late_start: float = 0.5, **backbone_and_editing):
        super().__init__(channels, window, num_classes, **backbone_and_editing)
        if penalty_schedule not in ("exact", "late"):
            raise ValueError(f"penalty_schedule must be 'exact' or 'late', got {penalty_schedule!r}")
        self.penalty_schedule, self.late_start = penalty_schedule, late_start
        self.save_hyperparameters()

    def step(self, x, t, t_prev, batch, generator):
        x0 = self.predict_x0(x, self.eps(x, t, batch[B.ATTR]), t)
        if self.penalty_schedule == "exact" or schedule_weight("late", t, self.start_step(), start=self.late_start) > 0:
            x0 = project_batch(x0, batch)
        return self.ddim_step(x, x0, t, t_prev, generator)

    def finalize(self, x: torch.Tensor, batch: dict) -> torch.Tensor:
        return project_batch(x, batch)

    @staticmethod
    def search_space(trial) -> dict:
        return {**TSEditModule.search_space(trial),
                "penalty_schedule": trial.suggest_categorical("penalty_schedule", ["exact", "late"])}
