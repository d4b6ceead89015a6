"""No control: SDEdit-style editing (Meng et al., ICLR 2022) with the conditional backbone and no constraint at all.

The lower bound for constraint satisfaction and the reference for preservation and realism: the source is noised
to t0 and denoised by plain DDIM; anchors and segment targets are ignored.
"""
from __future__ import annotations

from contracts.registry import register_model
from lightning_modules.tsedit.base import TSEditModule


@register_model("no_control", family="tsedit")
class NoControl(TSEditModule):
    def __init__(self, channels: int, window: int, num_classes: int, **backbone_and_editing):
        super().__init__(channels, window, num_classes, **backbone_and_editing)
        self.save_hyperparameters()

    @staticmethod
    def search_space(trial) -> dict:
        return TSEditModule.search_space(trial)
