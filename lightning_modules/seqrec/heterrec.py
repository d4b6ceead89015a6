"""HeterRec-style reconstruction (no official code) of HeterRec (SIGIR 2025, arXiv 2503.01469).

HeterRec: Heterogeneous Information Transformer for Scalable Sequential Recommendation (v1 title: "Hierarchical
Causal Transformer with Heterogeneous Information for Expandable Sequential Recommendation"). No code and no full
text of the paper could be read: this module is rebuilt from the abstract and third-party summaries, and every
choice they leave open is a constructor flag.
The paper's three parts, in its order:

HTFL, Heterogeneous Token Flattening Layer. Item i becomes K typed tokens: its ID embedding, one token per side-
information field (the mean embedding of the field's values: genres, release year, category, brand), and its text
embedding projected to width d (one projection per type). Each token adds a token-type embedding T[k] and the
item-position embedding P[i]; the history becomes one sequence [t_1^1 .. t_1^K, t_2^1 .. t_2^K, ...] of L*K tokens.
  `htfl=False` (ablation): no flattening, one token per item = ID embedding + the sum of its side embeddings.

HCT, Hierarchical Causal Transformer.
  (a) token level: `token_blocks` pre-norm Transformer layers over the L*K tokens, a token of item i attending to
      every token of items j <= i (causal across items) and to all tokens of its own item (`within_item="full"`;
      "causal" lets it see only the tokens before it in its item);
  (b) per-item aggregation of the K token outputs (`aggregation`: "mean", "id" = the ID token's output, "last");
  (c) item level: `item_blocks` causal layers over the L item vectors, then a LayerNorm: the user vector u_i.
  `hct=False` (ablation): one flat causal Transformer (token_blocks + item_blocks layers, strict token order) over
  the flattened tokens, u_i = the output at item i's last token.

LMP, Listwise Multi-step Prediction. From u_i predict the next `lmp_steps` = S items i+1 .. i+S: step s scores
with head_s(u_i) (`lmp_step_heads`: a linear head per step s >= 2, initialised to the identity; step 1 reads u_i
itself) and takes the family's listwise loss (sampled softmax over `num_negatives` uniform negatives by default,
or the full softmax "ce") against item i+s; the total is sum_s w_s L_s with w = `lmp_weights`. Targets beyond the
training window are absent, so validation and test items are never targets. S = 1, w = (1,) is exactly the base
next-item loss (the `single_step` ablation).

Scoring: candidates are the ID embedding plus the item's summed side embeddings (`candidate_features`; False: ID
embeddings only), so rarely seen items score by their attributes. The training recipe is the HSTU one used by the
family's other generative rows (sampled softmax over 128 uniform negatives, L2-normalised vectors, AdamW lr 1e-3)
except the temperature, 0.1 instead of 0.05: with the multi-step loss, 0.05 learned a planted next-item pattern
markedly slower in our tests (the paper's value is unknown).
`dropout` applies to the embeddings, the residual branches and the FFN; `attention_dropout` (default 0) to the
attention weights, which at L*K tokens are K^2 times SASRec's and whose dropout masks would cost about a quarter of
a CPU training step.
Differences from the paper that are known: no image tokens (no images here); the text encoder is MiniLM, not the
paper's; the paper's widths, depths, S, step weights and negatives are unknown, so the defaults are ours.
"""
from __future__ import annotations

import optuna
import torch
from torch import nn

from contracts.batch import seqrec as B
from contracts.registry import register_model
from lightning_modules.base_arguments import base_arguments
from lightning_modules.layers import MultiHeadAttention
from lightning_modules.seqrec.base import SeqRecModule
from lightning_modules.seqrec.layers import BlockStack, PreNormBlock, causal_padding_mask, window_positions
from lightning_modules.seqrec.side_information import ItemSideInformation, SideInformationMixin

WITHIN_ITEM = ("full", "causal")
AGGREGATIONS = ("mean", "id", "last")


def transformer_stack(dim: int, num_blocks: int, num_heads: int, dropout: float, ffn_multiply: int,
                      attention_dropout: float) -> BlockStack:
    ffn = lambda: nn.Sequential(nn.Linear(dim, dim * ffn_multiply), nn.GELU(), nn.Dropout(dropout),
                                nn.Linear(dim * ffn_multiply, dim))
    return BlockStack(PreNormBlock(MultiHeadAttention(dim, num_heads, attention_dropout), ffn(),
                                   lambda: nn.LayerNorm(dim), dropout) for _ in range(num_blocks))


