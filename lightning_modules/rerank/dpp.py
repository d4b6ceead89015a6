"""Fast greedy MAP inference for the determinantal point process (Chen, Zhang & Zhou, NeurIPS 2018, Algorithm 1).

Kernel L = Diag(r) S Diag(r) with quality r_i = exp(a rel_i), a = theta / (2 (1 - theta)) (their Eq. for the
relevance-diversity trade-off theta), rel the ranker's score min-max scaled within the list, and S_ij =
(1 + <f_i, f_j>) / 2 with f_i the item's unit genre vector (their similarity form, positive semi-definite). Each
step adds the item with the largest marginal gain log det L_{Y+i} - log det L_Y = log d_i^2, updating every d_i by
one incremental Cholesky row (O(N k) per step, no determinant computed). Once every remaining gain d_i^2 is below
`epsilon` (the kernel's rank is spent) the rest follow by relevance, so the output is a full order.
"""
from __future__ import annotations

import torch

from contracts.batch import rerank as B
from contracts.registry import register_model
from lightning_modules.rerank.base import RerankModule, list_relevance


def dpp_kernel(relevance: torch.Tensor, genres: torch.Tensor, theta: float) -> torch.Tensor:
    unit = torch.nn.functional.normalize(genres.float(), dim=-1)
    similarity = (1.0 + unit @ unit.transpose(1, 2)) / 2.0
    quality = torch.exp(theta / (2.0 * (1.0 - theta)) * relevance)
    return quality.unsqueeze(-1) * similarity * quality.unsqueeze(-2)


def fast_greedy_map(kernel: torch.Tensor, relevance: torch.Tensor, epsilon: float = 1e-10) -> torch.Tensor:
    """Greedy MAP order [B, N] under kernels [B, N, N] (float64 inside for the Cholesky updates); past the
    kernel's rank the remaining items follow by `relevance`."""
    L = kernel.double()
    batch, n, _ = L.shape
    rows = torch.arange(batch, device=L.device)
    c = torch.zeros(batch, n, n, dtype=L.dtype, device=L.device)  # c[:, i, :k]: item i's Cholesky row so far
    d2 = torch.diagonal(L, dim1=1, dim2=2).clone()
    taken = torch.zeros(batch, n, dtype=torch.bool, device=L.device)
    order = []
    for k in range(n):
        gain = d2.masked_fill(taken, -torch.inf)
        spent = gain.max(-1).values < epsilon
        fallback = relevance.double().masked_fill(taken, -torch.inf)
        j = torch.where(spent, fallback.argmax(-1), gain.argmax(-1))
        order.append(j)
        taken[rows, j] = True
        if k == n - 1:
            break
        d_j = d2[rows, j].clamp_min(epsilon).sqrt()
        c_j = c[rows, j, :k]  # [B, k]
        e = (L[rows, j] - torch.einsum("bk,bik->bi", c_j, c[:, :, :k])) / d_j.unsqueeze(-1)
        e = torch.where(spent.unsqueeze(-1), torch.zeros_like(e), e)
        c[:, :, k] = e
        d2 = d2 - e * e
    return torch.stack(order, 1)


@register_model("dpp", family="rerank")
class FastDPP(RerankModule):
    def __init__(self, num_users: int, num_items: int, num_genres: int, num_candidates: int, history_len: int,
                 item_titles: list[str] | None = None, genre_names: list[str] | None = None,
                 group_names: list[str] | None = None, eval_k: int = 10, alpha: float = 0.5, theta: float = 0.7,
                 epsilon: float = 1e-10):
        super().__init__(num_users, num_items, num_genres, num_candidates, history_len, item_titles, genre_names,
                         group_names, eval_k, alpha)
        if not 0.0 <= theta < 1.0:
            raise ValueError(f"theta={theta} must lie in [0, 1) (0 = diversity only; towards 1 = relevance)")
        self.save_hyperparameters()

    def rerank(self, batch: dict) -> torch.Tensor:
        relevance = list_relevance(batch[B.SCORES])
        kernel = dpp_kernel(relevance, batch[B.GENRES], self.hparams.theta)
        return fast_greedy_map(kernel, relevance, self.hparams.epsilon)

    @staticmethod
    def search_space(trial) -> dict:
        return {"theta": trial.suggest_float("theta", 0.0, 0.99)}
