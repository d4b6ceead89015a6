"""FuXi-alpha: Scaling Recommendation Model with Feature Interaction Enhanced Transformer (Ye et al., WWW'25
Companion, arXiv 2502.03036), as the official code (USTC-StarTeam/FuXi-alpha, `modeling/sequential/fuxi.py`,
a fork of the HSTU code) computes it.

A FuXi block = Adaptive Multi-channel Self-attention (AMS, paper Sec. 3.2) + Multi-stage FFN (MFFN, Sec. 3.3):
    X^ = RMSNorm(X)                                              (no weight, eps 1e-6)
    U, V, Q, K = split(SiLU(X^ W_uvqk))                           (|U| = 3 h dv, |V| = h dv, |Q| = |K| = h dqk)
    A_sem = SiLU(Q K^T) / N (causal)     A_pos = B_pos (causal)   A_ts = B_ts (causal)
    O = concat_per_head(A_pos V, A_ts V, A_sem V)                 (no softmax anywhere; pos/ts not divided by N)
    AMS = U * RMSNorm(O)
    H = W_0(Dropout(AMS)) + X                                     (MFFN stage 1: projection with residual)
    Y = H + W_2(SiLU(W_1 Z) * W_3 Z),  Z = Dropout(RMSNorm(H))     (MFFN stage 2: SwiGLU, hidden d * ffn_multiply)
B_pos[i, j] = w_pos[offset j - i] (2N - 1 scalars) and B_ts[i, j] = w_ts[bucket(t_{i+1} - t_j)] (129 scalars), the
HSTU relative-bias tables used as attention channels of their own, shared by heads. Input, loss and evaluation are
HSTU's (the family base with L2-normalised vectors and sampled softmax, 128 negatives, tau 0.05).

Init as in the official code: W_uvqk ~ N(0, 0.02); MFFN weights xavier_uniform; item table truncated normal 0.02.
Differences from the official code, by flag: dense padding with masks instead of jagged tensors;
`attention_length` defaults to max_len + 11 (the official N = 211 on ML-1M). Ablations (paper Sec. 4.4):
`ffn_single_stage=True` drops MFFN stage 2; `semantic_channel`, `positional_channel`, `temporal_channel` = False drop
that channel (its share of U and of W_0's input goes with it). On data without timestamps (our ML-1M copy) the
temporal channel must be off.
"""
from __future__ import annotations

import optuna
import torch
import torch.nn.functional as F
from torch import nn

from contracts.registry import register_model
from lightning_modules.base_arguments import base_arguments
from lightning_modules.seqrec.base import SeqRecModule
from lightning_modules.seqrec.layers import (RelativeBucketedTimeAndPositionBias, SwiGLU, TimeAwareStack,
                                             recipe_search_space, rms_norm)


class AdaptiveMultiChannelAttention(nn.Module):
    """AMS: [B, L, d] -> U * RMSNorm(concat of the channels' A V), width channels * h * dv."""

    def __init__(self, dim: int, num_heads: int, qk_dim: int, v_dim: int, attention_length: int,
                 semantic_channel: bool = True, positional_channel: bool = True, temporal_channel: bool = True,
                 num_time_buckets: int = 128, eps: float = 1e-6):
        super().__init__()
        self.channels = [c for c, on in (("pos", positional_channel), ("ts", temporal_channel),
                                         ("sem", semantic_channel)) if on]
        if not self.channels:
            raise ValueError("FuXi-alpha needs at least one attention channel")
        self.num_heads, self.qk_dim, self.v_dim = num_heads, qk_dim, v_dim
        self.attention_length = attention_length
        self.eps = eps
        qk_width = num_heads * qk_dim if semantic_channel else 0
        self.split_sizes = [len(self.channels) * num_heads * v_dim, num_heads * v_dim, qk_width, qk_width]
        self.out_dim = self.split_sizes[0]
        self.uvqk = nn.Parameter(torch.empty(dim, sum(self.split_sizes)).normal_(0, 0.02))
        self.channel_bias = (RelativeBucketedTimeAndPositionBias(attention_length, num_time_buckets,
                                                                 positional_channel, temporal_channel)
                             if positional_channel or temporal_channel else None)

    def forward(self, x, mask, timestamps=None, next_timestamps=None):
        b, l, _ = x.shape
        u, v, q, k = torch.split(F.silu(rms_norm(x, self.eps) @ self.uvqk), self.split_sizes, dim=-1)
        v = v.view(b, l, self.num_heads, self.v_dim).transpose(1, 2)  # [B, h, L, dv]
        pos, ts = (self.channel_bias(l, timestamps, next_timestamps, device=x.device)
                   if self.channel_bias is not None else (None, None))
        outputs = []
        for channel in self.channels:  # a loop over at most 3 channels, not over positions
            if channel == "pos":
                attention = pos.unsqueeze(1) * mask
            elif channel == "ts":
                attention = ts.unsqueeze(1) * mask
            else:
                qh = q.view(b, l, self.num_heads, self.qk_dim).transpose(1, 2)
                kh = k.view(b, l, self.num_heads, self.qk_dim).transpose(1, 2)
                attention = F.silu(qh @ kh.transpose(-1, -2)) / self.attention_length * mask
            outputs.append(attention @ v)  # [B, h, L, dv]
        o = torch.stack(outputs, dim=3).permute(0, 2, 1, 3, 4).reshape(b, l, self.out_dim)  # per head: pos, ts, sem
        return u * rms_norm(o, self.eps)