def hierarchical_token_mask(input_ids: torch.Tensor, tokens_per_item: int, within_item: str = "full") -> torch.Tensor:
    """[B, 1, L*K, L*K] bool, True = may attend: token (i, k) sees token (j, k') when item j < i, or j == i and
    (within_item "full") any k' / ("causal") k' <= k; padded items' tokens are hidden as keys; a padded query sees
    itself only (keeps the softmax finite; its output is zeroed)."""
    length = input_ids.shape[1] * tokens_per_item
    device = input_ids.device
    item = torch.arange(length, device=device) // tokens_per_item
    allowed = item.unsqueeze(0) <= item.unsqueeze(1)  # [query, key]: key's item not after the query's
    if within_item == "causal":
        token = torch.arange(length, device=device)
        allowed &= (item.unsqueeze(0) < item.unsqueeze(1)) | (token.unsqueeze(0) <= token.unsqueeze(1))
    keys = (input_ids != B.PAD).repeat_interleave(tokens_per_item, dim=1).unsqueeze(1)  # [B, 1, L*K]
    eye = torch.eye(length, dtype=torch.bool, device=device)
    return ((allowed & keys) | eye).unsqueeze(1)


def flat_causal_mask(input_ids: torch.Tensor, tokens_per_item: int) -> torch.Tensor:
    """[B, 1, L*K, L*K] bool: plain token-order causality over the flattened tokens (the no-HCT ablation)."""
    length = input_ids.shape[1] * tokens_per_item
    causal = torch.ones(length, length, dtype=torch.bool, device=input_ids.device).tril()
    keys = (input_ids != B.PAD).repeat_interleave(tokens_per_item, dim=1).unsqueeze(1)
    eye = torch.eye(length, dtype=torch.bool, device=input_ids.device)
    return ((causal & keys) | eye).unsqueeze(1)


class HeterogeneousTokenFlattening(nn.Module):
    """HTFL: [B, L] item ids -> [B, L*K, d] typed tokens (+ token-type and item-position embeddings)."""

    def __init__(self, item_embedding: nn.Embedding, side: ItemSideInformation, max_len: int, dim: int,
                 dropout: float, flatten: bool = True, max_token_types: int = 16):
        super().__init__()
        self.item_embedding = item_embedding
        self.side = side
        self.flatten = flatten
        self.type_embedding = nn.Embedding(max_token_types, dim)
        self.position_embedding = nn.Embedding(max_len, dim)
        for table in (self.type_embedding, self.position_embedding):
            nn.init.normal_(table.weight, std=0.02)
        self.dropout = nn.Dropout(dropout)

    @property
    def tokens_per_item(self) -> int:
        return 1 + self.side.num_tokens if self.flatten else 1

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        b, length = input_ids.shape
        ids = self.item_embedding(input_ids).unsqueeze(-2)  # [B, L, 1, d]
        side, _ = self.side.feature_tokens(input_ids)  # [B, L, K-1, d]
        tokens = torch.cat([ids, side], dim=-2) if self.flatten else ids + side.sum(-2, keepdim=True)
        k = tokens.shape[-2]
        if k > self.type_embedding.num_embeddings:
            raise ValueError(f"{k} token types per item exceed the {self.type_embedding.num_embeddings} type embeddings")
        positions = window_positions(self.position_embedding, length).view(1, length, 1, -1)
        tokens = tokens + self.type_embedding.weight[:k] + positions
        keep = (input_ids != B.PAD).view(b, length, 1, 1)
        return (self.dropout(tokens) * keep).reshape(b, length * k, -1)


