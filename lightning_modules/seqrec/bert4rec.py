"""BERT4Rec: Sequential Recommendation with Bidirectional Encoder Representations from Transformer (Sun et al.,
CIKM 2019, arXiv 1904.06690).

Implements Sec. 3: item + learned position embeddings, LayerNorm and dropout (Eq. 5 and BERT's embedding layer);
bidirectional Transformer layers, post-LN as in BERT: LN(x + Dropout(MultiHead(x))), LN(x + Dropout(FFN(x)))
with a GELU FFN of width 4d (Eq. 1-4); the output layer GELU(h W_P + b_P) -> LayerNorm (Eq. 7) scored against the
shared item table. Training is the Cloze task (Sec. 3.6) as the official data generator builds it:
`dupe_factor` (10) copies of each training sequence, each with its own random mask of exactly
min(max_predictions, max(1, round(len x mask_prob))) items drawn without replacement (`masking="count"`; round
halves to even, as Python's round does), plus one copy per sequence with only its last item masked (the
fine-tuning instance that matches the test-time query, `mask_last_copy=True`). The model predicts the original
items at the masked positions (cross-entropy over all items, the family base's "ce" loss). Dropout 0.2 on hidden
states and attention, as in the official ML-1M config (bert_config_ml-1m_64.json). Evaluation appends [MASK] after
the history and ranks items at that position.

The [MASK] token has its own embedding here (the shared item table keeps ids 0..num_items, padding included),
so the family base's tables and evaluation stay untouched.
Differences from the official code, stated: (1) the official output layer adds a per-item bias to the scores; the
family's scores are plain inner products. (2) The official data generator builds the masked copies once, up front,
and slides windows over long sequences; here the copies are drawn fresh in every batch (each row repeated
`dupe_factor` times, plus its mask-last copy), on the last max_len + 1 items of each training sequence. (3) The
official training steps are 400k with lr 1e-4 and linear decay; the boards set epochs and lr. Each masked item is
always replaced by [MASK] (the official run scripts set mask_prob 1.0, so BERT's 80/10/10 rule is off there too).
Flags for this suite's earlier behaviour: `masking="bernoulli"` masks each item independently with probability
`mask_prob` (a row that drew none masks its last item), `mask_last_copy=False` drops the mask-last copy, and
`dropout=0.1` was the earlier default.
"""
from __future__ import annotations

import optuna
import torch
import torch.nn.functional as F
from torch import nn

from contracts.batch import seqrec as B
from contracts.registry import register_model
from lightning_modules.base_arguments import base_arguments
from lightning_modules.layers import MultiHeadAttention
from lightning_modules.seqrec.base import SeqRecModule
from lightning_modules.seqrec.layers import BlockStack, positions_from_first_item

MASKINGS = ("count", "bernoulli")


class BidirectionalBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, dropout: float):
        super().__init__()
        self.attention = MultiHeadAttention(dim, num_heads, dropout)
        self.attention_norm = nn.LayerNorm(dim, eps=1e-12)
        self.ffn = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.ffn_norm = nn.LayerNorm(dim, eps=1e-12)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, mask):
        x = self.attention_norm(x + self.dropout(self.attention(x, x, mask)))
        return self.ffn_norm(x + self.dropout(self.ffn(x)))


