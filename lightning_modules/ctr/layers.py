"""Layers several CTR models share: field embeddings, the first-order (linear) logit, the MLP, the FM term and
the pairwise inner products of IPNN/XCrossNet. Model-specific layers live in the model's own file."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def init_linear(module: nn.Module) -> None:
    """FuxiCTR's BaseModel.init_weights for dense layers: Xavier-normal weights, zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class FieldEmbedding(nn.Module):
    """One embedding table for all categorical fields; field f's index i looks up row offsets[f] + i.

    One table with offsets is a single gather per batch (the per-field tables of FuxiCTR/DeepCTR, concatenated).
    Rows start N(0, init_std^2) as in both libraries (std 1e-4).
    """

    def __init__(self, field_dims: Sequence[int], dim: int, init_std: float = 1e-4):
        super().__init__()
        dims = torch.as_tensor(list(field_dims), dtype=torch.long)
        self.register_buffer("offsets", torch.cat([torch.zeros(1, dtype=torch.long), dims.cumsum(0)[:-1]]),
                             persistent=False)
        self.table = nn.Embedding(int(dims.sum()) if len(dims) else 1, dim)
        nn.init.normal_(self.table.weight, std=init_std)

    def forward(self, sparse: torch.Tensor) -> torch.Tensor:  # [B, N] -> [B, N, dim]
        return self.table(sparse + self.offsets)


class NumericEmbedding(nn.Module):
    """FuxiCTR's numeric-feature embedding: field m's vector is value_m * v_m (a Linear(1, dim) per field)."""

    def __init__(self, num_dense: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_dense, dim))
        nn.init.xavier_normal_(self.weight)

    def forward(self, dense: torch.Tensor) -> torch.Tensor:  # [B, M] -> [B, M, dim]
        return dense.unsqueeze(-1) * self.weight


class LinearLogit(nn.Module):
    """First-order term w_0 + sum_f w_{f, x_f} + sum_m w_m x_m (LR; the "wide" part of Wide&Deep, DeepFM, xDeepFM)."""

    def __init__(self, field_dims: Sequence[int], num_dense: int, init_std: float = 1e-4):
        super().__init__()
        self.sparse = FieldEmbedding(field_dims, 1, init_std) if len(field_dims) else None
        self.dense = nn.Linear(num_dense, 1, bias=False) if num_dense else None
        if self.dense is not None:
            nn.init.xavier_normal_(self.dense.weight)
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:  # -> [B]
        out = self.bias.expand(sparse.shape[0])  # both inputs are [B, ...] even when a side has no fields
        if self.sparse is not None:
            out = out + self.sparse(sparse).sum(dim=(1, 2))
        if self.dense is not None:
            out = out + self.dense(dense).squeeze(-1)
        return out


class Dropout(nn.Module):
    """Inverted dropout (as nn.Dropout: in training, zero each unit with probability p and scale the rest by
    1 / (1 - p); identity in eval), with the keep mask drawn from 16-bit random integers: one 64-bit draw of the
    generator serves four units, so the mask costs a fraction of `torch.bernoulli_`'s time, which on one CPU
    thread rivals a 500 x 500 matmul. The rate is exact to 2^-16 (p = 0.1 drops 6554 / 65536 = 0.100006)."""

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {p}")
        self.p = p
        self.threshold = -32768 + round(p * 65536)  # an int16 draw below this drops its unit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        n = x.numel()
        # full-range 64-bit draws (random_() alone would leave the sign bit 0), read as four int16 each
        bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-2 ** 63, None)
        keep = bits.view(torch.int16)[:n].view(x.shape) >= self.threshold
        return torch.where(keep, x * (1.0 / (1.0 - self.p)), 0.0)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class MLP(nn.Sequential):
    """Linear -> [BatchNorm] -> activation -> [Dropout] per hidden layer; an optional final Linear to `output_dim`."""

    def __init__(self, input_dim: int, hidden_units: Sequence[int], output_dim: int | None = None,
                 dropout: float = 0.0, batch_norm: bool = False, activation: type[nn.Module] = nn.ReLU):
        layers: list[nn.Module] = []
        width = input_dim
        for units in hidden_units:
            layers.append(nn.Linear(width, units))
            if batch_norm:
                layers.append(nn.BatchNorm1d(units))
            layers.append(activation())
            if dropout > 0:
                layers.append(Dropout(dropout))
            width = units
        if output_dim is not None:
            layers.append(nn.Linear(width, output_dim))
            width = output_dim
        super().__init__(*layers)
        self.output_dim = width
        init_linear(self)


class FactorizationMachine(nn.Module):
    """Rendle (2010) Eq. 5's second-order term: sum_{i<j} <v_i, v_j> = 0.5 * sum_k ((sum_i v_ik)^2 - sum_i v_ik^2)."""

    def forward(self, fields: torch.Tensor) -> torch.Tensor:  # [B, F, K] -> [B, 1]
        square_of_sum = fields.sum(dim=1).pow(2)
        sum_of_square = fields.pow(2).sum(dim=1)
        return 0.5 * (square_of_sum - sum_of_square).sum(dim=1, keepdim=True)


class InnerProduct(nn.Module):
    """All pairwise inner products <e_i, e_j>, i < j, in row-major order (DeepCTR's InnerProductLayer)."""

    def __init__(self, num_fields: int):
        super().__init__()
        rows, cols = torch.triu_indices(num_fields, num_fields, offset=1)
        self.register_buffer("upper", rows * num_fields + cols, persistent=False)  # (i, j) in the flattened Gram

    @property
    def num_pairs(self) -> int:
        return int(self.upper.numel())

    def forward(self, fields: torch.Tensor) -> torch.Tensor:  # [B, F, K] -> [B, F(F-1)/2]
        # One batched Gram matrix and a gather of its upper triangle: the pairwise form (gather both sides of every
        # pair, multiply, sum) costs ~4x as much at Adult's 14 fields, mostly in the scatter of its backward.
        return torch.bmm(fields, fields.transpose(1, 2)).flatten(1)[:, self.upper]


class SumLogits(nn.Module):
    """The head of models whose interaction stage already produces logits (FM, DeepFM, ...): their sum."""

    def forward(self, logits: torch.Tensor) -> torch.Tensor:  # [B, P] -> [B, 1]
        return logits.sum(dim=-1, keepdim=True)
