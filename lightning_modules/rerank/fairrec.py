"""A FairRec-style exposure reranker (after Patro et al., FairRec: two-sided fairness for personalized
recommendations in two-sided platforms, WWW 2020).

FairRec guarantees producers a minimum exposure and fills the rest by relevance. Here the producers are the two
item groups and the exposure is the list position's weight R (1 at the top to 0 at the bottom, the MAD metric's
mapping): going down the list, a group is owed exposure in proportion to its share of the list's candidates,
need_g(p) = share_g * sum_{q<=p} R_q - received_g, and the next item is
argmax_i [ (1 - w) rel_i + w need_{g(i)}(p) ] (ties to the more relevant item). w = 1 interleaves the groups to
equal mean exposure per item; w = 0 is the ranker's order. Differences from FairRec, named: one list at a time
(FairRec allocates across all users jointly), and the guarantee is soft (weight `fairness_weight`), not a hard
minimum followed by a greedy phase.
"""
from __future__ import annotations

import torch

from contracts.batch import rerank as B
from contracts.registry import register_model
from lightning_modules.rerank.base import RerankModule, list_relevance, rank_exposure


def exposure_order(relevance: torch.Tensor, group: torch.Tensor, fairness_weight: float) -> torch.Tensor:
    batch, n = relevance.shape
    rows = torch.arange(batch, device=relevance.device)
    one_hot = torch.nn.functional.one_hot(group.long(), 2).float()  # [B, N, 2]
    share = one_hot.mean(1)  # [B, 2]
    received = torch.zeros(batch, 2, device=relevance.device)
    taken = torch.zeros(batch, n, dtype=torch.bool, device=relevance.device)
    exposure = rank_exposure(n, relevance.device)
    cumulative = exposure.cumsum(0)
    order = []
    for p in range(n):
        need = share * cumulative[p] - received  # [B, 2]
        item_need = (one_hot * need.unsqueeze(1)).sum(-1)  # [B, N]
        key = (1 - fairness_weight) * relevance + fairness_weight * item_need + 1e-6 * relevance
        pick = key.masked_fill(taken, -torch.inf).argmax(-1)
        order.append(pick)
        taken[rows, pick] = True
        received += one_hot[rows, pick] * exposure[p]
    return torch.stack(order, 1)


@register_model("fairrec", family="rerank")
class FairRecExposure(RerankModule):
    def __init__(self, num_users: int, num_items: int, num_genres: int, num_candidates: int, history_len: int,
                 item_titles: list[str] | None = None, genre_names: list[str] | None = None,
                 group_names: list[str] | None = None, eval_k: int = 10, alpha: float = 0.5,
                 fairness_weight: float = 0.5):
        super().__init__(num_users, num_items, num_genres, num_candidates, history_len, item_titles, genre_names,
                         group_names, eval_k, alpha)
        if not 0.0 <= fairness_weight <= 1.0:
            raise ValueError(f"fairness_weight={fairness_weight} must lie in [0, 1]")
        self.save_hyperparameters()

    def rerank(self, batch: dict) -> torch.Tensor:
        return exposure_order(list_relevance(batch[B.SCORES]), batch[B.GROUP], self.hparams.fairness_weight)

    @staticmethod
    def search_space(trial) -> dict:
        return {"fairness_weight": trial.suggest_float("fairness_weight", 0.0, 1.0)}
