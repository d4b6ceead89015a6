"""RETAIN (Choi et al., NeurIPS 2016, "RETAIN: An Interpretable Predictive Model for Healthcare using Reverse
Time Attention Mechanism"), a SAFER Table 1 baseline.

Eq. numbers of the paper: visit embedding v_i = W_emb x_i (Step 1); two RNNs run in reverse time order,
g = RNN_alpha, h = RNN_beta (Step 2-3); visit-level attention alpha = softmax(w_alpha^T g_i + b_alpha) over
the visits; variable-level attention beta_i = tanh(W_beta h_i + b_beta); context c = sum_i alpha_i beta_i (.) v_i
(Step 4); prediction y = softmax(W c + b) (Step 5). Here a "visit" is a 4-hour step; the demographics join the
context before the output layer; padded steps are excluded from the softmax over visits."""
from __future__ import annotations

import optuna
import torch
from torch import nn

from contracts.batch import dtr as B
from contracts.registry import register_model
from lightning_modules.dtr.base import DTRModule


@register_model("retain", family="dtr")
class RETAIN(DTRModule):
    def __init__(self, vitals_dim: int, meds_dim: int, notes_dim: int, demo_dim: int, history_len: int = 8,
                 num_actions: int = B.NUM_ACTIONS, mdp: str | None = None, embed_dim: int = 128,
                 hidden_dim: int = 128, dropout: float = 0.2, use_notes: bool = True, train_on: str = "all",
                 lr: float = 1e-3, weight_decay: float = 0.0, topk: int = 3):
        super().__init__(vitals_dim, meds_dim, notes_dim, demo_dim, history_len, num_actions, mdp, use_notes,
                         train_on, lr, weight_decay, topk)
        self.save_hyperparameters()
        self.embedding = nn.Linear(self.step_dim, embed_dim, bias=False)  # W_emb
        self.rnn_alpha = nn.GRU(embed_dim, hidden_dim, batch_first=True)
        self.rnn_beta = nn.GRU(embed_dim, hidden_dim, batch_first=True)
        self.w_alpha = nn.Linear(hidden_dim, 1)
        self.w_beta = nn.Linear(hidden_dim, embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(embed_dim + demo_dim, num_actions)

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict:
        return {"embed_dim": trial.suggest_categorical("embed_dim", [64, 128, 256]),
                "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
                "dropout": trial.suggest_float("dropout", 0.0, 0.5)}

    def forward(self, batch: dict) -> dict:
        mask = batch[B.MASK]
        v = self.dropout(self.embedding(self.step_inputs(batch)))  # [B, L, m]
        reverse = torch.flip(v, dims=[1])  # reverse time: the most recent visit first
        g, _ = self.rnn_alpha(reverse)
        h, _ = self.rnn_beta(reverse)
        g, h = torch.flip(g, dims=[1]), torch.flip(h, dims=[1])  # back to time order
        e = self.w_alpha(g).squeeze(-1).masked_fill(~mask, float("-inf"))
        alpha = torch.softmax(e, dim=1)  # visit-level attention
        beta = torch.tanh(self.w_beta(h))  # variable-level attention
        context = (alpha.unsqueeze(-1) * beta * v).sum(1)
        out = torch.cat([self.dropout(context), batch[B.DEMO]], -1)
        return {"h": context, "logits": self.output(out), "alpha": alpha}
