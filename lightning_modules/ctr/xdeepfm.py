"""xDeepFM: Combining Explicit and Implicit Feature Interactions (Lian et al., KDD 2018, arXiv 1803.05170).

The Compressed Interaction Network (CIN), Eq. 6: X^k_{h,*} = sum_i sum_j W^{k,h}_{ij} (X^{k-1}_{i,*} o X^0_{j,*}),
computed as a 1x1 convolution over the H_{k-1} * m outer-product maps; sum pooling over the embedding dimension
(Eq. 7) gives p^k, and p^+ = [p^1 ... p^T] feeds one output unit. Eq. 9: y = sigma(w_linear^T a + w_dnn^T x_dnn +
w_cin^T p^+ + b): a linear part, the DNN and the CIN share the embeddings and their logits add up.

Official code (Leavingseason/xDeepFM) differs from the equations in two switches kept here: `split_half=True`
sends half of each hidden layer's maps to the output and half to the next layer (all maps of the last layer go to
the output); `cin_activation="identity"` (the paper's Eq. 6 has none). FuxiCTR's CIN uses split_half=False.
`cin_fields`: "all" (FuxiCTR: the numeric fields' embeddings enter the CIN like the categorical ones) or
"categorical" (DeepCTR-Torch: the CIN reads the categorical embeddings only), which sets its cost (quadratic in
the fields) and lets a speed comparison with DeepCTR-Torch run the same arithmetic.
"""
from __future__ import annotations

import optuna
import torch
from torch import nn

from contracts.registry import register_model
from lightning_modules.ctr.base import CTRModule, common_space, suggest_units
from lightning_modules.ctr.layers import MLP, SumLogits, init_linear

ACTIVATIONS = {"identity": nn.Identity, "relu": nn.ReLU, "sigmoid": nn.Sigmoid}


class CIN(nn.Module):
    def __init__(self, num_fields: int, layer_units, split_half: bool = True, activation: str = "identity"):
        super().__init__()
        self.convs = nn.ModuleList()
        self.split_half = split_half
        self.activation = ACTIVATIONS[activation]()
        prev, pooled = num_fields, 0
        for k, units in enumerate(layer_units):
            last = k == len(layer_units) - 1
            if split_half and not last and units % 2:
                raise ValueError(f"with split_half every CIN layer but the last needs an even size, got {units}")
            self.convs.append(nn.Conv1d(prev * num_fields, units, kernel_size=1))
            prev = units // 2 if split_half and not last else units
            pooled += units // 2 if split_half and not last else units
        self.output = nn.Linear(pooled, 1)
        init_linear(self)

    def forward(self, x0: torch.Tensor) -> torch.Tensor:  # [B, m, D] -> logit [B, 1]
        batch, m, dim = x0.shape
        x, pooled = x0, []
        for k, conv in enumerate(self.convs):
            z = torch.einsum("bhd,bmd->bhmd", x, x0).reshape(batch, -1, dim)  # the H_{k-1} * m outer maps
            x_k = self.activation(conv(z))  # [B, H_k, D]
            if self.split_half and k < len(self.convs) - 1:
                x, out = torch.split(x_k, x_k.shape[1] // 2, dim=1)
            else:
                x, out = x_k, x_k
            pooled.append(out.sum(-1))  # Eq. 7: sum pooling over the embedding dimension
        return self.output(torch.cat(pooled, dim=1))


class CINAndDeep(nn.Module):
    def __init__(self, num_fields: int, embed_dim: int, cin_layer_units, split_half: bool, cin_activation: str,
                 hidden_units, dropout: float, batch_norm: bool, cin_num_fields: int | None = None):
        super().__init__()
        self.cin_num_fields = num_fields if cin_num_fields is None else cin_num_fields  # the leading fields
        self.cin = CIN(self.cin_num_fields, cin_layer_units, split_half, cin_activation)
        self.dnn = MLP(num_fields * embed_dim, hidden_units, 1, dropout, batch_norm) if hidden_units else None

    def forward(self, dense: torch.Tensor, fields: torch.Tensor) -> torch.Tensor:  # -> logits [B, 1 or 2]
        parts = [self.cin(fields[:, :self.cin_num_fields])] + ([self.dnn(fields.flatten(1))] if self.dnn is not None else [])
        return torch.cat(parts, dim=1)


@register_model("xdeepfm", family="ctr")
class XDeepFM(CTRModule):
    def __init__(self, field_dims: list[int], num_dense: int, embed_dim: int = 10,
                 cin_layer_units: list[int] = (200, 200, 200), split_half: bool = True,
                 cin_activation: str = "identity", cin_fields: str = "all", hidden_units: list[int] = (400, 400), dropout: float = 0.0,
                 batch_norm: bool = False, lr: float = 1e-3, embedding_l2: float = 1e-5, net_l2: float = 0.0,
                 lr_decay_on_plateau: bool = True, embedding_init_std: float = 1e-4):
        super().__init__(field_dims, num_dense, embed_dim, use_linear=True, lr=lr, embedding_l2=embedding_l2,
                         net_l2=net_l2, lr_decay_on_plateau=lr_decay_on_plateau, embedding_init_std=embedding_init_std)
        self.save_hyperparameters()
        if cin_fields not in ("all", "categorical"):
            raise ValueError(f"cin_fields must be 'all' or 'categorical', got {cin_fields!r}")
        if cin_fields == "categorical" and not self.num_sparse:
            raise ValueError("cin_fields='categorical' needs categorical fields; this data has none (use 'all')")
        self.interaction = CINAndDeep(self.num_fields, embed_dim, list(cin_layer_units), split_half, cin_activation,
                                      list(hidden_units), dropout, batch_norm,
                                      self.num_sparse if cin_fields == "categorical" else None)
        self.head = SumLogits()

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict:
        return {**common_space(trial),
                "cin_layer_units": suggest_units(trial, "cin_layer_units", ["200-200-200", "100-100", "16-16-16"]),
                "dropout": trial.suggest_float("dropout", 0.0, 0.3),
                "hidden_units": suggest_units(trial, "hidden_units", ["400-400", "400-400-400", "256-256"])}
