"""GMF's candidates in a uniformly random order: the floor a reranker must clear to have learned anything.

GMF's own order is not that floor, since a diversity or fairness reranker gives up some of GMF's accuracy by design.
"""
from __future__ import annotations

import torch

from contracts.batch import rerank as B
from contracts.registry import register_model
from lightning_modules.rerank.gmf import GMFOrder


@register_model("random_order", family="rerank")
class RandomOrder(GMFOrder):  # the same arguments and list; only the order differs
    def rerank(self, batch: dict) -> torch.Tensor:
        candidates = batch[B.CANDIDATES]  # one permutation per list, from the run's seeded global generator
        return torch.rand(candidates.shape, device=candidates.device).argsort(-1)
