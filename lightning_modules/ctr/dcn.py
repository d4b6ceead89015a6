"""DCN: Deep & Cross Network (Wang et al., ADKDD 2017, arXiv 1708.05123).

Eq. 3, the cross layer: x_{l+1} = x_0 x_l^T w_l + b_l + x_l on x_0 = the stacked field embeddings (Eq. 1); a deep
network h_{l+1} = ReLU(W_l h_l + b_l) (Eq. 4) on the same x_0, in parallel; the combination layer
p = sigma(w_logits^T [x_L1 ; h_L2]) (Eq. 5). Defaults follow BARS' DCN_criteo_x1 (3 cross layers, MLP 400-400-400).
"""
from __future__ import annotations

import optuna
import torch
from torch import nn

from contracts.registry import register_model
from lightning_modules.ctr.base import CTRModule, common_space, suggest_units
from lightning_modules.ctr.layers import MLP, init_linear


class CrossNet(nn.Module):
    """Eq. 3 stacked `num_layers` times (rank-one weights w_l in R^d, with the residual + x_l)."""

    def __init__(self, dim: int, num_layers: int):
        super().__init__()
        self.weights = nn.ParameterList(nn.Parameter(torch.empty(dim)) for _ in range(num_layers))
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(dim)) for _ in range(num_layers))
        for w in self.weights:
            nn.init.xavier_normal_(w.view(dim, 1))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for w, b in zip(self.weights, self.biases):
            x = x0 * (x @ w).unsqueeze(-1) + b + x
        return x


class CrossAndDeep(nn.Module):
    def __init__(self, dim: int, num_cross_layers: int, hidden_units, dropout: float, batch_norm: bool):
        super().__init__()
        self.cross = CrossNet(dim, num_cross_layers)
        self.deep = MLP(dim, hidden_units, None, dropout, batch_norm) if hidden_units else None

    @property
    def output_dim(self) -> int:
        return self.cross.weights[0].numel() + (self.deep.output_dim if self.deep is not None else 0)

    def forward(self, dense: torch.Tensor, fields: torch.Tensor) -> torch.Tensor:
        x0 = fields.flatten(1)
        parts = [self.cross(x0)] + ([self.deep(x0)] if self.deep is not None else [])
        return torch.cat(parts, dim=1)


@register_model("dcn", family="ctr")
class DCN(CTRModule):
    def __init__(self, field_dims: list[int], num_dense: int, embed_dim: int = 10, num_cross_layers: int = 3,
                 hidden_units: list[int] = (400, 400, 400), dropout: float = 0.0, batch_norm: bool = False,
                 lr: float = 1e-3, embedding_l2: float = 1e-5, net_l2: float = 0.0, lr_decay_on_plateau: bool = True,
                 embedding_init_std: float = 1e-4):
        super().__init__(field_dims, num_dense, embed_dim, use_linear=False, lr=lr, embedding_l2=embedding_l2,
                         net_l2=net_l2, lr_decay_on_plateau=lr_decay_on_plateau, embedding_init_std=embedding_init_std)
        self.save_hyperparameters()
        self.interaction = CrossAndDeep(self.num_fields * embed_dim, num_cross_layers, list(hidden_units), dropout,
                                        batch_norm)
        self.head = nn.Linear(self.interaction.output_dim, 1)  # the combination layer, Eq. 5
        init_linear(self.head)

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict:
        return {**common_space(trial), "num_cross_layers": trial.suggest_int("num_cross_layers", 1, 6),
                "dropout": trial.suggest_float("dropout", 0.0, 0.3),
                "hidden_units": suggest_units(trial, "hidden_units", ["400-400-400", "256-256", "1000-1000"])}
