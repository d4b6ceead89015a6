"""DLCM: Learning a Deep Listwise Context Model for Ranking Refinement (Ai et al., SIGIR 2018).

  input abstraction   x'_i = elu(W_x x_i + b_x)                            (x_i: candidate features)
  list encoding       o_i, s_n = GRU(x'_n, ..., x'_1)                      the ranker's list fed bottom to top, so
                                                                          its top items shape the final state most
  local ranking       phi(o_i, s_n) = V_phi (o_i * tanh(W_phi s_n + b_phi))
  loss                AttRank: softmax cross-entropy between the scores and the attention over relevant items
                      (here the one held-out item).
Differences from the paper, named: candidate features are the item id, its genres, its group and the ranker's
score (no learning-to-rank feature vectors); `reverse_input=False` feeds the list top to bottom instead.
"""
from __future__ import annotations

import torch
from torch import nn

from contracts.batch import rerank as B
from contracts.registry import register_model
from lightning_modules.rerank.base import ListwiseReranker
from lightning_modules.rerank.layers import CandidateEncoder


@register_model("dlcm", family="rerank")
class DLCM(ListwiseReranker):
    def __init__(self, num_users: int, num_items: int, num_genres: int, num_candidates: int, history_len: int,
                 item_titles: list[str] | None = None, genre_names: list[str] | None = None,
                 group_names: list[str] | None = None, eval_k: int = 10, alpha: float = 0.5, hidden_dim: int = 64,
                 use_item_ids: bool = True, reverse_input: bool = True, lr: float = 1e-3, weight_decay: float = 0.0,
                 ranker_skip: bool = True):
        super().__init__(num_users, num_items, num_genres, num_candidates, history_len, item_titles, genre_names,
                         group_names, eval_k, alpha, lr, weight_decay, ranker_skip)
        self.save_hyperparameters()
        self.candidate = CandidateEncoder(num_items, num_genres, hidden_dim, use_item_ids)
        self.input_abstraction = nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.ELU())
        self.gru = nn.GRU(hidden_dim, hidden_dim, batch_first=True)
        self.W_phi = nn.Linear(hidden_dim, hidden_dim)
        self.V_phi = nn.Linear(hidden_dim, 1, bias=False)

    def score(self, batch: dict) -> torch.Tensor:
        x = self.candidate(batch[B.CANDIDATES], batch[B.GENRES], batch[B.GROUP], batch[B.SCORES])
        x = self.input_abstraction(x)
        if self.hparams.reverse_input:
            x = x.flip(1)
        o, s_n = self.gru(x)  # o [B, N, D] in input order, s_n [1, B, D]
        if self.hparams.reverse_input:
            o = o.flip(1)  # back to the ranker's positions
        return self.V_phi(o * torch.tanh(self.W_phi(s_n[-1])).unsqueeze(1)).squeeze(-1)

    @staticmethod
    def search_space(trial) -> dict:
        return {**ListwiseReranker.search_space(trial),
                "hidden_dim": trial.suggest_categorical("hidden_dim", [32, 64, 128])}
