"""MLLM-MSR, offline: multimodal-LLM-enhanced sequential recommendation (Ye et al., AAAI 2025, arXiv 2408.09698)
with the offline text encoder in place of the multimodal LLM.

The paper's three stages, and what stands in for each here:
1. Item summariser (Sec. 3.2): an MLLM turns each item's image and title into a text summary. Here an item is its
   frozen text vector (all-MiniLM-L6-v2 of its title/attributes; no images offline), projected: `TextItemEncoder`.
2. Recurrent user-preference summariser (Sec. 3.3): an LLM reads the history in blocks of 3 items, each prompt
   holding the block and the previous summary, and writes the new summary. Here `RecurrentPreferenceInference`
   visits the same blocks in the same order, oldest first (the last block partial), and updates a preference
   state from the block's pooled items and the previous state (a GRU cell): the recurrence of the text summary,
   on vectors. `recurrent=False` is the paper's MLLM-MSR_R ablation ("direct"): one update from the whole
   history at once, as one prompt over every item.
3. Recommender SFT (Sec. 3.4, Eq. 2): a LoRA-tuned MLLM answers yes/no for (user summary, candidate). Here
   `PreferenceMatcher`, an MLP over [u, v, u * v], gives the "yes" logit, trained with BCE on 1 positive +
   negatives as in the base (the paper's pos:neg 1:1).

The LLM pipeline itself (prompts, caching, LoRA via peft) is `lightning_modules.mllmrec.pipeline`.
Differences from the paper, each a flag: `block_size` (3 as in the official code), `recurrent`, `item_ids`
(False: items are their text alone, as the paper's recommender sees them), `pooling` of a block ("mean" of its
items, or "attention" with the previous state as query).
"""
from __future__ import annotations

import optuna
import torch
from torch import nn

from contracts.batch import mllmrec as B
from contracts.registry import register_model
from lightning_modules.base_arguments import base_arguments
from lightning_modules.mllmrec.base import DEFAULT_KS, CandidateRecModule, TextItemEncoder

POOLINGS = ("mean", "attention")


def right_aligned_blocks(items: torch.Tensor, mask: torch.Tensor, block_size: int):
    """Left-padded [B, H, d] items and [B, H] mask -> blocks [B, K, block, d] and their masks [B, K, block], block k
    holding each user's items k*block .. k*block + block - 1 counted from their oldest item (the paper's chunks:
    the last block of a user may be partial; blocks past a user's history are empty)."""
    b, h, d = items.shape
    lengths = mask.sum(1)
    k = -(-h // block_size)
    # position j of the user's own sequence sits at column (h - length) + j of the left-padded row
    j = torch.arange(k * block_size, device=items.device)
    column = (h - lengths).unsqueeze(1) + j.unsqueeze(0)
    valid = j.unsqueeze(0) < lengths.unsqueeze(1)
    gathered = items.gather(1, column.clamp(max=h - 1).unsqueeze(-1).expand(-1, -1, d))
    gathered = gathered * valid.unsqueeze(-1)
    return gathered.view(b, k, block_size, d), valid.view(b, k, block_size)


class RecurrentPreferenceInference(nn.Module):
    """Sec. 3.3: preference_k = update(block_k, preference_{k-1}) over blocks of `block_size` items, oldest first;
    an empty block leaves the preference as it is. With `recurrent=False`, one update from all items at once."""

    def __init__(self, dim: int, block_size: int = 3, recurrent: bool = True, pooling: str = "mean"):
        super().__init__()
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.block_size, self.recurrent, self.pooling = block_size, recurrent, pooling
        self.update = nn.GRUCell(dim, dim)
        self.query = nn.Linear(dim, dim) if pooling == "attention" else None
        self.start = nn.Parameter(torch.zeros(dim))
        self.norm = nn.LayerNorm(dim)

    def pool(self, block: torch.Tensor, mask: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """[B, n, d] items with [B, n] mask -> [B, d]."""
        if self.query is None:
            return (block * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        logits = torch.einsum("bnd,bd->bn", block, self.query(state)) / block.shape[-1] ** 0.5
        weights = torch.softmax(logits.masked_fill(~mask, -1e9), dim=1) * mask
        return torch.einsum("bn,bnd->bd", weights, block)

    def forward(self, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        state = self.start.expand(items.shape[0], -1)
        if not self.recurrent:
            return self.norm(self.update(self.pool(items, mask, state), state))
        blocks, block_mask = right_aligned_blocks(items, mask, self.block_size)
        for k in range(blocks.shape[1]):  # the blocks in order: the recurrence itself (K = H / 3 steps)
            present = block_mask[:, k].any(1, keepdim=True)
            updated = self.update(self.pool(blocks[:, k], block_mask[:, k], state), state)
            state = torch.where(present, updated, state)
        return self.norm(state)


class PreferenceMatcher(nn.Module):
    """Sec. 3.4's yes/no answer for (preference u, candidate v): an MLP over [u, v, u * v] -> the "yes" logit."""

    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3 * dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1))

    def forward(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        u = u.unsqueeze(1).expand_as(v)
        return self.net(torch.cat([u, v, u * v], dim=-1)).squeeze(-1)


@register_model("mllm_msr", family="mllmrec")
class MLLMMSR(CandidateRecModule):
    def __init__(
        self,
        num_items: int,
        max_history: int = 10,
        text_dim: int = 384,
        embed_dim: int = 64,
        block_size: int = 3,
        recurrent: bool = True,
        pooling: str = "mean",
        item_ids: bool = False,
        hidden_dim: int = 128,
        dropout: float = 0.1,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        eval_ks: tuple[int, ...] = DEFAULT_KS,
    ):
        super().__init__(**base_arguments(CandidateRecModule, locals()))
        self.save_hyperparameters()
        if text_dim < 1:
            raise ValueError("mllm_msr reads item text vectors: its datamodule must give text_dim >= 1")
        self.items = TextItemEncoder(text_dim, embed_dim, num_items, item_ids)
        self.dropout = nn.Dropout(dropout)
        self.preference = RecurrentPreferenceInference(embed_dim, block_size, recurrent, pooling)
        self.matcher = PreferenceMatcher(embed_dim, hidden_dim, dropout)

    def user_preference(self, history: torch.Tensor) -> torch.Tensor:
        return self.preference(self.dropout(self.items(self.item_text, history)), history != B.PAD)

    def score(self, batch):
        u = self.user_preference(batch[B.HISTORY])
        return self.matcher(u, self.items(self.item_text, batch[B.CANDIDATES]))

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict:
        return {
            "lr": trial.suggest_float("lr", 3e-4, 3e-3, log=True),
            "embed_dim": trial.suggest_categorical("embed_dim", [32, 64, 128]),
            "dropout": trial.suggest_float("dropout", 0.0, 0.4),
            "block_size": trial.suggest_categorical("block_size", [2, 3, 5]),
        }
