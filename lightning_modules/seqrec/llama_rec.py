"""A Llama-style decoder as a sequential recommender: the "Llama" backbone of "Scaling New Frontiers: Insights into
Large Recommendation Models" (Guo et al., arXiv 2412.00714, RQ1), built from Llama's layer (Touvron et al. 2023,
arXiv 2302.13971, Sec. 2.2): pre-normalisation with RMSNorm, SwiGLU feed-forward (hidden 8d/3), rotary position
embeddings (RoPE) on queries and keys, causal softmax attention through `scaled_dot_product_attention`, no biases,
a final RMSNorm. No absolute position embedding (RoPE carries the order).

The study publishes no code ([recon] in the paper notes), so the training recipe is the one it states it shares
with HSTU: L2-normalised vectors, sampled softmax with 128 uniform negatives and tau 0.05 (family base), AdamW
lr 1e-3, dropout 0.2 on the residual branches and the attention weights (Llama itself uses none; `dropout=0`
gives the pure form).
"""
from __future__ import annotations

import optuna
import torch
from torch import nn

from contracts.batch.seqrec import PAD
from contracts.registry import register_model
from lightning_modules.seqrec.base import SeqRecModule
from lightning_modules.seqrec.layers import MultiHeadSelfAttention, RotaryEmbedding, SwiGLU, causal_padding_mask


class LlamaBlock(nn.Module):
    """x + Attn(RMSNorm(x)) with RoPE, then x + SwiGLU(RMSNorm(x))."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float, eps: float = 1e-6):
        super().__init__()
        self.attention_norm = nn.RMSNorm(dim, eps=eps)
        self.attention = MultiHeadSelfAttention(dim, num_heads, dropout, bias=False)
        self.ffn_norm = nn.RMSNorm(dim, eps=eps)
        self.ffn = SwiGLU(dim, ffn_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, mask, rotary):
        h = self.attention_norm(x)
        x = x + self.dropout(self.attention(h, h, mask, rotary=rotary))
        return x + self.dropout(self.ffn(self.ffn_norm(x)))


@register_model("llama_rec", family="seqrec")
class LlamaRec(SeqRecModule):
    def __init__(
        self,
        num_items: int,
        max_len: int = 200,
        embed_dim: int = 50,
        num_blocks: int = 2,
        num_heads: int = 1,
        ffn_dim: int | None = None,
        rope_base: float = 10000.0,
        dropout: float = 0.2,
        loss: str = "sampled_softmax",
        num_negatives: int = 128,
        temperature: float = 0.05,
        l2_norm: bool = True,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.98),
        filter_seen: bool = True,
        eval_ks: tuple[int, ...] = (10, 50, 200),
    ):
        super().__init__(num_items, max_len, embed_dim, loss, num_negatives, temperature, l2_norm, lr,
                         weight_decay, betas, filter_seen, eval_ks)
        self.save_hyperparameters()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        ffn_dim = ffn_dim or int(round(8 * embed_dim / 3))  # Llama: 2/3 of 4d, keeping the FFN's parameter count
        nn.init.trunc_normal_(self.item_embedding.weight, std=0.02)
        with torch.no_grad():
            self.item_embedding.weight[PAD].zero_()
        self.embed_dropout = nn.Dropout(dropout)
        self.rotary = RotaryEmbedding(embed_dim // num_heads, rope_base)
        self.blocks = nn.ModuleList(LlamaBlock(embed_dim, num_heads, ffn_dim, dropout) for _ in range(num_blocks))
        self.final_norm = nn.RMSNorm(embed_dim, eps=1e-6)

    def forward(self, input_ids, timestamps=None, next_timestamps=None) -> torch.Tensor:
        mask = causal_padding_mask(input_ids)
        keep = (input_ids != PAD).unsqueeze(-1)
        x = self.embed_dropout(self.item_embedding(input_ids)) * keep
        for block in self.blocks:
            x = block(x, mask, self.rotary) * keep
        return self.final_norm(x)

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict:
        return {
            "lr": trial.suggest_float("lr", 3e-4, 3e-3, log=True),
            "dropout": trial.suggest_float("dropout", 0.1, 0.5),
            "num_blocks": trial.suggest_categorical("num_blocks", [2, 4, 8]),
            "num_heads": trial.suggest_categorical("num_heads", [1, 2, 5]),
            "temperature": trial.suggest_float("temperature", 0.02, 0.2, log=True),
        }
