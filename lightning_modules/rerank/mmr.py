"""MMR: Maximal Marginal Relevance (Carbonell & Goldstein, SIGIR 1998).

Greedily, the next item is argmax_i [ lambda rel_i - (1 - lambda) max_{j already placed} sim(i, j) ], with rel the
ranker's score min-max scaled within the list and sim the cosine similarity of the items' genre multi-hots (the
paper's diversity attribute). Run for all N positions it yields a full order of the candidates.
"""
from __future__ import annotations

import torch

from contracts.batch import rerank as B
from contracts.registry import register_model
from lightning_modules.rerank.base import RerankModule, list_relevance


def genre_cosine(genres: torch.Tensor) -> torch.Tensor:
    """Cosine similarity [B, N, N] of the candidates' genre vectors [B, N, G] (0 for an item without genres)."""
    unit = torch.nn.functional.normalize(genres.float(), dim=-1)
    return unit @ unit.transpose(1, 2)


def mmr_order(relevance: torch.Tensor, similarity: torch.Tensor, trade_off: float) -> torch.Tensor:
    """Greedy MMR order [B, N] of lists with relevance [B, N] and item similarity [B, N, N]; ties to the lower
    position (the ranker's order)."""
    batch, n = relevance.shape
    rows = torch.arange(batch, device=relevance.device)
    taken = torch.zeros(batch, n, dtype=torch.bool, device=relevance.device)
    redundancy = torch.zeros_like(relevance)  # max similarity to the items already placed (0 before the first)
    order = []
    for _ in range(n):
        key = (trade_off * relevance - (1 - trade_off) * redundancy).masked_fill(taken, -torch.inf)
        pick = key.argmax(-1)
        order.append(pick)
        taken[rows, pick] = True
        redundancy = torch.maximum(redundancy, similarity[rows, pick])
    return torch.stack(order, 1)


@register_model("mmr", family="rerank")
class MMR(RerankModule):
    def __init__(self, num_users: int, num_items: int, num_genres: int, num_candidates: int, history_len: int,
                 item_titles: list[str] | None = None, genre_names: list[str] | None = None,
                 group_names: list[str] | None = None, eval_k: int = 10, alpha: float = 0.5,
                 trade_off: float = 0.5):
        super().__init__(num_users, num_items, num_genres, num_candidates, history_len, item_titles, genre_names,
                         group_names, eval_k, alpha)
        if not 0.0 <= trade_off <= 1.0:
            raise ValueError(f"trade_off={trade_off} must lie in [0, 1] (1 = the ranker's order, 0 = diversity only)")
        self.save_hyperparameters()

    def rerank(self, batch: dict) -> torch.Tensor:
        return mmr_order(list_relevance(batch[B.SCORES]), genre_cosine(batch[B.GENRES]), self.hparams.trade_off)

    @staticmethod
    def search_space(trial) -> dict:
        return {"trade_off": trial.suggest_float("trade_off", 0.0, 1.0)}
