"""XCrossNet: Feature Structure-Oriented Learning for Click-Through Rate Prediction
(Yu, Ye, Liu, Wang, Yang, Hu, Chen; PAKDD 2021, arXiv 2104.10907; official code bigdata-ustc/XCrossNet,
deepctr_torch/models/xcrossnet.py).

Three stages, as the official code computes them:
(a) Feature crossing, dense part: cross layers on the RAW dense vector D in R^M (dense values are not embedded),
        x_0 = D,   x_{l+1} = x_0 (x_l^T w_l) + b_l        (no "+ x_l" residual, unlike DCN)
    and every layer is kept: O_C = [x_L ; ... ; x_1 ; x_0] in R^{M (L+1)} (`DenseCrossNet`; `include_x0`).
    The paper's depth l = 4 counts x_0: the code's cross_num = 3 plus x_0 gives the same 4M dims.
(b) Feature crossing, sparse part: embeddings E_i = V_i S_i and a product layer.
    `product_layer="inner"` (official code, DeepCTR's IPNN layer): O_P = [E_1 ; ... ; E_N ; {<E_i, E_j>}_{i<j}];
    `product_layer="factorized"` (paper Sec. 3.2): O_P = [P_1 ; P_2] in R^{2T}, P_1^t = sum_i <W^{1,t}_i, E_i>,
    P_2^t = sum_{i,j} theta^t_i theta^t_j <E_i, E_j> = ||sum_i theta^t_i E_i||^2 (T = `product_size`).
(c) Feature concatenation: X_0 = [O_C ; O_P]. The paper then applies one cross layer over the concatenation,
    X_1 = X_0 (X_0^T w_X) + b_X, H_0 = [X_1 ; X_0]; in the official code this is behind `use_cross`, which defaults
    to False, so X_0 goes straight into the MLP. Here `concat_cross=False` is the code's default, `True` the paper's.
(d) Feature selection: an MLP, H_i = ReLU(W_i H_{i-1} + b_i), y = sigma(w^T H_last + b).
Loss: logloss + lambda ||Theta||^2 with lambda = 1e-4 (paper Sec. 4.1; applied as FuxiCTR does, see base).
Defaults are the paper's Sec. 4.1 settings (embedding 20, MLP 2 x 400, Adam 1e-3, depth 4). Differences from the
official code: its defaults (embedding 8, MLP 128-128, l2_reg_embedding 1e-5, no net L2, Adagrad in the example)
are not used; its MLP weights start N(0, 1e-4^2), ours Xavier-normal (FuxiCTR); the optional first-order term
(`use_linear`, off in both) is available.
"""
from __future__ import annotations

import optuna
import torch
from torch import nn

from contracts.registry import register_model
from lightning_modules.ctr.base import CTRModule, common_space, suggest_units
from lightning_modules.ctr.layers import MLP, InnerProduct

PRODUCT_LAYERS = ("inner", "factorized")


class DenseCrossNet(nn.Module):
    """Stage (a): x_{l+1} = x_0 (x_l^T w_l) + b_l on the raw dense vector, output [x_L ; ... ; x_1 ; x_0]."""

    def __init__(self, num_dense: int, num_layers: int, include_x0: bool = True):
        super().__init__()
        # Official code: kernels Xavier-normal of shape (M, 1), biases zero.
        self.weights = nn.ParameterList(nn.Parameter(nn.init.xavier_normal_(torch.empty(num_dense, 1)).squeeze(1))
                                        for _ in range(num_layers))
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(num_dense)) for _ in range(num_layers))
        self.include_x0 = include_x0
        self.output_dim = num_dense * (num_layers + int(include_x0))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:  # [B, M] -> [B, M (L + 1)]
        outputs = [x0] if self.include_x0 else []
        x = x0
        for w, b in zip(self.weights, self.biases):
            x = x0 * (x @ w).unsqueeze(-1) + b
            outputs.insert(0, x)  # the code prepends: [x_L ; ... ; x_1 ; x_0]
        return torch.cat(outputs, dim=1)


class FactorizedProduct(nn.Module):
    """Stage (b), paper form: [P_1 ; P_2] with the rank-1 factorisation W^{2,t}_{ij} = theta^t_i theta^t_j."""

    def __init__(self, num_fields: int, embed_dim: int, product_size: int):
        super().__init__()
        self.linear = nn.Linear(num_fields * embed_dim, product_size, bias=False)  # P_1^t = sum_i <W^{1,t}_i, E_i>
        self.theta = nn.Parameter(torch.empty(product_size, num_fields))
        nn.init.xavier_normal_(self.linear.weight)
        nn.init.xavier_normal_(self.theta)
        self.output_dim = 2 * product_size

    def forward(self, emb: torch.Tensor) -> torch.Tensor:  # [B, N, K] -> [B, 2T]
        p1 = self.linear(emb.flatten(1))
        p2 = torch.einsum("tn,bnk->btk", self.theta, emb).pow(2).sum(-1)  # ||sum_i theta^t_i E_i||^2
        return torch.cat([p1, p2], dim=1)


