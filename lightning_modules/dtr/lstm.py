"""LSTM baseline (Hochreiter & Schmidhuber 1997), as in SAFER's Table 1: an LSTM over the per-step features
(vitals, previous meds and, as the paper does for baselines without native text support, the note embedding),
its last hidden state concatenated with the demographics, then a linear layer to the 25 actions."""
from __future__ import annotations

import optuna
import torch
from torch import nn

from contracts.batch import dtr as B
from contracts.registry import register_model
from lightning_modules.dtr.base import DTRModule


@register_model("lstm", family="dtr")
class LSTMRecommender(DTRModule):
    def __init__(self, vitals_dim: int, meds_dim: int, notes_dim: int, demo_dim: int, history_len: int = 8,
                 num_actions: int = B.NUM_ACTIONS, mdp: str | None = None, hidden_dim: int = 128,
                 num_layers: int = 1, dropout: float = 0.2, use_notes: bool = True, train_on: str = "all",
                 lr: float = 1e-3, weight_decay: float = 0.0, topk: int = 3):
        super().__init__(vitals_dim, meds_dim, notes_dim, demo_dim, history_len, num_actions, mdp, use_notes,
                         train_on, lr, weight_decay, topk)
        self.save_hyperparameters()
        self.lstm = nn.LSTM(self.step_dim, hidden_dim, num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_dim + demo_dim, num_actions))

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict:
        return {"hidden_dim": trial.suggest_categorical("hidden_dim", [64, 128, 256]),
                "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
                "dropout": trial.suggest_float("dropout", 0.0, 0.5)}

    def forward(self, batch: dict) -> dict:
        # Left padding with zero inputs: the state after the last (current) step is the summary.
        out, _ = self.lstm(self.step_inputs(batch))
        h = out[:, -1]
        return {"h": h, "logits": self.head(torch.cat([h, batch[B.DEMO]], -1))}
