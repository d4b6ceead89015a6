"""Pieces the learned rerankers share: what a candidate looks like to a network (its item id, its genres, and the
ranker's score standardised within the list) and the user's recent history pooled into one vector."""
from __future__ import annotations

import torch
from torch import nn

from contracts.batch import rerank as B


class CandidateEncoder(nn.Module):
    """x_i = E_item[i] (optional) + W_genre g_i + E_group[group_i] + w_score z_i, where z_i is the ranker's score
    standardised within the list (so a reranker sees how far apart the ranker put two candidates, not the score's
    scale) and group_i the item's group (the fairness attribute, e.g. release year before/after a split)."""

    def __init__(self, num_items: int, num_genres: int, dim: int, use_item_ids: bool = True):
        super().__init__()
        self.item = nn.Embedding(num_items + 1, dim, padding_idx=B.PAD) if use_item_ids else None
        self.genre = nn.Linear(num_genres, dim)
        self.group = nn.Embedding(2, dim)
        self.score = nn.Linear(1, dim, bias=False)

    def forward(self, candidates: torch.Tensor, genres: torch.Tensor, group: torch.Tensor,
                scores: torch.Tensor) -> torch.Tensor:
        z = (scores - scores.mean(-1, keepdim=True)) / scores.std(-1, keepdim=True).clamp_min(1e-6)
        x = self.genre(genres.float()) + self.group(group) + self.score(z.unsqueeze(-1))
        if self.item is not None:
            x = x + self.item(candidates)
        return x


class HistoryPooling(nn.Module):
    """The user's last H items (id embedding + genre projection), averaged over the non-padding ones: [B, D]."""

    def __init__(self, num_items: int, num_genres: int, dim: int, use_item_ids: bool = True):
        super().__init__()
        self.item = nn.Embedding(num_items + 1, dim, padding_idx=B.PAD) if use_item_ids else None
        self.genre = nn.Linear(num_genres, dim, bias=False)

    def forward(self, history: torch.Tensor, history_genres: torch.Tensor) -> torch.Tensor:
        mask = (history != B.PAD).float().unsqueeze(-1)
        h = self.genre(history_genres.float())
        if self.item is not None:
            h = h + self.item(history)
        return (h * mask).sum(1) / mask.sum(1).clamp_min(1.0)
