"""DeepFM (Guo et al., IJCAI 2017, arXiv 1703.04247).

Eq. 1: y = sigma(y_FM + y_DNN), where y_FM = <w, x> + sum_{i<j} <V_i, V_j> x_i x_j (Eq. 2) and the DNN reads the
same field embeddings, flattened (Eq. 3-4): the FM and deep components share the embedding layer. FuxiCTR's
DeepFM computes exactly this (LR + FM + DNN logits summed). Defaults follow BARS' DeepFM_criteo_x1.
"""
from __future__ import annotations

import optuna
import torch
from torch import nn

from contracts.registry import register_model
from lightning_modules.ctr.base import CTRModule, common_space, suggest_units
from lightning_modules.ctr.layers import MLP, FactorizationMachine, SumLogits


class FMAndDeep(nn.Module):
    def __init__(self, input_dim: int, hidden_units, dropout: float, batch_norm: bool):
        super().__init__()
        self.fm = FactorizationMachine()
        self.dnn = MLP(input_dim, hidden_units, 1, dropout, batch_norm)

    def forward(self, dense: torch.Tensor, fields: torch.Tensor) -> torch.Tensor:  # -> [B, 2] (two logits)
        return torch.cat([self.fm(fields), self.dnn(fields.flatten(1))], dim=1)


@register_model("deepfm", family="ctr")
class DeepFM(CTRModule):
    def __init__(self, field_dims: list[int], num_dense: int, embed_dim: int = 10,
                 hidden_units: list[int] = (400, 400, 400), dropout: float = 0.0, batch_norm: bool = False,
                 lr: float = 1e-3, embedding_l2: float = 1e-5, net_l2: float = 0.0, lr_decay_on_plateau: bool = True,
                 embedding_init_std: float = 1e-4):
        super().__init__(field_dims, num_dense, embed_dim, use_linear=True, lr=lr, embedding_l2=embedding_l2,
                         net_l2=net_l2, lr_decay_on_plateau=lr_decay_on_plateau, embedding_init_std=embedding_init_std)
        self.save_hyperparameters()
        self.interaction = FMAndDeep(self.num_fields * embed_dim, list(hidden_units), dropout, batch_norm)
        self.head = SumLogits()

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict:
        return {**common_space(trial), "dropout": trial.suggest_float("dropout", 0.0, 0.3),
                "hidden_units": suggest_units(trial, "hidden_units", ["400-400-400", "256-256", "1000-1000"])}
