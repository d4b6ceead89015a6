"""RePaint-style inpainting (Lugmayr et al., CVPR 2022, Alg. 1): the anchored points are the known region.

At each step the unknown part comes from the model's denoising step and the known part from the forward process
applied to the anchor values, x_{t-1}[known] = sqrt(ab_{t-1}) v + sqrt(1 - ab_{t-1}) z; with `resample_steps`
U > 1 the merged x_{t-1} is diffused back to t and the step is repeated (the paper's resampling/"harmonising").
RePaint has no notion of a segment statistic, so segment constraints are ignored, and confidence is ignored
(every anchor is known).

Differences from the paper: DDIM steps (stride T/sampling_steps) with eta=1 (ancestral noise) instead of DDPM
steps, jump length 1, U=2 resamplings by default (the paper uses T=250, jump 10, U=10; flag `resample_steps`).
Promise: anchors met exactly at the end (the last step writes v at ab = 1).
"""
from __future__ import annotations

from contracts.batch import tsedit as B
from contracts.registry import register_model
from lightning_modules.tsedit.base import TSEditModule


@register_model("repaint", family="tsedit")
class RePaint(TSEditModule):
    def __init__(self, channels: int, window: int, num_classes: int, resample_steps: int = 2, eta: float = 1.0,
                 **backbone_and_editing):
        super().__init__(channels, window, num_classes, eta=eta, **backbone_and_editing)
        if resample_steps < 1:
            raise ValueError(f"resample_steps must be >= 1, got {resample_steps}")
        self.resample_steps = resample_steps
        self.save_hyperparameters()

    def step(self, x, t, t_prev, batch, generator):
        known = batch[B.ANCHOR_CONF] > 0
        value = batch[B.ANCHOR_VALUE]
        ab_t, ab_p = self.ab(t), self.ab(t_prev)
        for u in range(self.resample_steps):
            x0 = self.predict_x0(x, self.eps(x, t, batch[B.ATTR]), t)
            x_prev = self.ddim_step(x, x0, t, t_prev, generator)
            known_prev = ab_p.sqrt() * value + (1 - ab_p).sqrt() * self.noise_like(x, generator)
            x_prev = x_prev.where(~known, known_prev)
            if u == self.resample_steps - 1 or t_prev < 0:
                return x_prev
            ratio = ab_t / ab_p  # diffuse back from t_prev to t: q(x_t | x_{t_prev})
            x = ratio.sqrt() * x_prev + (1 - ratio).sqrt() * self.noise_like(x, generator)
        return x_prev

    @staticmethod
    def search_space(trial) -> dict:
        return {**TSEditModule.search_space(trial), "resample_steps": trial.suggest_int("resample_steps", 1, 5)}
