"""PRM: Personalized Re-ranking for Recommendation (Pei et al., RecSys 2019).

The initial list is encoded as a whole with self-attention so that each item's score depends on the others:
  input layer     E_i = W_in [x_i ; PV_u] + PE_i       x_i: candidate features, PV_u: personalised vector,
                                                       PE_i: learned embedding of the item's position in the
                                                       ranker's list
  encoding layer  num_blocks x (multi-head self-attention + position-wise FFN, residual + layer norm)
  output layer    score_i = w_out^T h_i, softmax over the list, trained listwise on the clicked (held-out) item.
Differences from the paper, named: PV_u is learned jointly from the user's last H items (`HistoryPooling`) rather
than taken from a pre-trained CTR model's hidden layer; the sizes below are ours (the notes give none);
`use_position` switches PE off.
"""
from __future__ import annotations

import torch
from torch import nn

from contracts.batch import rerank as B
from contracts.registry import register_model
from lightning_modules.rerank.base import ListwiseReranker
from lightning_modules.rerank.layers import CandidateEncoder, HistoryPooling


@register_model("prm", family="rerank")
class PRM(ListwiseReranker):
    def __init__(self, num_users: int, num_items: int, num_genres: int, num_candidates: int, history_len: int,
                 item_titles: list[str] | None = None, genre_names: list[str] | None = None,
                 group_names: list[str] | None = None, eval_k: int = 10, alpha: float = 0.5, d_model: int = 64,
                 num_blocks: int = 2, num_heads: int = 4, dropout: float = 0.1, use_item_ids: bool = True,
                 use_position: bool = True, personalised: bool = True, lr: float = 1e-3, weight_decay: float = 0.0,
                 ranker_skip: bool = True):
        super().__init__(num_users, num_items, num_genres, num_candidates, history_len, item_titles, genre_names,
                         group_names, eval_k, alpha, lr, weight_decay, ranker_skip)
        self.save_hyperparameters()
        self.candidate = CandidateEncoder(num_items, num_genres, d_model, use_item_ids)
        self.personalised_vector = (HistoryPooling(num_items, num_genres, d_model, use_item_ids) if personalised
                                    else None)
        self.input_layer = nn.Linear(2 * d_model if personalised else d_model, d_model)
        self.position = nn.Embedding(num_candidates, d_model) if use_position else None
        block = nn.TransformerEncoderLayer(d_model, num_heads, dim_feedforward=2 * d_model, dropout=dropout,
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(block, num_blocks, enable_nested_tensor=False)
        self.output_layer = nn.Linear(d_model, 1)

    def score(self, batch: dict) -> torch.Tensor:
        x = self.candidate(batch[B.CANDIDATES], batch[B.GENRES], batch[B.GROUP], batch[B.SCORES])  # [B, N, D]
        if self.personalised_vector is not None:
            pv = self.personalised_vector(batch[B.HISTORY], batch[B.HISTORY_GENRES])
            x = torch.cat([x, pv.unsqueeze(1).expand_as(x)], -1)
        e = self.input_layer(x)
        if self.position is not None:
            e = e + self.position.weight[: e.shape[1]]
        return self.output_layer(self.encoder(e)).squeeze(-1)

    @staticmethod
    def search_space(trial) -> dict:
        return {**ListwiseReranker.search_space(trial),
                "d_model": trial.suggest_categorical("d_model", [32, 64]),
                "num_blocks": trial.suggest_int("num_blocks", 1, 3),
                "dropout": trial.suggest_float("dropout", 0.0, 0.3)}
