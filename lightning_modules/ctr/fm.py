"""FM: Factorization Machines (Rendle, ICDM 2010).

Eq. 1: y = w_0 + sum_i w_i x_i + sum_{i<j} <v_i, v_j> x_i x_j, with the second-order term computed in linear time
(Eq. 5, `FactorizationMachine`). Numeric fields enter as x_m * v_m (FuxiCTR's numeric embedding), so they take part
in the pairwise term as in the original one-hot + real-valued formulation.
"""
from __future__ import annotations

import optuna
import torch
from torch import nn

from contracts.registry import register_model
from lightning_modules.ctr.base import CTRModule, common_space
from lightning_modules.ctr.layers import FactorizationMachine


class FMInteraction(nn.Module):
    def __init__(self):
        super().__init__()
        self.fm = FactorizationMachine()

    def forward(self, dense: torch.Tensor, fields: torch.Tensor) -> torch.Tensor:
        return self.fm(fields)


@register_model("fm", family="ctr")
class FM(CTRModule):
    def __init__(self, field_dims: list[int], num_dense: int, embed_dim: int = 10, lr: float = 1e-3,
                 embedding_l2: float = 1e-5, net_l2: float = 0.0, lr_decay_on_plateau: bool = True,
                 embedding_init_std: float = 1e-4):
        super().__init__(field_dims, num_dense, embed_dim, use_linear=True, lr=lr, embedding_l2=embedding_l2,
                         net_l2=net_l2, lr_decay_on_plateau=lr_decay_on_plateau, embedding_init_std=embedding_init_std)
        self.save_hyperparameters()
        self.interaction = FMInteraction()

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict:
        return common_space(trial)
