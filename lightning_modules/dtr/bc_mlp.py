"""Behaviour-cloning MLP: the plainest imitation baseline (not in SAFER's Table 1).
The flattened history window (vitals, previous meds, note embeddings, zeros on padded steps) and the
demographics go through a two-hidden-layer ReLU MLP to the 25 action logits, trained with cross-entropy.
`use_tables=False` (notes only) and `use_notes=False` (tables only) are the two sides of a board's leak check: a
notes-only model far above a tables-only one would mean the notes carry the label."""
from __future__ import annotations

import optuna
import torch
from torch import nn

from contracts.batch import dtr as B
from contracts.registry import register_model
from lightning_modules.dtr.base import DTRModule


@register_model("bc_mlp", family="dtr")
class BCMLP(DTRModule):
    def __init__(self, vitals_dim: int, meds_dim: int, notes_dim: int, demo_dim: int, history_len: int = 8,
                 num_actions: int = B.NUM_ACTIONS, mdp: str | None = None, hidden_dim: int = 256,
                 dropout: float = 0.2, use_notes: bool = True, train_on: str = "all", lr: float = 1e-3,
                 weight_decay: float = 0.0, topk: int = 3, use_tables: bool = True):
        super().__init__(vitals_dim, meds_dim, notes_dim, demo_dim, history_len, num_actions, mdp, use_notes,
                         train_on, lr, weight_decay, topk, use_tables=use_tables)
        self.save_hyperparameters()
        self.net = nn.Sequential(
            nn.Linear(history_len * (self.step_dim + 1) + (demo_dim if use_tables else 0), hidden_dim), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden_dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout))
        self.head = nn.Linear(hidden_dim, num_actions)

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict:
        return {"hidden_dim": trial.suggest_categorical("hidden_dim", [128, 256, 512]),
                "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
                "dropout": trial.suggest_float("dropout", 0.0, 0.5)}

    def forward(self, batch: dict) -> dict:
        steps = torch.cat([self.step_inputs(batch), batch[B.MASK].unsqueeze(-1).float()], -1)
        demo = [batch[B.DEMO]] if self.use_tables else []
        h = self.net(torch.cat([steps.flatten(1), *demo], -1))
        return {"h": h, "logits": self.head(h)}