@register_model("bert4rec", family="seqrec")
class BERT4Rec(SeqRecModule):
    bidirectional = True  # every position sees the whole (masked) sequence; causality tests check for leaks instead
    # runs recorded before these arguments existed: Bernoulli masking (no cap), no mask-last copy, dropout 0.1
    earlier_behaviour = {"masking": "bernoulli", "max_predictions": None, "mask_last_copy": False, "dropout": 0.1}

    def __init__(
        self,
        num_items: int,
        max_len: int = 200,
        embed_dim: int = 64,
        num_blocks: int = 2,
        num_heads: int = 2,
        dropout: float = 0.2,
        mask_prob: float = 0.2,
        max_predictions: int = 40,
        masking: str = "count",
        mask_last_copy: bool = True,
        dupe_factor: int = 10,
        loss: str = "ce",
        num_negatives: int = 128,
        temperature: float = 1.0,
        l2_norm: bool = False,
        lr: float = 1e-4,
        weight_decay: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.999),
        filter_seen: bool = True,
        eval_ks: tuple[int, ...] = (10, 20),
    ):
        super().__init__(**base_arguments(SeqRecModule, locals()))
        self.save_hyperparameters()
        if not 0.0 < mask_prob < 1.0:
            raise ValueError(f"mask_prob must be in (0, 1), got {mask_prob}")
        self.mask_prob = mask_prob
        if dupe_factor < 1:
            raise ValueError(f"dupe_factor must be >= 1, got {dupe_factor}")
        if masking not in MASKINGS:
            raise ValueError(f"masking must be one of {MASKINGS}, got {masking!r}")
        if max_predictions < 1:
            raise ValueError(f"max_predictions must be >= 1, got {max_predictions}")
        self.masking = masking
        self.max_predictions = max_predictions
        self.mask_last_copy = mask_last_copy
        self.dupe_factor = dupe_factor
        self.mask_token = num_items + 1  # an id outside the item table, looked up in `mask_embedding`
        nn.init.trunc_normal_(self.item_embedding.weight, std=0.02)  # BERT initializer_range
        self.mask_embedding = nn.Parameter(torch.empty(embed_dim).normal_(0, 0.02))
        self.position_embedding = nn.Embedding(max_len + 1, embed_dim)  # history + the appended [MASK]
        nn.init.trunc_normal_(self.position_embedding.weight, std=0.02)
        self.embed_norm = nn.LayerNorm(embed_dim, eps=1e-12)
        self.embed_dropout = nn.Dropout(dropout)
        self.blocks = BlockStack(BidirectionalBlock(embed_dim, num_heads, dropout) for _ in range(num_blocks))
        self.output_transform = nn.Linear(embed_dim, embed_dim)  # Eq. 7: W_P, b_P
        self.output_norm = nn.LayerNorm(embed_dim, eps=1e-12)

    def forward(self, input_ids, timestamps=None, next_timestamps=None) -> torch.Tensor:
        """[B, L] ids (items, padding 0, [MASK] = num_items + 1) -> [B, L, d]; every position sees every item."""
        is_mask = input_ids == self.mask_token
        present = input_ids != B.PAD
        tokens = self.item_embedding(input_ids.masked_fill(is_mask, B.PAD))
        tokens = torch.where(is_mask.unsqueeze(-1), self.mask_embedding.to(tokens.dtype), tokens)
        x = self.embed_norm(tokens + self.position_embedding(positions_from_first_item(input_ids)))
        x = self.embed_dropout(x) * present.unsqueeze(-1)
        length = input_ids.shape[1]
        eye = torch.eye(length, dtype=torch.bool, device=input_ids.device)
        mask = (present.unsqueeze(1) | eye).unsqueeze(1)  # [B, 1, L, L]: padding keys hidden, no causal mask
        x = self.blocks(x, present.unsqueeze(-1), mask)
        return self.output_norm(F.gelu(self.output_transform(x)))

    # ----- the Cloze objective -----------------------------------------------------------------------------------
    @staticmethod
    def training_sequences(batch: dict) -> torch.Tensor:
        """[B, L+1]: each row's whole training window (the inputs followed by the last target), left-padded."""
        return torch.cat([batch[B.INPUT_IDS], batch[B.TARGET_IDS][:, -1:]], dim=1)

    def mask_items(self, sequences: torch.Tensor, generator: torch.Generator | None = None):
        """Mask items of each row; returns (masked inputs, targets with 0 = not masked).

        "count": exactly min(max_predictions, max(1, round(len x mask_prob))) items per row, chosen uniformly
        without replacement (the official generator). "bernoulli": each item with probability mask_prob, and a row
        that drew none gets its last item masked, so every row trains."""
        present = sequences != B.PAD
        noise = torch.rand(sequences.shape, device=sequences.device, generator=generator)
        if self.masking == "count":
            lengths = present.sum(1)
            count = torch.round(lengths.double() * self.mask_prob).clamp(min=1, max=self.max_predictions)
            count = torch.minimum(count.long(), lengths)
            # the k smallest noise values among a row's items are its masked positions (padding sorts last)
            rank = noise.masked_fill(~present, 2.0).argsort(1).argsort(1)
            chosen = rank < count.unsqueeze(1)
        else:
            chosen = (noise < self.mask_prob) & present
            none = ~chosen.any(1)
            chosen[:, -1] |= none & present[:, -1]
        masked = sequences.masked_fill(chosen, self.mask_token)
        targets = sequences.masked_fill(~chosen, B.PAD)
        return masked, targets

    def mask_last(self, sequences: torch.Tensor):
        """The official fine-tuning instance: only the last item (the rightmost column, left padding) is masked."""
        chosen = torch.zeros_like(sequences, dtype=torch.bool)
        chosen[:, -1] = sequences[:, -1] != B.PAD
        return sequences.masked_fill(chosen, self.mask_token), sequences.masked_fill(~chosen, B.PAD)

    def training_instances(self, batch: dict, generator: torch.Generator | None = None):
        """(originals, masked inputs, targets) of one batch: `dupe_factor` random-mask copies of every training
        sequence, then (with `mask_last_copy`) one mask-last copy of each."""
        sequences = self.training_sequences(batch)
        masked, targets = self.mask_items(sequences.repeat(self.dupe_factor, 1), generator)
        originals = sequences.repeat(self.dupe_factor, 1)
        if self.mask_last_copy:
            last_masked, last_targets = self.mask_last(sequences)
            originals = torch.cat([originals, sequences])
            masked, targets = torch.cat([masked, last_masked]), torch.cat([targets, last_targets])
        return originals, masked, targets

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        originals, masked, targets = self.training_instances(batch)
        loss = self.sequence_loss(self(masked), {B.INPUT_IDS: originals, B.TARGET_IDS: targets})
        loss = loss * batch.get(B.LOSS_SCALE, 1.0)
        self.log("train/loss", loss, prog_bar=True, batch_size=originals.shape[0])
        return loss

    def last_user_vector(self, batch: dict) -> torch.Tensor:
        history = batch[B.INPUT_IDS]
        query = torch.full_like(history[:, :1], self.mask_token)
        return self(torch.cat([history, query], dim=1))[:, -1]

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict:
        return {
            "lr": trial.suggest_float("lr", 1e-4, 3e-3, log=True),
            "dropout": trial.suggest_float("dropout", 0.0, 0.5),
            "mask_prob": trial.suggest_float("mask_prob", 0.1, 0.6),
            "num_blocks": trial.suggest_categorical("num_blocks", [1, 2, 3]),
            "embed_dim": trial.suggest_categorical("embed_dim", [32, 64, 128]),
        }
