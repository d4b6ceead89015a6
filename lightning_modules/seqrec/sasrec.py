"""SASRec: Self-Attentive Sequential Recommendation (Kang & McAuley, ICDM 2018, arXiv 1808.09781).

Implements Sec. III: embedding with learned positions (Eq. 1-2), stacked causal self-attention blocks
(Eq. 3-4) with a point-wise two-layer ReLU FFN (Eq. 5), each sub-layer wrapped as
`x + Dropout(sublayer(LayerNorm(x)))` (Sec. III-D), a final LayerNorm, and item scores by the inner product
with the shared item embedding (Eq. 6, "SASRec with shared item embedding"). The default loss is the paper's
binary cross-entropy with one negative (Eq. 7); the base offers full and sampled softmax as well.

The block follows the official code by default (`query_only_layernorm=True`): the TensorFlow code and its PyTorch
port normalise only the queries, Q = LayerNorm(x), take keys and values from the un-normalised x, and the residual
adds the normalised query: x' = Q + Dropout(Attn(Q, x)); the FFN then reads z = LayerNorm(x') and its residual
adds z: z + Dropout(FFN(z)). Flags for the other forms, stated rather than hidden:
- `query_only_layernorm=False`: the paper's wording, pre-norm of the whole sub-layer input with raw residuals,
  x + Dropout(Attn(LN(x))), x + Dropout(FFN(LN(x))).
- `residual_from_normalized=False` (with `query_only_layernorm=True`): queries normalised but raw residuals,
  x + Dropout(Attn(LN(x), x)), x + Dropout(FFN(LN(x))) -- this suite's form before the official one became the
  default; records trained with `query_only_layernorm=True` and no `residual_from_normalized` argument used it.

`item_features=True` is the feature-fused baseline "SASRec with summed attribute embeddings" (not in the paper):
an item is E[item] + its side-information embeddings (each field's mean token embedding, the projected text),
summed, both as input and as candidate (see `side_information`). Off, the model is unchanged.
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
from lightning_modules.seqrec.layers import BlockStack, ItemPositionInput, PreNormBlock, causal_padding_mask
from lightning_modules.seqrec.side_information import (ItemSideInformation, ItemWithSideInformation,
                                                       SideInformationMixin)


class PointWiseFeedForward(nn.Module):
    """Eq. 5: ReLU(x W1 + b1) W2 + b2, both layers of width d, dropout after each."""

    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, dim))

    def forward(self, x):
        return self.net(x)


class OfficialSASRecBlock(PreNormBlock):
    """The official code's block: Q = LN(x); x' = Q + Dropout(Attn(Q, x)); z = LN(x'); out = z + Dropout(FFN(z)).
    Same parameters and checkpoint keys as the pre-norm block; only the residual wiring differs."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor, rotary=None) -> torch.Tensor:
        q = self.attention_norm(x)
        x = q + self.dropout(self.attention(q, x, mask, rotary=rotary))
        z = self.ffn_norm(x)
        return z + self.dropout(self.ffn(z))


def self_attention_block(dim: int, num_heads: int, dropout: float, query_only_layernorm: bool,
                         residual_from_normalized: bool = True) -> PreNormBlock:
    """Eq. 3-5 with the official code's wiring (or the flagged forms, see the module docstring), LayerNorm eps
    1e-8 as in the official code."""
    block = OfficialSASRecBlock if query_only_layernorm and residual_from_normalized else PreNormBlock
    return block(MultiHeadAttention(dim, num_heads, dropout), PointWiseFeedForward(dim, dropout),
                 lambda: nn.LayerNorm(dim, eps=1e-8), dropout, keys_from_input=query_only_layernorm)


@register_model("sasrec", family="seqrec")
class SASRec(SideInformationMixin, SeqRecModule):
    # runs recorded before these arguments existed used the paper's pre-norm block with raw residuals
    earlier_behaviour = {"query_only_layernorm": False, "residual_from_normalized": False}

    def __init__(
        self,
        num_items: int,
        max_len: int = 50,
        embed_dim: int = 50,
        num_blocks: int = 2,
        num_heads: int = 1,
        dropout: float = 0.2,
        query_only_layernorm: bool = True,
        residual_from_normalized: bool = True,
        item_features: bool = False,
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
        items = self.item_embedding
        if item_features:
            self.side = ItemSideInformation(num_items, embed_dim)
            self.side_candidates = True
            items = ItemWithSideInformation(self.item_embedding, self.side)
        self.input = ItemPositionInput(items, max_len, dropout)
        self.blocks = BlockStack(
            self_attention_block(embed_dim, num_heads, dropout, query_only_layernorm, residual_from_normalized)
            for _ in range(num_blocks)
        )
        self.final_norm = nn.LayerNorm(embed_dim, eps=1e-8)

    def forward(self, input_ids, timestamps=None, next_timestamps=None) -> torch.Tensor:
        keep = (input_ids != PAD).unsqueeze(-1)
        return self.final_norm(self.blocks(self.input(input_ids), keep, causal_padding_mask(input_ids)))

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict:
        return {
            "lr": trial.suggest_float("lr", 3e-4, 3e-3, log=True),
            "dropout": trial.suggest_float("dropout", 0.1, 0.5),
            "num_blocks": trial.suggest_categorical("num_blocks", [1, 2, 3]),
            "num_heads": trial.suggest_categorical("num_heads", [1, 2]),
            "embed_dim": trial.suggest_categorical("embed_dim", [32, 50, 64, 128]),
            "weight_decay": trial.suggest_float("weight_decay", 1e-8, 1e-2, log=True),
        }
