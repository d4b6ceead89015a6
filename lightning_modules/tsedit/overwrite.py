"""Hard overwrite after sampling: edit with no control, then force the constraints on the result.

Anchors are overwritten with their values (confidence ignored: a hard overwrite) and each segment statistic is
met by the minimum-norm shift of the segment's non-anchored points (`constraints.project_onto_constraints`).
Promise: every constraint met exactly; no promise on smoothness (kinks at anchors) or realism.
"""
from __future__ import annotations

import torch

from contracts.batch import tsedit as B
from contracts.registry import register_model
from lightning_modules.tsedit.base import TSEditModule
from lightning_modules.tsedit.constraints import project_onto_constraints


def project_batch(x: torch.Tensor, batch: dict) -> torch.Tensor:
    return project_onto_constraints(x, batch[B.ANCHOR_VALUE], batch[B.ANCHOR_CONF], batch[B.SEG_WEIGHT],
                                    batch[B.SEG_TARGET], batch[B.SEG_ACTIVE])


@register_model("overwrite", family="tsedit")
class Overwrite(TSEditModule):
    def __init__(self, channels: int, window: int, num_classes: int, **backbone_and_editing):
        super().__init__(channels, window, num_classes, **backbone_and_editing)
        self.save_hyperparameters()

    def finalize(self, x: torch.Tensor, batch: dict) -> torch.Tensor:
        return project_batch(x, batch)

    @staticmethod
    def search_space(trial) -> dict:
        return TSEditModule.search_space(trial)
