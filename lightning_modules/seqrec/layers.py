"""Layers shared by several sequential recommenders: masks, embedding input, softmax self-attention, the pre-norm
Transformer layer and the block stack."""
from __future__ import annotations

import math
from typing import Callable

import optuna
import torch
import torch.nn.functional as F
from torch import nn

from contracts.batch.seqrec import PAD
from lightning_modules.layers import using_reference_kernels
from lightning_modules.seqrec.base import SeqRecModule


def causal_padding_mask(input_ids: torch.Tensor) -> torch.Tensor:
    """[B, 1, L, L] bool, True = may attend: causal, padding keys hidden.

    Padded query rows attend to themselves only, which keeps softmax finite; their outputs are zeroed anyway.
    """
    length = input_ids.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=input_ids.device).tril()
    keys = (input_ids != PAD).unsqueeze(1)  # [B, 1, L]
    eye = torch.eye(length, dtype=torch.bool, device=input_ids.device)
    return ((causal & keys) | eye).unsqueeze(1)


def window_positions(table: nn.Embedding, length: int) -> torch.Tensor:
    """[length, d]: the embeddings of a left-padded window's last `length` positions. The table holds one row per
    position of a full window (max_len), so a batch trimmed of its all-padding leading columns (the seqrec
    datamodule's `length_grouped`) sees exactly the positions the untrimmed window would."""
    rows = table.num_embeddings
    if length > rows:
        raise ValueError(f"sequence length {length} exceeds the {rows} learned positions (max_len); build the model "
                         f"with max_len >= {length}")
    return table.weight[rows - length:]


class ItemPositionInput(nn.Module):
    """x = E[item] * sqrt(d) + P[position], dropout, padding zeroed (SASRec Sec. III-A; HSTU's preprocessor)."""

    def __init__(self, item_embedding: nn.Embedding, max_len: int, dropout: float):
        super().__init__()
        self.item_embedding = item_embedding
        self.position_embedding = nn.Embedding(max_len, item_embedding.embedding_dim)
        self.dropout = nn.Dropout(dropout)
        self.scale = math.sqrt(item_embedding.embedding_dim)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = window_positions(self.position_embedding, input_ids.shape[1])
        x = self.item_embedding(input_ids) * self.scale + positions
        return self.dropout(x) * (input_ids != PAD).unsqueeze(-1)


class PreNormBlock(nn.Module):
    """A pre-norm Transformer layer: x + Dropout(Attn(Norm(x))), then x + Dropout(FFN(Norm(x))) (SASRec Sec. III-D,
    GPT-2, Llama). A paper brings its attention, its FFN and its norm; the residual wiring is this one.

    `keys_from_input=True` normalises only the queries, keys and values coming from the un-normalised x (the
    official SASRec code). `ffn_name` is the FFN's name in the checkpoint keys (GPT-2 calls it "mlp")."""

    def __init__(self, attention: nn.Module, ffn: nn.Module, norm: Callable[[], nn.Module], dropout: float,
                 keys_from_input: bool = False, ffn_name: str = "ffn"):
        super().__init__()
        self.attention_norm = norm()
        self.attention = attention
        self.ffn_name = ffn_name
        self.add_module(f"{ffn_name}_norm", norm())
        self.add_module(ffn_name, ffn)
        self.dropout = nn.Dropout(dropout)
        self.keys_from_input = keys_from_input

    def forward(self, x: torch.Tensor, mask: torch.Tensor, rotary=None) -> torch.Tensor:
        h = self.attention_norm(x)
        keys = x if self.keys_from_input else h
        x = x + self.dropout(self.attention(h, keys, mask, rotary=rotary))
        ffn_norm, ffn = self._modules[f"{self.ffn_name}_norm"], self._modules[self.ffn_name]
        return x + self.dropout(ffn(ffn_norm(x)))


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A boolean attention mask (True = may attend) as the additive float mask softmax attention adds (0 / -inf)."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(~allowed, float("-inf"))


