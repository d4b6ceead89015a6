"""A GPT-2-style decoder as a sequential recommender: the "GPT" backbone of "Scaling New Frontiers: Insights into
Large Recommendation Models" (Guo et al., arXiv 2412.00714, RQ1), built from GPT-2's layer (Radford et al. 2019):
token + learned absolute position embeddings (positions from the first item, as GPT-2 sees right-padded text),
pre-LayerNorm blocks `x + Attn(LN(x))`, `x + MLP(LN(x))` with a GELU MLP of width 4d, causal softmax attention
through `scaled_dot_product_attention`, biases on, and a final LayerNorm.

The study publishes no code ([recon]); the training recipe is the HSTU one it shares: L2-normalised vectors,
sampled softmax (128 uniform negatives, tau 0.05), AdamW lr 1e-3, dropout 0.2.
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
from lightning_modules.seqrec.layers import BlockStack, FirstItemPositionInput, PreNormBlock, causal_padding_mask


def gpt_block(dim: int, num_heads: int, dropout: float, mlp_ratio: int = 4) -> PreNormBlock:
    """GPT-2's layer: LayerNorm, biased attention, a tanh-GELU MLP of width mlp_ratio * d."""
    attention = MultiHeadAttention(dim, num_heads, dropout)
    mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(approximate="tanh"), nn.Linear(mlp_ratio * dim, dim))
    return PreNormBlock(attention, mlp, lambda: nn.LayerNorm(dim), dropout, ffn_name="mlp")


@register_model("gpt_rec", family="seqrec")
class GPTRec(SeqRecModule):
    def __init__(
        self,
        num_items: int,
        max_len: int = 200,
        embed_dim: int = 50,
        num_blocks: int = 2,
        num_heads: int = 1,
        mlp_ratio: int = 4,
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
        nn.init.normal_(self.item_embedding.weight, std=0.02)  # GPT-2 init
        with torch.no_grad():
            self.item_embedding.weight[PAD].zero_()
        self.input = FirstItemPositionInput(self.item_embedding, max_len, dropout, scale_by_sqrt_dim=False)
        nn.init.normal_(self.input.position_embedding.weight, std=0.01)
        self.blocks = BlockStack(gpt_block(embed_dim, num_heads, dropout, mlp_ratio) for _ in range(num_blocks))
        self.final_norm = nn.LayerNorm(embed_dim)

    def forward(self, input_ids, timestamps=None, next_timestamps=None) -> torch.Tensor:
        keep = (input_ids != PAD).unsqueeze(-1)
        return self.final_norm(self.blocks(self.input(input_ids), keep, causal_padding_mask(input_ids)))

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict:
        return {
            "lr": trial.suggest_float("lr", 3e-4, 3e-3, log=True),
            "dropout": trial.suggest_float("dropout", 0.1, 0.5),
            "num_blocks": trial.suggest_categorical("num_blocks", [2, 4, 8]),
            "num_heads": trial.suggest_categorical("num_heads", [1, 2, 5]),
            "temperature": trial.suggest_float("temperature", 0.02, 0.2, log=True),
        }