@register_model("heterrec", family="seqrec")
class HeterRec(SideInformationMixin, SeqRecModule):
    def __init__(
        self,
        num_items: int,
        max_len: int = 50,
        embed_dim: int = 64,
        num_heads: int = 2,
        token_blocks: int = 2,
        item_blocks: int = 2,
        ffn_multiply: int = 2,
        dropout: float = 0.2,
        attention_dropout: float = 0.0,
        htfl: bool = True,
        hct: bool = True,
        within_item: str = "full",
        aggregation: str = "mean",
        lmp_steps: int = 3,
        lmp_weights: tuple[float, ...] = (1.0, 0.5, 0.25),
        lmp_step_heads: bool = True,
        candidate_features: bool = True,
        loss: str = "sampled_softmax",
        num_negatives: int = 128,
        shared_negatives: bool = False,
        temperature: float = 0.1,
        l2_norm: bool = True,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.98),
        filter_seen: bool = True,
        eval_ks: tuple[int, ...] = (10, 50),
    ):
        super().__init__(**base_arguments(SeqRecModule, locals()))
        self.save_hyperparameters()
        if within_item not in WITHIN_ITEM:
            raise ValueError(f"within_item must be one of {WITHIN_ITEM}, got {within_item!r}")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        if lmp_steps < 1 or len(lmp_weights) != lmp_steps:
            raise ValueError(f"lmp_weights needs one weight per step: {lmp_steps} steps, {len(lmp_weights)} weights")
        self.hct, self.within_item, self.aggregation = hct, within_item, aggregation
        self.lmp_weights = tuple(float(w) for w in lmp_weights)
        nn.init.trunc_normal_(self.item_embedding.weight, std=0.02)
        with torch.no_grad():
            self.item_embedding.weight[B.PAD].zero_()
        self.side = ItemSideInformation(num_items, embed_dim)
        self.side_candidates = candidate_features
        self.htfl = HeterogeneousTokenFlattening(self.item_embedding, self.side, max_len, embed_dim, dropout,
                                                 flatten=htfl)
        stack = lambda blocks: transformer_stack(embed_dim, blocks, num_heads, dropout, ffn_multiply,
                                                 attention_dropout)
        if hct:
            self.token_level = stack(token_blocks)
            self.item_position = nn.Embedding(max_len, embed_dim)
            nn.init.normal_(self.item_position.weight, std=0.02)
            self.item_level = stack(item_blocks)
        else:
            self.flat = stack(token_blocks + item_blocks)
        self.final_norm = nn.LayerNorm(embed_dim)
        self.step_heads = nn.ModuleList(nn.Linear(embed_dim, embed_dim) for _ in range(lmp_steps - 1)
                                        ) if lmp_step_heads else None
        for head in self.step_heads or ():
            nn.init.eye_(head.weight)
            nn.init.zeros_(head.bias)

    # ----- HTFL + HCT ----------------------------------------------------------------------------------------------
    def forward(self, input_ids, timestamps=None, next_timestamps=None) -> torch.Tensor:
        b, length = input_ids.shape
        tokens = self.htfl(input_ids)  # [B, L*K, d]
        k = tokens.shape[1] // length
        keep_items = (input_ids != B.PAD).unsqueeze(-1)
        keep_tokens = keep_items.repeat_interleave(k, dim=1)
        if not self.hct:
            out = self.flat(tokens, keep_tokens, flat_causal_mask(input_ids, k))
            return self.final_norm(out.view(b, length, k, -1)[:, :, -1]) * keep_items
        h = self.token_level(tokens, keep_tokens, hierarchical_token_mask(input_ids, k, self.within_item))
        h = h.view(b, length, k, -1)
        items = {"mean": lambda: h.mean(2), "id": lambda: h[:, :, 0], "last": lambda: h[:, :, -1]}[self.aggregation]()
        items = (items + window_positions(self.item_position, length)) * keep_items
        return self.final_norm(self.item_level(items, keep_items, causal_padding_mask(input_ids))) * keep_items

    # ----- LMP ---------------------------------------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.multi_step_loss(self.user_vectors(batch), batch) * batch.get(B.LOSS_SCALE, 1.0)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch[B.INPUT_IDS].shape[0])
        return loss

    def multi_step_loss(self, user: torch.Tensor, batch: dict) -> torch.Tensor:
        """sum_s w_s * (the family's loss of head_s(u_i) against item i+s), over positions that have item i+s."""
        targets = batch[B.TARGET_IDS]
        total = user.new_zeros(())
        items = self.item_vectors() if self.loss_name != "bce" else None  # one candidate table for all S steps
        for step, weight in enumerate(self.lmp_weights):  # S steps, a handful
            shifted = torch.full_like(targets, B.PAD)
            shifted[:, : targets.shape[1] - step] = targets[:, step:]  # item i+1+step, from the same window
            if not (shifted != B.PAD).any():
                continue
            u = user if step == 0 or self.step_heads is None else self.step_heads[step - 1](user)
            total = total + weight * self.sequence_loss(u, {**batch, B.TARGET_IDS: shifted}, items)
        return total

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict:
        return {
            "lr": trial.suggest_float("lr", 3e-4, 3e-3, log=True),
            "dropout": trial.suggest_float("dropout", 0.1, 0.5),
            "temperature": trial.suggest_float("temperature", 0.02, 0.2, log=True),
            "token_blocks": trial.suggest_categorical("token_blocks", [1, 2, 4]),
            "item_blocks": trial.suggest_categorical("item_blocks", [1, 2, 4]),
            "embed_dim": trial.suggest_categorical("embed_dim", [32, 64, 128]),
        }