class BlockStack(nn.ModuleList):
    """Blocks applied in turn; padded positions are zeroed after each block, so padding never feeds the next one.

    A boolean attention mask (the first argument after `keep`) is turned into an additive float mask once for all
    blocks: `scaled_dot_product_attention` would convert it on every call, and its CPU math path (the one training
    with attention dropout takes) runs markedly faster with the float mask. Same scores, bit for bit."""

    def forward(self, x: torch.Tensor, keep: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if args and isinstance(args[0], torch.Tensor) and args[0].dtype == torch.bool and not using_reference_kernels():
            args = (additive_mask(args[0], x.dtype), *args[1:])
        for block in self:
            x = block(x, *args, **kwargs) * keep
        return x


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


# ----- layers of the HSTU / FuXi-alpha / Llama / GPT / BERT4Rec family members ------------------------------------
def positions_from_first_item(input_ids: torch.Tensor) -> torch.Tensor:
    """[B, L] 0 at each row's oldest item, counting up; 0 on padding. With left padding this gives the positions the
    right-padded official codes (HSTU, GPT-2, BERT4Rec) see: the first item of a sequence is position 0."""
    valid = (input_ids != PAD).long()
    return (valid.cumsum(1) - 1).clamp(min=0)


class FirstItemPositionInput(nn.Module):
    """x = E[item] * scale + P[position from the first item], dropout, padding zeroed.

    HSTU's `LearnablePositionalEmbeddingInputFeaturesPreprocessor` (scale sqrt(d), P ~ truncated normal with std
    sqrt(1/d)) and GPT-2's wte + wpe (scale 1) on left-padded batches."""

    def __init__(self, item_embedding: nn.Embedding, num_positions: int, dropout: float, scale_by_sqrt_dim: bool = True):
        super().__init__()
        self.item_embedding = item_embedding
        dim = item_embedding.embedding_dim
        self.position_embedding = nn.Embedding(num_positions, dim)
        nn.init.trunc_normal_(self.position_embedding.weight, std=math.sqrt(1.0 / dim))
        self.dropout = nn.Dropout(dropout)
        self.scale = math.sqrt(dim) if scale_by_sqrt_dim else 1.0

    def forward(self, input_ids: torch.Tensor, item_vectors: torch.Tensor | None = None) -> torch.Tensor:
        if input_ids.shape[1] > self.position_embedding.num_embeddings:
            raise ValueError(f"sequence length {input_ids.shape[1]} exceeds the {self.position_embedding.num_embeddings} "
                             f"learned positions (max_len)")
        items = self.item_embedding(input_ids) if item_vectors is None else item_vectors
        x = items * self.scale + self.position_embedding(positions_from_first_item(input_ids))
        return self.dropout(x) * (input_ids != PAD).unsqueeze(-1)


def rms_norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """RMSNorm without a learned weight over the last dim (FuXi-alpha's `F.rms_norm`)."""
    return F.rms_norm(x, (x.shape[-1],), eps=eps)


def layer_norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """LayerNorm without affine parameters over the last dim (HSTU's `F.layer_norm`)."""
    return F.layer_norm(x, (x.shape[-1],), eps=eps)


def causal_valid_mask(input_ids: torch.Tensor) -> torch.Tensor:
    """[B, 1, L, L] float 0/1 for pointwise (non-softmax) attention: 1 where key j <= query i and both are items."""
    valid = (input_ids != PAD)
    length = input_ids.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=input_ids.device).tril()
    return (causal & valid.unsqueeze(1) & valid.unsqueeze(2)).unsqueeze(1).to(torch.get_default_dtype())


def log_time_buckets(delta: torch.Tensor, num_buckets: int = 128, divisor: float = 0.301) -> torch.Tensor:
    """HSTU's time bucketisation: clamp(floor(ln(max(|dt|, 1)) / 0.301), 0, num_buckets), as a long tensor.

    The official code divides a natural log by 0.301 (= log10 2), so buckets widen by e^0.301 ~ 1.35 each."""
    return (torch.log(delta.abs().clamp(min=1).double()) / divisor).long().clamp(0, num_buckets)


