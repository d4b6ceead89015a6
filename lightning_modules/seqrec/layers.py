"""Layers shared by several sequential recommenders: masks, embedding input, softmax self-attention."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules.seqrec.batch import PAD


def causal_padding_mask(input_ids: torch.Tensor) -> torch.Tensor:
    """[B, 1, L, L] bool, True = may attend: causal, padding keys hidden.

    Padded query rows attend to themselves only, which keeps softmax finite; their outputs are zeroed anyway.
    """
    length = input_ids.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=input_ids.device).tril()
    keys = (input_ids != PAD).unsqueeze(1)  # [B, 1, L]
    eye = torch.eye(length, dtype=torch.bool, device=input_ids.device)
    return ((causal & keys) | eye).unsqueeze(1)


class ItemPositionInput(nn.Module):
    """x = E[item] * sqrt(d) + P[position], dropout, padding zeroed (SASRec Sec. III-A; HSTU's preprocessor)."""

    def __init__(self, item_embedding: nn.Embedding, max_len: int, dropout: float):
        super().__init__()
        self.item_embedding = item_embedding
        self.position_embedding = nn.Embedding(max_len, item_embedding.embedding_dim)
        self.dropout = nn.Dropout(dropout)
        self.scale = math.sqrt(item_embedding.embedding_dim)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.item_embedding(input_ids) * self.scale + self.position_embedding(positions)
        return self.dropout(x) * (input_ids != PAD).unsqueeze(-1)


class MultiHeadSelfAttention(nn.Module):
    """Softmax multi-head attention through `scaled_dot_product_attention`; queries and keys may differ in input."""

    def __init__(self, dim: int, num_heads: int, dropout: float, bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=bias)
        self.k = nn.Linear(dim, dim, bias=bias)
        self.v = nn.Linear(dim, dim, bias=bias)
        self.out = nn.Linear(dim, dim, bias=bias)
        self.dropout = dropout

    def split(self, x: torch.Tensor) -> torch.Tensor:
        b, l, d = x.shape
        return x.view(b, l, self.num_heads, d // self.num_heads).transpose(1, 2)

    def forward(self, query_in: torch.Tensor, key_in: torch.Tensor, mask: torch.Tensor, rotary=None) -> torch.Tensor:
        q, k, v = self.split(self.q(query_in)), self.split(self.k(key_in)), self.split(self.v(key_in))
        if rotary is not None:
            q, k = rotary(q), rotary(k)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        b, h, l, dh = y.shape
        return self.out(y.transpose(1, 2).reshape(b, l, h * dh))


def left_to_right_padding(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Move each row's last `lengths[b]` entries to the front: [B, L, ...] left-padded -> right-padded.

    Applying it with `lengths = L - lengths` inverts it. Vectorised gather, no per-row Python.
    """
    length = x.shape[1]
    offset = (length - lengths).unsqueeze(1)  # pads in front
    index = (torch.arange(length, device=x.device).unsqueeze(0) + offset) % length
    if x.dim() > 2:
        index = index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, index)
