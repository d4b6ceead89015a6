"""IPNN: Product-based Neural Networks, inner-product variant (Qu et al., ICDM 2016, arXiv 1611.00144).

Sec. III-A: the product layer holds linear signals l_z (the field embeddings, concatenated) and quadratic signals
l_p = {<f_i, f_j>}_{i<j} (Eq. 7-9); l_1 = ReLU(W_z l_z + W_p l_p + b_1) and further hidden layers follow (Eq. 3-4).
Concatenating [l_z ; l_p] before the first Linear is the same map with full W_z and W_p (FuxiCTR's PNN and
DeepCTR's InnerProductLayer do the same; the paper's optional rank-1 factorisation of W_p is not used there).
Defaults follow BARS' IPNN_criteo_x1 (embedding 10, MLP 400-400-400).
"""
from __future__ import annotations

import optuna
import torch
from torch import nn

from contracts.registry import register_model
from lightning_modules.ctr.base import CTRModule, common_space, suggest_units
from lightning_modules.ctr.layers import MLP, InnerProduct


class ProductLayer(nn.Module):
    """[l_z ; l_p]: flattened embeddings and all pairwise inner products."""

    def __init__(self, num_fields: int):
        super().__init__()
        self.inner = InnerProduct(num_fields)

    def forward(self, dense: torch.Tensor, fields: torch.Tensor) -> torch.Tensor:
        return torch.cat([fields.flatten(1), self.inner(fields)], dim=1)


@register_model("ipnn", family="ctr")
class IPNN(CTRModule):
    def __init__(self, field_dims: list[int], num_dense: int, embed_dim: int = 10,
                 hidden_units: list[int] = (400, 400, 400), dropout: float = 0.0, batch_norm: bool = False,
                 lr: float = 1e-3, embedding_l2: float = 1e-5, net_l2: float = 0.0, lr_decay_on_plateau: bool = True,
                 embedding_init_std: float = 1e-4):
        super().__init__(field_dims, num_dense, embed_dim, use_linear=False, lr=lr, embedding_l2=embedding_l2,
                         net_l2=net_l2, lr_decay_on_plateau=lr_decay_on_plateau, embedding_init_std=embedding_init_std)
        self.save_hyperparameters()
        self.interaction = ProductLayer(self.num_fields)
        in_dim = self.num_fields * embed_dim + self.interaction.inner.num_pairs
        self.head = MLP(in_dim, list(hidden_units), 1, dropout, batch_norm)

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict:
        return {**common_space(trial), "dropout": trial.suggest_float("dropout", 0.0, 0.3),
                "hidden_units": suggest_units(trial, "hidden_units", ["400-400-400", "256-256", "1000-1000"])}