class InnerProductLayer(nn.Module):
    """Stage (b), official-code form: [flatten(E) ; {<E_i, E_j>}_{i<j}]."""

    def __init__(self, num_fields: int, embed_dim: int):
        super().__init__()
        self.inner = InnerProduct(num_fields)
        self.output_dim = num_fields * embed_dim + self.inner.num_pairs

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return torch.cat([emb.flatten(1), self.inner(emb)], dim=1)


class ConcatCross(nn.Module):
    """Stage (c), paper form: X_1 = X_0 (X_0^T w_X) + b_X, H_0 = [X_1 ; X_0]."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(nn.init.xavier_normal_(torch.empty(dim, 1)).squeeze(1))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        return torch.cat([x0 * (x0 @ self.weight).unsqueeze(-1) + self.bias, x0], dim=1)


class XCrossInteraction(nn.Module):
    def __init__(self, num_sparse: int, num_dense: int, embed_dim: int, num_dense_cross_layers: int,
                 include_x0: bool, product_layer: str, product_size: int, concat_cross: bool):
        super().__init__()
        if product_layer not in PRODUCT_LAYERS:
            raise ValueError(f"product_layer must be one of {PRODUCT_LAYERS}, got {product_layer!r}")
        self.dense_cross = DenseCrossNet(num_dense, num_dense_cross_layers, include_x0) if num_dense else None
        self.product = None
        if num_sparse:
            self.product = (InnerProductLayer(num_sparse, embed_dim) if product_layer == "inner"
                            else FactorizedProduct(num_sparse, embed_dim, product_size))
        dim = (self.dense_cross.output_dim if self.dense_cross else 0) + (self.product.output_dim if self.product else 0)
        self.concat_cross = ConcatCross(dim) if concat_cross else None
        self.output_dim = dim * (2 if concat_cross else 1)

    def forward(self, dense: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        parts = []
        if self.dense_cross is not None:
            parts.append(self.dense_cross(dense))  # O_C
        if self.product is not None:
            parts.append(self.product(emb))  # O_P
        x0 = torch.cat(parts, dim=1)  # X_0 = [O_C ; O_P]
        return self.concat_cross(x0) if self.concat_cross is not None else x0


@register_model("xcrossnet", family="ctr")
class XCrossNet(CTRModule):
    embed_dense = False  # the dense branch reads the raw dense vector

    def __init__(self, field_dims: list[int], num_dense: int, embed_dim: int = 20, num_dense_cross_layers: int = 3,
                 include_x0: bool = True, product_layer: str = "inner", product_size: int = 100,
                 concat_cross: bool = False, hidden_units: list[int] = (400, 400), dropout: float = 0.0,
                 batch_norm: bool = False, use_linear: bool = False, lr: float = 1e-3, embedding_l2: float = 1e-4,
                 net_l2: float = 1e-4, lr_decay_on_plateau: bool = True, embedding_init_std: float = 1e-4):
        super().__init__(field_dims, num_dense, embed_dim, use_linear=use_linear, lr=lr, embedding_l2=embedding_l2,
                         net_l2=net_l2, lr_decay_on_plateau=lr_decay_on_plateau, embedding_init_std=embedding_init_std)
        self.save_hyperparameters()
        self.interaction = XCrossInteraction(self.num_sparse, self.num_dense, embed_dim, num_dense_cross_layers,
                                             include_x0, product_layer, product_size, concat_cross)
        self.head = MLP(self.interaction.output_dim, list(hidden_units), 1, dropout, batch_norm)

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict:
        return {**common_space(trial),
                "net_l2": trial.suggest_float("net_l2", 1e-7, 1e-3, log=True),
                "num_dense_cross_layers": trial.suggest_int("num_dense_cross_layers", 1, 7),
                "concat_cross": trial.suggest_categorical("concat_cross", [False, True]),
                "dropout": trial.suggest_float("dropout", 0.0, 0.3),
                "hidden_units": suggest_units(trial, "hidden_units", ["400-400", "300-300", "700-700", "400-400-400"])}
