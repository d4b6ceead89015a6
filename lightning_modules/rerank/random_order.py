"""A uniformly random order of the candidates: the floor a reranker must clear to have learned anything. GMF's own
order is not that floor, since a diversity or fairness reranker gives up some of GMF's accuracy by design."""
from __future__ import annotations

import torch

from contracts.batch import rerank as B
from contracts.registry import register_model
from lightning_modules.rerank.base import RerankModule


@register_model("random_order", family="rerank")
class RandomOrder(RerankModule):
    def __init__(self, num_users: int, num_items: int, num_genres: int, num_candidates: int, history_len: int,
                 item_titles: list[str] | None = None, genre_names: list[str] | None = None,
                 group_names: list[str] | None = None, eval_k: int = 10, alpha: float = 0.5):
        super().__init__(num_users, num_items, num_genres, num_candidates, history_len, item_titles, genre_names,
                         group_names, eval_k, alpha)
        self.save_hyperparameters()

    def rerank(self, batch: dict) -> torch.Tensor:
        candidates = batch[B.CANDIDATES]  # one permutation per list, from the run's seeded global generator
        return torch.rand(candidates.shape, device=candidates.device).argsort(-1)
