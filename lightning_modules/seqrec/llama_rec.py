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
from lightning_modules.base_arguments import base_arguments
from lightning_modules.layers import MultiHeadAttention
from lightning_modules.seqrec.base import SeqRecModule
from lightning_modules.seqrec.layers import BlockStack, PreNormBlock, RotaryEmbedding, SwiGLU, causal_padding_mask


def llama_block(dim: int, num_heads: int, ffn_dim: int, dropout: float, eps: float = 1e-6) -> PreNormBlock:
    """x + Attn(RMSNorm(x)) with RoPE (passed at call time), then x + SwiGLU(RMSNorm(x)); no biases."""
    return PreNormBlock(MultiHeadAttention(dim, num_heads, dropout, bias=False), SwiGLU(dim, ffn_dim),
                        lambda: nn.RMSNorm(dim, eps=eps), dropout)


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
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        ffn_dim = ffn_dim or int(round(8 * embed_dim / 3))  # Llama: 2/3 of 4d, keeping the FFN's parameter count
        nn.init.trunc_normal_(self.item_embedding.weight, std=0.02)
        with torch.no_grad():
            self.item_embedding.weight[PAD].zero_()
        self.embed_dropout = nn.Dropout(dropout)
        self.rotary = RotaryEmbedding(embed_dim // num_heads, rope_base)
        self.blocks = BlockStack(llama_block(embed_dim, num_heads, ffn_dim, dropout) for _ in range(num_blocks))
        self.final_norm = nn.RMSNorm(embed_dim, eps=1e-6)

    def forward(self, input_ids, timestamps=None, next_timestamps=None) -> torch.Tensor:
        keep = (input_ids != PAD).unsqueeze(-1)
        x = self.embed_dropout(self.item_embedding(input_ids)) * keep
        return self.final_norm(self.blocks(x, keep, causal_padding_mask(input_ids), rotary=self.rotary))

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict:
        return {
            "lr": trial.suggest_float("lr", 3e-4, 3e-3, log=True),
            "dropout": trial.suggest_float("dropout", 0.1, 0.5),
            "num_blocks": trial.suggest_categorical("num_blocks", [2, 4, 8]),
            "num_heads": trial.suggest_categorical("num_heads", [1, 2, 5]),
            "temperature": trial.suggest_float("temperature", 0.02, 0.2, log=True),
        }