class MultiStageFFN(nn.Module):
    """MFFN: stage 1 H = W_0(Dropout(AMS)) + X; stage 2 Y = H + SwiGLU(Dropout(RMSNorm(H))) unless single-stage."""

    def __init__(self, in_dim: int, dim: int, dropout: float, ffn_multiply: int = 1, single_stage: bool = False,
                 eps: float = 1e-6):
        super().__init__()
        self.projection = nn.Linear(in_dim, dim)
        nn.init.xavier_uniform_(self.projection.weight)
        self.dropout = nn.Dropout(dropout)
        self.eps = eps
        self.swiglu = None if single_stage else SwiGLU(dim, dim * ffn_multiply)
        if self.swiglu is not None:
            for layer in (self.swiglu.w1, self.swiglu.w2, self.swiglu.w3):
                nn.init.xavier_uniform_(layer.weight)

    def forward(self, ams, x):
        h = self.projection(self.dropout(ams)) + x
        if self.swiglu is None:
            return h
        return h + self.swiglu(self.dropout(rms_norm(h, self.eps)))


class FuXiBlock(nn.Module):
    def __init__(self, dim, num_heads, qk_dim, v_dim, dropout, attention_length, ffn_multiply, ffn_single_stage,
                 semantic_channel, positional_channel, temporal_channel, num_time_buckets):
        super().__init__()
        self.attention = AdaptiveMultiChannelAttention(dim, num_heads, qk_dim, v_dim, attention_length,
                                                       semantic_channel, positional_channel, temporal_channel,
                                                       num_time_buckets)
        self.ffn = MultiStageFFN(self.attention.out_dim, dim, dropout, ffn_multiply, ffn_single_stage)

    def forward(self, x, mask, timestamps=None, next_timestamps=None):
        return self.ffn(self.attention(x, mask, timestamps, next_timestamps), x)


@register_model("fuxi_alpha", family="seqrec")
class FuXiAlpha(TimeAwareStack):
    """FuXi-alpha on the family base. Defaults: the official ML-1M base config (fuxi-*.gin: d 50, 2 blocks, 1 head,
    dqk = dv = 50, ffn_multiply 1, dropout 0.2)."""

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
        ffn_multiply: int = 1,
        ffn_single_stage: bool = False,
        semantic_channel: bool = True,
        positional_channel: bool = True,
        temporal_channel: bool = True,
        attention_length: int | None = None,
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
        self.build_stack(attention_length, dropout, num_blocks, lambda length: FuXiBlock(
            embed_dim, num_heads, qk_dim, v_dim, dropout, length, ffn_multiply, ffn_single_stage, semantic_channel,
            positional_channel, temporal_channel, num_time_buckets))

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict:
        return {**recipe_search_space(trial, heads=[1, 2, 4, 8]),
                "ffn_multiply": trial.suggest_categorical("ffn_multiply", [1, 2, 4])}
