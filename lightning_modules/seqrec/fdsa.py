"""FDSA: Feature-level Deeper Self-Attention Network for Sequential Recommendation (Zhang et al., IJCAI 2019).

Two self-attention branches over the same history, concatenated (paper Sec. 3):
  item level     S = E_item[s] + P                      -> causal self-attention blocks -> O_s      (Sec. 3.3)
  feature level  A_i = the item's feature vectors (one per field: mean of its tokens; the projected text)
                 alpha_i = softmax_j(W_f A_ij + b_f), f_i = sum_j alpha_ij A_ij  ("vanilla attention", Eq. 2-3)
                 F = [f_1 .. f_L] + P                     -> causal self-attention blocks -> O_f      (Sec. 3.4)
  fusion         O_sf = [O_s ; O_f] W_sf + b_sf                                                       (Eq. 12)
  prediction     y_{t,j} = O_sf_t . E_item[j]  (candidates are the id embeddings, as in the paper)    (Eq. 13)
with SASRec's binary cross-entropy and one negative per position (Eq. 14). The blocks are pre-norm Transformer
layers with a two-layer ReLU FFN (the family's `PreNormBlock`). No official code is public; the defaults are
SASRec's (d=50, 2 blocks, 1 head, dropout 0.2, max length 50). Features are whatever side information the
datamodule provides (`item_features: true` on the board); without any, the feature branch sees positions only.
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
from lightning_modules.seqrec.layers import BlockStack, PreNormBlock, causal_padding_mask, window_positions
from lightning_modules.seqrec.side_information import ItemSideInformation, SideInformationMixin


def self_attention_stack(dim: int, num_blocks: int, num_heads: int, dropout: float) -> BlockStack:
    ffn = lambda: nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, dim))
    return BlockStack(PreNormBlock(MultiHeadAttention(dim, num_heads, dropout), ffn(),
                                   lambda: nn.LayerNorm(dim, eps=1e-8), dropout) for _ in range(num_blocks))


class VanillaAttention(nn.Module):
    """Eq. 2-3: f_i = sum_j softmax_j(W_f A_ij + b_f) A_ij over the item's feature vectors; absent ones masked."""

    def __init__(self, dim: int):
        super().__init__()
        self.score = nn.Linear(dim, 1)

    def forward(self, features: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        logits = self.score(features).squeeze(-1).masked_fill(~present, float("-inf"))  # [B, L, m]
        weights = torch.softmax(logits, dim=-1).nan_to_num(0.0)  # an item without features: all masked -> zeros
        return (weights.unsqueeze(-1) * features).sum(-2)


@register_model("fdsa", family="seqrec")
class FDSA(SideInformationMixin, SeqRecModule):
    def __init__(
        self,
        num_items: int,
        max_len: int = 50,
        embed_dim: int = 50,
        num_blocks: int = 2,
        num_heads: int = 1,
        dropout: float = 0.2,
        loss: str = "bce",
        num_negatives: int = 1,
        temperature: float = 1.0,
        l2_norm: bool = False,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.98),
        filter_seen: bool = True,
        eval_ks: tuple[int, ...] = (10, 20),
    ):
        super().__init__(**base_arguments(SeqRecModule, locals()))
        self.save_hyperparameters()
        self.side = ItemSideInformation(num_items, embed_dim)
        self.item_position = nn.Embedding(max_len, embed_dim)
        self.feature_position = nn.Embedding(max_len, embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.feature_attention = VanillaAttention(embed_dim)
        self.item_blocks = self_attention_stack(embed_dim, num_blocks, num_heads, dropout)
        self.feature_blocks = self_attention_stack(embed_dim, num_blocks, num_heads, dropout)
        self.item_norm = nn.LayerNorm(embed_dim, eps=1e-8)
        self.feature_norm = nn.LayerNorm(embed_dim, eps=1e-8)
        self.fusion = nn.Linear(2 * embed_dim, embed_dim)

    def item_features(self, input_ids: torch.Tensor) -> torch.Tensor:
        """[B, L, d]: each item's feature vectors combined by vanilla attention (zeros without side information)."""
        features, present = self.side.feature_tokens(input_ids)
        if features.shape[-2] == 0:
            return torch.zeros(*input_ids.shape, self.embed_dim, device=input_ids.device)
        return self.feature_attention(features, present)

    def forward(self, input_ids, timestamps=None, next_timestamps=None) -> torch.Tensor:
        keep = (input_ids != PAD).unsqueeze(-1)
        mask = causal_padding_mask(input_ids)
        positions = window_positions(self.item_position, input_ids.shape[1])
        s = self.dropout(self.item_embedding(input_ids) * self.embed_dim ** 0.5 + positions) * keep
        f = self.dropout(self.item_features(input_ids) + window_positions(self.feature_position, input_ids.shape[1])) * keep
        o_s = self.item_norm(self.item_blocks(s, keep, mask))
        o_f = self.feature_norm(self.feature_blocks(f, keep, mask))
        return self.fusion(torch.cat([o_s, o_f], dim=-1)) * keep

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict:
        return {
            "lr": trial.suggest_float("lr", 3e-4, 3e-3, log=True),
            "dropout": trial.suggest_float("dropout", 0.1, 0.5),
            "num_blocks": trial.suggest_categorical("num_blocks", [1, 2, 3]),
            "embed_dim": trial.suggest_categorical("embed_dim", [32, 50, 64, 128]),
            "weight_decay": trial.suggest_float("weight_decay", 1e-8, 1e-2, log=True),
        }
