"""AutoInt / AutoInt+ (Song et al., CIKM 2019, arXiv 1810.11921).

Interacting layer (Sec. 3.4): for each head h, alpha^h_{m,k} = softmax_k(<W_Q e_m, W_K e_k>) (Eq. 5-6, no
scaling), e~^h_m = sum_k alpha^h_{m,k} W_V e_k (Eq. 6); heads concatenated (Eq. 7); e^Res_m = ReLU(e~_m + W_Res e_m)
(Eq. 8). Output layer: y = sigma(w^T [e^Res_1 ; ... ; e^Res_M] + b) (Eq. 9). AutoInt+ (Sec. 5.4) adds a feed-forward
network on the embeddings in parallel and sums the logits, as FuxiCTR's AutoInt with dnn_hidden_units does.
`use_dnn=False` gives plain AutoInt. Defaults: 3 interacting layers, 2 heads, attention size 32 (paper Sec. 5.1.3),
MLP 400-400-400 for the "+" part (BARS AutoInt+_criteo_x1).
"""
from __future__ import annotations

import optuna
import torch
import torch.nn.functional as F
from torch import nn

from contracts.registry import register_model
from lightning_modules.ctr.base import CTRModule, common_space, suggest_units
from lightning_modules.ctr.layers import MLP, SumLogits, init_linear


class InteractingLayer(nn.Module):
    def __init__(self, input_dim: int, attention_dim: int, num_heads: int, use_residual: bool = True,
                 use_scale: bool = False):
        super().__init__()
        if attention_dim % num_heads:
            raise ValueError(f"attention_dim {attention_dim} is not divisible by num_heads {num_heads}")
        self.num_heads, self.head_dim = num_heads, attention_dim // num_heads
        self.query = nn.Linear(input_dim, attention_dim, bias=False)
        self.key = nn.Linear(input_dim, attention_dim, bias=False)
        self.value = nn.Linear(input_dim, attention_dim, bias=False)
        self.residual = nn.Linear(input_dim, attention_dim, bias=False) if use_residual else None
        self.scale = self.head_dim ** -0.5 if use_scale else 1.0
        init_linear(self)

    def forward(self, e: torch.Tensor) -> torch.Tensor:  # [B, M, d] -> [B, M, attention_dim]
        b, m, _ = e.shape
        a = self.num_heads * self.head_dim
        # Q, K, V (and W_Res e) in one product: at a few fields of width ~10 each separate product is all overhead
        projections = [self.query, self.key, self.value] + ([self.residual] if self.residual is not None else [])
        proj = F.linear(e, torch.cat([p.weight for p in projections]))
        split = lambda i: proj[..., i * a:(i + 1) * a].view(b, m, self.num_heads, self.head_dim).transpose(1, 2)
        q, k, v = split(0), split(1), split(2)  # [B, H, M, d_h]
        # Eq. 5 computed transposed, [B, H, keys, queries], and normalised over the keys (dim -2): the same alpha,
        # but CPU softmax over a short last dimension (M ~ 14) is several times slower than over an inner one
        alpha_t = torch.softmax(k @ q.transpose(-1, -2) * self.scale, dim=-2)
        out = (alpha_t.transpose(-1, -2) @ v).transpose(1, 2).reshape(b, m, -1)  # Eq. 6-7
        if self.residual is not None:
            out = out + proj[..., 3 * a:]
        return torch.relu(out)  # Eq. 8


class AutoIntInteraction(nn.Module):
    def __init__(self, num_fields: int, embed_dim: int, num_layers: int, attention_dim: int, num_heads: int,
                 use_residual: bool, use_scale: bool, hidden_units, dropout: float, batch_norm: bool):
        super().__init__()
        self.layers = nn.ModuleList(
            InteractingLayer(embed_dim if i == 0 else attention_dim, attention_dim, num_heads, use_residual, use_scale)
            for i in range(num_layers))
        self.output = nn.Linear(num_fields * (attention_dim if num_layers else embed_dim), 1)
        init_linear(self.output)
        self.dnn = MLP(num_fields * embed_dim, hidden_units, 1, dropout, batch_norm) if hidden_units else None

    def forward(self, dense: torch.Tensor, fields: torch.Tensor) -> torch.Tensor:
        x = fields
        for layer in self.layers:
            x = layer(x)
        parts = [self.output(x.flatten(1))]  # Eq. 9
        if self.dnn is not None:
            parts.append(self.dnn(fields.flatten(1)))
        return torch.cat(parts, dim=1)


@register_model("autoint", family="ctr")
class AutoInt(CTRModule):
    def __init__(self, field_dims: list[int], num_dense: int, embed_dim: int = 16, num_layers: int = 3,
                 attention_dim: int = 32, num_heads: int = 2, use_residual: bool = True, use_scale: bool = False,
                 use_dnn: bool = True, hidden_units: list[int] = (400, 400, 400), dropout: float = 0.0,
                 batch_norm: bool = False, lr: float = 1e-3, embedding_l2: float = 1e-5, net_l2: float = 0.0,
                 lr_decay_on_plateau: bool = True, embedding_init_std: float = 1e-4):
        super().__init__(field_dims, num_dense, embed_dim, use_linear=False, lr=lr, embedding_l2=embedding_l2,
                         net_l2=net_l2, lr_decay_on_plateau=lr_decay_on_plateau, embedding_init_std=embedding_init_std)
        self.save_hyperparameters()
        self.interaction = AutoIntInteraction(self.num_fields, embed_dim, num_layers, attention_dim, num_heads,
                                              use_residual, use_scale, list(hidden_units) if use_dnn else [],
                                              dropout, batch_norm)
        self.head = SumLogits()

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict:
        return {**common_space(trial), "num_layers": trial.suggest_int("num_layers", 1, 4),
                "num_heads": trial.suggest_categorical("num_heads", [1, 2, 4]),
                "attention_dim": trial.suggest_categorical("attention_dim", [16, 32, 64]),
                "dropout": trial.suggest_float("dropout", 0.0, 0.3)}
