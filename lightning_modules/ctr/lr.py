"""LR: logistic regression on one-hot categorical fields and raw numeric fields, the floor of every CTR board.

logit = w_0 + sum_f w_{f, x_f} + sum_m w_m x_m (FuxiCTR model_zoo/LR). No embeddings, no interactions.
"""
from __future__ import annotations

import optuna
import torch
from torch import nn

from contracts.registry import register_model
from lightning_modules.ctr.base import CTRModule


class NoInteraction(nn.Module):
    def forward(self, dense: torch.Tensor, fields: torch.Tensor) -> torch.Tensor:
        return dense.new_zeros((dense.shape[0], 1))


@register_model("lr", family="ctr")
class LR(CTRModule):
    uses_embeddings = False

    def __init__(self, field_dims: list[int], num_dense: int, lr: float = 1e-3, embedding_l2: float = 0.0,
                 net_l2: float = 0.0, lr_decay_on_plateau: bool = True, embedding_init_std: float = 1e-4):
        super().__init__(field_dims, num_dense, embed_dim=1, use_linear=True, lr=lr, embedding_l2=embedding_l2,
                         net_l2=net_l2, lr_decay_on_plateau=lr_decay_on_plateau, embedding_init_std=embedding_init_std)
        self.save_hyperparameters()
        self.interaction = NoInteraction()

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict:
        return {"lr": trial.suggest_float("lr", 1e-3, 3e-2, log=True),
                "embedding_l2": trial.suggest_float("embedding_l2", 1e-8, 1e-3, log=True)}