class RelativeBucketedTimeAndPositionBias(nn.Module):
    """HSTU's `RelativeBucketedTimeAndPositionBasedBias`: one learned scalar per relative position offset (2N-1 of
    them, a Toeplitz N x N matrix) plus one per log-bucket of t_{i+1} - t_j (129 of them); shared by all heads.

    `forward` returns the two parts separately ([1, L, L] and [B, L, L], or None when switched off), so HSTU can add
    them and FuXi-alpha can use each as its own attention channel.
    """

    def __init__(self, num_positions: int, num_buckets: int = 128, position: bool = True, time: bool = True):
        super().__init__()
        self.num_positions = num_positions
        self.num_buckets = num_buckets
        self.position_weight = nn.Parameter(torch.empty(2 * num_positions - 1).normal_(0, 0.02)) if position else None
        self.time_weight = nn.Parameter(torch.empty(num_buckets + 1).normal_(0, 0.02)) if time else None

    def position_bias(self, length: int, device=None) -> torch.Tensor | None:
        """[1, L, L]: bias[i, j] = w_pos[N - 1 + j - i] (the official pad/repeat trick computes the same)."""
        if self.position_weight is None:
            return None
        if length > self.num_positions:
            raise ValueError(f"sequence length {length} exceeds the relative-bias table size {self.num_positions}")
        idx = torch.arange(length, device=device)
        return self.position_weight[self.num_positions - 1 + idx.unsqueeze(0) - idx.unsqueeze(1)].unsqueeze(0)

    def time_bias(self, timestamps: torch.Tensor | None, next_timestamps: torch.Tensor | None) -> torch.Tensor | None:
        """[B, L, L]: bias[b, i, j] = w_ts[bucket(t_{i+1} - t_j)], the query time of position i against item j."""
        if self.time_weight is None:
            return None
        if timestamps is None or next_timestamps is None:
            raise ValueError("the time bias is on but the batch has no timestamps (this dataset has no time); "
                             "switch the time channel off (time_bias: false / temporal_channel: false)")
        buckets = log_time_buckets(next_timestamps.unsqueeze(2) - timestamps.unsqueeze(1), self.num_buckets)
        return self.time_weight[buckets]

    def forward(self, length: int, timestamps=None, next_timestamps=None, device=None):
        return self.position_bias(length, device), self.time_bias(timestamps, next_timestamps)


class RotaryEmbedding(nn.Module):
    """RoPE (Su et al. 2021) as in Llama: rotate pairs (x_{2k}, x_{2k+1}) of each head by position * base^{-2k/d}.

    Applied to [B, H, L, d_head] queries and keys; attention scores then depend only on the offset j - i, so left
    padding needs no position shift. With an odd head size the last channel is left unrotated."""

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        self.rotated = head_dim - head_dim % 2
        inv_freq = base ** (-torch.arange(0, self.rotated, 2, dtype=torch.float32) / max(self.rotated, 1))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        angles = torch.arange(x.shape[2], device=x.device, dtype=x.dtype).unsqueeze(-1) * self.inv_freq.to(x.dtype)
        cos, sin = angles.cos(), angles.sin()  # [L, d/2], broadcast over batch and heads
        head, rest = x[..., : self.rotated], x[..., self.rotated:]
        even, odd = head[..., 0::2], head[..., 1::2]
        rotated = torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)
        return torch.cat([rotated, rest], dim=-1)


class SwiGLU(nn.Module):
    """W2( SiLU(W1 x) * W3 x ), no biases (Shazeer 2020; Llama's FFN and FuXi-alpha's MFFN stage 2)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


OFFICIAL_OUTPUT_SLOTS = 11  # gr_output_length (10) + 1: the official padded length is max_len + 11


class TimeAwareStack(SeqRecModule):
    """What HSTU and FuXi-alpha (built on the HSTU code) share: the official input module (E * sqrt(d) + positions
    from the first item, N(0, 0.02) item table), a stack of blocks that read timestamps, padded rows zeroed."""

    def build_stack(self, attention_length: int | None, dropout: float, num_blocks: int, make_block) -> None:
        self.attention_length = attention_length or self.max_len + OFFICIAL_OUTPUT_SLOTS
        if self.attention_length < self.max_len:
            raise ValueError(f"attention_length {self.attention_length} < max_len {self.max_len}")
        nn.init.trunc_normal_(self.item_embedding.weight, std=0.02)  # official LocalEmbeddingModule init
        with torch.no_grad():
            self.item_embedding.weight[PAD].zero_()
        self.input = FirstItemPositionInput(self.item_embedding, self.attention_length, dropout)
        self.blocks = BlockStack(make_block(self.attention_length) for _ in range(num_blocks))

    def forward(self, input_ids, timestamps=None, next_timestamps=None) -> torch.Tensor:
        keep = (input_ids != PAD).unsqueeze(-1)
        return self.blocks(self.input(input_ids), keep, causal_valid_mask(input_ids), timestamps, next_timestamps)


def recipe_search_space(trial: optuna.Trial, heads: list[int]) -> dict:
    """The HSTU recipe's knobs, searched the same way for HSTU and FuXi-alpha."""
    return {
        "lr": trial.suggest_float("lr", 3e-4, 3e-3, log=True),
        "dropout": trial.suggest_float("dropout", 0.1, 0.5),
        "num_negatives": trial.suggest_categorical("num_negatives", [64, 128, 256]),
        "temperature": trial.suggest_float("temperature", 0.02, 0.2, log=True),
        "num_blocks": trial.suggest_categorical("num_blocks", [2, 4, 8]),
        "num_heads": trial.suggest_categorical("num_heads", heads),
    }
