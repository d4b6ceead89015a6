"""Wide & Deep (Cheng et al., DLRS 2016, arXiv 1606.07792).

Eq. 3: P(y=1|x) = sigma(w_wide^T [x, phi(x)] + w_deep^T a^(lf) + b): a linear "wide" part on the raw fields (here
without hand-made cross-product transformations phi, as in FuxiCTR's WideDeep) plus an MLP on the concatenated
field embeddings. Defaults follow BARS' WideDeep_criteo_x1 (MLP 400-400-400, embedding 10).
"""
from __future__ import annotations

import optuna
import torch
from torch import nn

from contracts.registry import register_model
from lightning_modules.ctr.base import CTRModule, common_space, suggest_units
from lightning_modules.ctr.layers import MLP


class Flatten(nn.Module):
    def forward(self, dense: torch.Tensor, fields: torch.Tensor) -> torch.Tensor:
        return fields.flatten(1)


@register_model("wide_deep", family="ctr")
class WideDeep(CTRModule):
    def __init__(self, field_dims: list[int], num_dense: int, embed_dim: int = 10,
                 hidden_units: list[int] = (400, 400, 400), dropout: float = 0.0, batch_norm: bool = False,
                 lr: float = 1e-3, embedding_l2: float = 1e-5, net_l2: float = 0.0, lr_decay_on_plateau: bool = True,
                 embedding_init_std: float = 1e-4):
        super().__init__(field_dims, num_dense, embed_dim, use_linear=True, lr=lr, embedding_l2=embedding_l2,
                         net_l2=net_l2, lr_decay_on_plateau=lr_decay_on_plateau, embedding_init_std=embedding_init_std)
        self.save_hyperparameters()
        self.interaction = Flatten()
        self.head = MLP(self.num_fields * embed_dim, list(hidden_units), 1, dropout, batch_norm)

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict:
        return {**common_space(trial), "dropout": trial.suggest_float("dropout", 0.0, 0.3),
                "hidden_units": suggest_units(trial, "hidden_units", ["400-400-400", "256-256", "1000-1000"])}
