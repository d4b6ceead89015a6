"""HSTU: Hierarchical Sequential Transduction Units (Zhai et al., "Actions Speak Louder than Words: Trillion-Parameter
Sequential Transducers for Generative Recommendations", ICML 2024, arXiv 2402.17152), as the official code
(meta-recsys/generative-recommenders, `research/modeling/sequential/hstu.py`) computes it.

One block (paper Eq. 1-3, in the code's order):
    X^ = LayerNorm(X)                                         (no affine, eps 1e-6)
    U, V, Q, K = split(SiLU(X^ W_uvqk))                        (Eq. 1; W_uvqk: d x h(2 dv + 2 dqk), N(0, 0.02))
    A = SiLU(Q K^T + rab_pos + rab_ts) / N  (causal)           (Eq. 2; N = the padded attention length)
    Y = X + W_o(Dropout(U * LayerNorm(A V)))                   (Eq. 3; LayerNorm over all heads, no affine)
The relative attention bias (`RelativeBucketedTimeAndPositionBias`) adds a learned scalar per position offset and
one per log-bucket of t_{i+1} - t_j (the query time against the key's time), per block, shared by heads.
Input: E[item] * sqrt(d) + P[position from the first item], dropout 0.2. Output: the last block's vectors; the
family base L2-normalises user and item vectors and trains with sampled softmax (128 uniform negatives, tau 0.05).

Differences from the official code, by flag:
- Dense padding with masks instead of fbgemm jagged tensors; the maths is unchanged (padded keys are masked).
- `attention_length` (the N that divides the SiLU attention) defaults to max_len + 11, the official padded length
  max_sequence_len + gr_output_length + 1 (211 for ML-1M); the relative-position table has 2N - 1 entries.
- The official code's validation-free protocol is the board's concern, not the model's.
Ablations of "Scaling New Frontiers" (arXiv 2412.00714) RQ2, as flags: `position_bias=False, time_bias=False`
(no rab), `time_bias=False` (position only), `attention_activation="softmax"` (softmax(QK^T/sqrt(dqk) + rab) with
the causal mask applied before the softmax, through SDPA), `u_gating=False` (no U: Y = X + W_o(LayerNorm(A V)),
W_uvqk loses its U columns).
"""
from __future__ import annotations

import optuna
import torch
import torch.nn.functional as F
from torch import nn

from contracts.registry import register_model
from lightning_modules.base_arguments import base_arguments
from lightning_modules.seqrec.base import SeqRecModule
from lightning_modules.seqrec.layers import (RelativeBucketedTimeAndPositionBias, TimeAwareStack, layer_norm,
                                             recipe_search_space)

ACTIVATIONS = ("silu", "softmax")


class HSTUBlock(nn.Module):
    """One HSTU layer (Eq. 1-3), dense: [B, L, d] -> [B, L, d]."""

    def __init__(self, dim: int, num_heads: int, qk_dim: int, v_dim: int, dropout: float, attention_length: int,
                 attention_activation: str = "silu", u_gating: bool = True, position_bias: bool = True,
                 time_bias: bool = True, num_time_buckets: int = 128, eps: float = 1e-6):
        super().__init__()
        if attention_activation not in ACTIVATIONS:
            raise ValueError(f"attention_activation must be one of {ACTIVATIONS}, got {attention_activation!r}")
        self.num_heads, self.qk_dim, self.v_dim = num_heads, qk_dim, v_dim
        self.attention_length = attention_length
        self.attention_activation = attention_activation
        self.u_gating = u_gating
        self.eps = eps
        u_width = num_heads * v_dim if u_gating else 0
        self.split_sizes = [u_width, num_heads * v_dim, num_heads * qk_dim, num_heads * qk_dim]
        self.uvqk = nn.Parameter(torch.empty(dim, sum(self.split_sizes)).normal_(0, 0.02))
        self.output = nn.Linear(num_heads * v_dim, dim)
        nn.init.xavier_uniform_(self.output.weight)
        self.dropout = nn.Dropout(dropout)
        self.relative_bias = (RelativeBucketedTimeAndPositionBias(attention_length, num_time_buckets, position_bias,
                                                                 time_bias) if position_bias or time_bias else None)

    def heads(self, t: torch.Tensor, width: int) -> torch.Tensor:
        b, l, _ = t.shape
        return t.view(b, l, self.num_heads, width).transpose(1, 2)

    def forward(self, x, mask, timestamps=None, next_timestamps=None):
        b, l, _ = x.shape
        u, v, q, k = torch.split(F.silu(layer_norm(x, self.eps) @ self.uvqk), self.split_sizes, dim=-1)  # Eq. 1
        q, k, v = self.heads(q, self.qk_dim), self.heads(k, self.qk_dim), self.heads(v, self.v_dim)
        bias = None
        if self.relative_bias is not None:
            pos, ts = self.relative_bias(l, timestamps, next_timestamps, device=x.device)
            bias = pos if ts is None else ts if pos is None else pos + ts  # [1 or B, L, L]
        if self.attention_activation == "silu":  # Eq. 2: pointwise, divided by the padded length N
            scores = q @ k.transpose(-1, -2)
            if bias is not None:
                scores = scores + bias.unsqueeze(1)
            attended = (F.silu(scores) / self.attention_length * mask) @ v
        else:  # ablation: softmax attention, the rab as an additive mask, future and padding at -inf
            additive = torch.zeros_like(mask) if bias is None else bias.unsqueeze(1).to(q.dtype)
            # padded query rows keep their own key so no row is all -inf; they are zeroed by the caller
            eye = torch.eye(l, dtype=torch.bool, device=x.device)
            additive = additive.masked_fill(~((mask > 0) | eye), float("-inf"))
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=additive)
        attended = layer_norm(attended.transpose(1, 2).reshape(b, l, self.num_heads * self.v_dim), self.eps)
        gated = u * attended if self.u_gating else attended  # Eq. 3
        return x + self.output(self.dropout(gated))


@register_model("hstu", family="seqrec")
class HSTU(TimeAwareStack):
    """HSTU encoder on the family base. Defaults: the official ML-1M config (hstu-sampled-softmax-n128-final.gin)."""

    def __init__(
        self,
        num_items: int,
        max_len: int = 200,
        embed_dim: int = 50,
        num_blocks: int = 2,
        num_heads: int = 1,
        qk_dim: int = 50,
        v_dim: int = 50,
        dropout: float = 0.2,
        attention_length: int | None = None,
        position_bias: bool = True,
        time_bias: bool = True,
        attention_activation: str = "silu",
        u_gating: bool = True,
        num_time_buckets: int = 128,
        loss: str = "sampled_softmax",
        num_negatives: int = 128,
        shared_negatives: bool = False,
        temperature: float = 0.05,
        l2_norm: bool = True,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.98),
        filter_seen: bool = True,
        eval_ks: tuple[int, ...] = (10, 50, 200),
    ):
        super().__init__(**base_arguments(SeqRecModule, locals()))
        self.save_hyperparameters()
        self.build_stack(attention_length, dropout, num_blocks, lambda length: HSTUBlock(
            embed_dim, num_heads, qk_dim, v_dim, dropout, length, attention_activation, u_gating, position_bias,
            time_bias, num_time_buckets))

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict:
        return recipe_search_space(trial, heads=[1, 2])
