"""Discrete Conservative Q-Learning (Kumar, Zhou, Tucker, Levine, NeurIPS 2020, "Conservative Q-Learning for
Offline Reinforcement Learning"): the offline-RL baseline (not in SAFER's Table 1; added as the issue asks).

CQL(H) for discrete actions (paper Eq. 4 with the log-sum-exp regulariser; as d3rlpy's DiscreteCQL):
  L = alpha * E_s[ logsumexp_a Q(s,a) - Q(s, a_data) ] + 1/2 E[(Q(s,a) - y)^2 or Huber],
  y = r + discount * (1 - done) * Q_target(s', argmax_a' Q(s', a'))   (double-DQN target, as d3rlpy),
with a hard target-network update every `target_update_interval` steps. States are the history windows
(vitals, previous meds, note embeddings, demographics) flattened into an MLP; the reward is ICU-Sepsis's:
+1 at the last step of a survivor, 0 otherwise. Recommendations rank the actions by Q (AUC on softmax Q)."""
from __future__ import annotations

import copy

import optuna
import torch
import torch.nn.functional as F
from torch import nn

from contracts.batch import dtr as B
from contracts.registry import register_model
from lightning_modules.dtr.base import DTRModule


@register_model("cql", family="dtr")
class DiscreteCQL(DTRModule):
    def __init__(self, vitals_dim: int, meds_dim: int, notes_dim: int, demo_dim: int, history_len: int = 8,
                 num_actions: int = B.NUM_ACTIONS, mdp: str | None = None, hidden_dim: int = 256,
                 alpha: float = 1.0, discount: float = 0.99, target_update_interval: int = 200,
                 huber: bool = True, use_notes: bool = True, train_on: str = "all", lr: float = 6.25e-5,
                 weight_decay: float = 0.0, topk: int = 3):
        super().__init__(vitals_dim, meds_dim, notes_dim, demo_dim, history_len, num_actions, mdp, use_notes,
                         train_on, lr, weight_decay, topk)
        self.save_hyperparameters()
        in_dim = history_len * (self.step_dim + 1) + demo_dim
        self.q_net = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, hidden_dim),
                                   nn.ReLU(), nn.Linear(hidden_dim, num_actions))
        self.q_target = copy.deepcopy(self.q_net).requires_grad_(False)

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict:
        return {"alpha": trial.suggest_float("alpha", 0.1, 10.0, log=True),
                "lr": trial.suggest_float("lr", 1e-5, 1e-3, log=True),
                "discount": trial.suggest_categorical("discount", [0.9, 0.99, 1.0])}

    def _state(self, batch: dict, prefix: str = "") -> torch.Tensor:
        view = {B.VITALS: batch[prefix + B.VITALS], B.MEDS: batch[prefix + B.MEDS], B.NOTES: batch[prefix + B.NOTES],
                B.MASK: batch[prefix + B.MASK]}
        steps = torch.cat([self.step_inputs(view), view[B.MASK].unsqueeze(-1).float()], -1)
        return torch.cat([steps.flatten(1), batch[B.DEMO]], -1)

    def forward(self, batch: dict) -> dict:
        return {"logits": self.q_net(self._state(batch))}

    def training_step(self, batch: dict, batch_idx: int):
        rows = self.train_rows(batch)
        if not rows.any():
            return None
        batch = {k: v[rows] for k, v in batch.items()}
        q = self.q_net(self._state(batch))
        q_data = q.gather(1, batch[B.ACTION][:, None]).squeeze(1)
        with torch.no_grad():
            next_state = self._state(batch, B.NEXT)
            next_action = self.q_net(next_state).argmax(-1, keepdim=True)
            next_q = self.q_target(next_state).gather(1, next_action).squeeze(1)
            y = batch[B.REWARD] + self.hparams.discount * (1 - batch[B.DONE]) * next_q
        td = F.smooth_l1_loss(q_data, y) if self.hparams.huber else 0.5 * F.mse_loss(q_data, y)
        conservative = (torch.logsumexp(q, dim=-1) - q_data).mean()
        loss = td + self.hparams.alpha * conservative
        self.log_dict({"train/loss": loss, "train/td": td, "train/conservative": conservative},
                      batch_size=int(rows.sum()), on_step=False, on_epoch=True)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.global_step % self.hparams.target_update_interval == 0:
            self.q_target.load_state_dict(self.q_net.state_dict())
