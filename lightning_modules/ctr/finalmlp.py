"""FinalMLP: An Enhanced Two-Stream MLP Model for CTR Prediction (Mao et al., AAAI 2023, arXiv 2304.00902).

Two MLP streams read differently gated copies of the flattened embeddings e. Stream-specific feature selection
(Eq. 2): g_i = 2 * sigmoid(MLP_i(x_i)), h_i = g_i (.) e, with x_i the embeddings of stream i's context features, or
a learned vector when the stream has none. Multi-head bilinear fusion (Eq. 3-4): with o_1, o_2 split into k heads,
y = sigma(sum_j BF(o_1j, o_2j)), BF(o_1, o_2) = b + w_1^T o_1 + w_2^T o_2 + o_1^T W_3 o_2.
Defaults follow BARS' FinalMLP_criteo_x1 (MLP1 400-400-400 dropout 0.2, MLP2 1000 dropout 0.3, batch norm on,
feature-selection hidden 800, 200 heads) where the dims allow it.

Difference from BARS' config: the streams' contexts are empty (both gates read a learned vector); FuxiCTR lets a
stream read chosen features (Criteo_x1: I1-I13 and C1) through separate embedding tables.
"""
from __future__ import annotations

import optuna
import torch
from torch import nn

from contracts.registry import register_model
from lightning_modules.ctr.base import CTRModule, common_space, suggest_units
from lightning_modules.ctr.layers import MLP


class FeatureSelection(nn.Module):
    """Eq. 2 with context-free gates: g_i = 2 * sigmoid(MLP_i(b_i)), b_i a learned [embed_dim] vector."""

    def __init__(self, feature_dim: int, embed_dim: int, hidden_units):
        super().__init__()
        self.context1 = nn.Parameter(torch.zeros(1, embed_dim))
        self.context2 = nn.Parameter(torch.zeros(1, embed_dim))
        self.gate1 = nn.Sequential(MLP(embed_dim, hidden_units, feature_dim), nn.Sigmoid())
        self.gate2 = nn.Sequential(MLP(embed_dim, hidden_units, feature_dim), nn.Sigmoid())

    def forward(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return flat * 2 * self.gate1(self.context1), flat * 2 * self.gate2(self.context2)


class InteractionAggregation(nn.Module):
    """Eq. 3-4: multi-head bilinear fusion of the two streams' outputs into one logit."""

    def __init__(self, x_dim: int, y_dim: int, num_heads: int):
        super().__init__()
        if x_dim % num_heads or y_dim % num_heads:
            raise ValueError(f"stream widths {x_dim}, {y_dim} must both be divisible by num_heads={num_heads}")
        self.num_heads, self.head_x, self.head_y = num_heads, x_dim // num_heads, y_dim // num_heads
        self.w_x = nn.Linear(x_dim, 1)
        self.w_y = nn.Linear(y_dim, 1)
        self.w_xy = nn.Parameter(torch.empty(num_heads, self.head_x, self.head_y))
        nn.init.xavier_normal_(self.w_xy.view(num_heads * self.head_x, self.head_y))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # -> [B, 1]
        hx = x.view(-1, self.num_heads, self.head_x)
        hy = y.view(-1, self.num_heads, self.head_y)
        bilinear = torch.einsum("bhi,hij,bhj->b", hx, self.w_xy, hy).unsqueeze(-1)
        return self.w_x(x) + self.w_y(y) + bilinear


class TwoStreams(nn.Module):
    def __init__(self, feature_dim: int, embed_dim: int, mlp1_units, mlp1_dropout, mlp2_units, mlp2_dropout,
                 batch_norm: bool, use_fs: bool, fs_hidden_units, num_heads: int):
        super().__init__()
        self.fs = FeatureSelection(feature_dim, embed_dim, fs_hidden_units) if use_fs else None
        self.mlp1 = MLP(feature_dim, mlp1_units, None, mlp1_dropout, batch_norm)
        self.mlp2 = MLP(feature_dim, mlp2_units, None, mlp2_dropout, batch_norm)
        self.fusion = InteractionAggregation(self.mlp1.output_dim, self.mlp2.output_dim, num_heads)

    def forward(self, dense: torch.Tensor, fields: torch.Tensor) -> torch.Tensor:
        flat = fields.flatten(1)
        x1, x2 = self.fs(flat) if self.fs is not None else (flat, flat)
        return self.fusion(self.mlp1(x1), self.mlp2(x2))


@register_model("finalmlp", family="ctr")
class FinalMLP(CTRModule):
    def __init__(self, field_dims: list[int], num_dense: int, embed_dim: int = 10,
                 mlp1_hidden_units: list[int] = (400, 400, 400), mlp1_dropout: float = 0.2,
                 mlp2_hidden_units: list[int] = (1000,), mlp2_dropout: float = 0.3, batch_norm: bool = True,
                 use_fs: bool = True, fs_hidden_units: list[int] = (800,), num_heads: int = 200,
                 lr: float = 1e-3, embedding_l2: float = 1e-5, net_l2: float = 0.0, lr_decay_on_plateau: bool = True,
                 embedding_init_std: float = 1e-4):
        super().__init__(field_dims, num_dense, embed_dim, use_linear=False, lr=lr, embedding_l2=embedding_l2,
                         net_l2=net_l2, lr_decay_on_plateau=lr_decay_on_plateau, embedding_init_std=embedding_init_std)
        self.save_hyperparameters()
        self.interaction = TwoStreams(self.num_fields * embed_dim, embed_dim, list(mlp1_hidden_units), mlp1_dropout,
                                      list(mlp2_hidden_units), mlp2_dropout, batch_norm, use_fs,
                                      list(fs_hidden_units), num_heads)

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict:
        return {**common_space(trial),
                "mlp1_hidden_units": suggest_units(trial, "mlp1_hidden_units", ["400-400-400", "400-400", "200-200"]),
                "mlp2_hidden_units": suggest_units(trial, "mlp2_hidden_units", ["1000", "400", "400-400"]),
                "mlp1_dropout": trial.suggest_float("mlp1_dropout", 0.0, 0.4),
                "mlp2_dropout": trial.suggest_float("mlp2_dropout", 0.0, 0.4),
                "num_heads": trial.suggest_categorical("num_heads", [1, 2, 50, 200])}
