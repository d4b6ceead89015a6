"""SRL-RNN (Wang, Zhang, He, Zha, KDD 2018, "Supervised Reinforcement Learning with Recurrent Neural Network for
Dynamic Treatment Recommendation"), a SAFER Table 1 baseline.

The paper's pieces, in its order:
  - an LSTM summarises the patient's history into the state h_t (the process is partially observed);
  - actor mu_theta(h_t): the recommended treatment; critic Q_w(h_t, a): its value;
  - critic: off-policy TD with target networks (DDPG): y = r_t + gamma Q_w'(h_{t+1}, mu_theta'(h_{t+1})), loss
    (y - Q_w(h_t, a_t))^2 on the clinicians' action a_t; reward +-`terminal_reward` at the end of the stay
    (survival / death, the paper's +-15), 0 before;
  - actor: J(theta) = (1 - epsilon) [-Q_w(h_t, mu_theta(h_t))] + epsilon CE(mu_theta(h_t), a_t): the evaluation
    signal (RL) and the indicator signal (supervised imitation of the clinicians) weighted by epsilon;
  - soft target updates with rate `tau`.
Differences: the paper's actor is multi-label (sigmoid over drug classes); here a softmax over the 25 fluid x vaso
actions, with the action probabilities as the critic's action input (one-hot for the clinicians' actions). The
LSTM is shared by actor and critic and trained by the critic's TD loss and the actor's supervised term (the paper
does not say how the two heads share it). Trained with manual optimisation (two Adam optimisers), so Lightning's
strategies and precision apply to both updates.
"""
from __future__ import annotations

import copy

import optuna
import torch
import torch.nn.functional as F
from torch import nn

from contracts.batch import dtr as B
from contracts.registry import register_model
from lightning_modules.dtr.base import DTRModule


class HistoryEncoder(nn.Module):
    """LSTM over the per-step features; its state after the current step, with the demographics, is h_t."""

    def __init__(self, step_dim: int, demo_dim: int, hidden_dim: int):
        super().__init__()
        self.lstm = nn.LSTM(step_dim, hidden_dim, batch_first=True)
        self.out_dim = hidden_dim + demo_dim

    def forward(self, steps: torch.Tensor, demo: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(steps)
        return torch.cat([out[:, -1], demo], -1)


@register_model("srl_rnn", family="dtr")
class SRLRNN(DTRModule):
    def __init__(self, vitals_dim: int, meds_dim: int, notes_dim: int, demo_dim: int, history_len: int = 8,
                 num_actions: int = B.NUM_ACTIONS, mdp: str | None = None, hidden_dim: int = 128,
                 epsilon: float = 0.5, discount: float = 0.99, tau: float = 0.01, terminal_reward: float = 15.0,
                 critic_lr: float = 1e-3, use_notes: bool = True, train_on: str = "all", lr: float = 1e-3,
                 weight_decay: float = 0.0, topk: int = 3):
        super().__init__(vitals_dim, meds_dim, notes_dim, demo_dim, history_len, num_actions, mdp, use_notes,
                         train_on, lr, weight_decay, topk)
        self.save_hyperparameters()
        if not 0 <= epsilon <= 1:
            raise ValueError(f"epsilon weighs the supervised term and lies in [0, 1], got {epsilon}")
        self.automatic_optimization = False
        self.encoder = HistoryEncoder(self.step_dim, demo_dim, hidden_dim)
        d = self.encoder.out_dim
        self.actor = nn.Sequential(nn.Linear(d, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, num_actions))
        self.critic = nn.Sequential(nn.Linear(d + num_actions, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 1))
        self.target = nn.ModuleDict({"encoder": copy.deepcopy(self.encoder), "actor": copy.deepcopy(self.actor),
                                     "critic": copy.deepcopy(self.critic)}).requires_grad_(False)

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict:
        return {"epsilon": trial.suggest_float("epsilon", 0.05, 0.95),
                "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
                "hidden_dim": trial.suggest_categorical("hidden_dim", [64, 128, 256])}

    def _view(self, batch: dict, prefix: str = "") -> dict:
        return {B.VITALS: batch[prefix + B.VITALS], B.MEDS: batch[prefix + B.MEDS], B.NOTES: batch[prefix + B.NOTES],
                B.MASK: batch[prefix + B.MASK]}

    def forward(self, batch: dict) -> dict:
        h = self.encoder(self.step_inputs(batch), batch[B.DEMO])
        return {"h": h, "logits": self.actor(h)}

    def configure_optimizers(self):
        critic = list(self.encoder.parameters()) + list(self.critic.parameters())
        return (torch.optim.Adam(critic, lr=self.hparams.critic_lr, weight_decay=self.weight_decay),
                torch.optim.Adam(self.actor.parameters(), lr=self.lr, weight_decay=self.weight_decay))

    def training_step(self, batch: dict, batch_idx: int):
        rows = self.train_rows(batch)
        if not rows.any():
            return None
        batch = {k: v[rows] for k, v in batch.items()}
        critic_opt, actor_opt = self.optimizers()
        onehot = F.one_hot(batch[B.ACTION], self.num_actions).float()
        done, died = batch[B.DONE], batch[B.DIED]
        reward = self.hparams.terminal_reward * done * (1 - 2 * died)
        with torch.no_grad():
            next_h = self.target["encoder"](self.step_inputs(self._view(batch, B.NEXT)), batch[B.DEMO])
            next_mu = F.softmax(self.target["actor"](next_h), -1)
            y = reward + self.hparams.discount * (1 - done) * self.target["critic"](torch.cat([next_h, next_mu], -1)).squeeze(-1)
        # critic (and the shared LSTM): TD on the clinicians' action, plus the actor's supervised term through h
        h = self.encoder(self.step_inputs(batch), batch[B.DEMO])
        q_data = self.critic(torch.cat([h, onehot], -1)).squeeze(-1)
        td = F.mse_loss(q_data, y)
        supervised = F.cross_entropy(self.actor(h), batch[B.ACTION])
        critic_opt.zero_grad()
        actor_opt.zero_grad()
        self.manual_backward(td + self.hparams.epsilon * supervised)
        critic_opt.step()
        # actor: (1 - epsilon) * (-Q(h, mu(h))) + epsilon * CE, on the state the critic now scores
        h = h.detach()
        logits = self.actor(h)
        q_mu = self.critic(torch.cat([h, F.softmax(logits, -1)], -1)).squeeze(-1)
        actor_loss = (1 - self.hparams.epsilon) * (-q_mu.mean() / self.hparams.terminal_reward) + \
            self.hparams.epsilon * F.cross_entropy(logits, batch[B.ACTION])
        actor_opt.zero_grad()
        self.manual_backward(actor_loss)
        actor_opt.step()  # the critic's gradients from this loss are discarded (zeroed before its next step)
        self._soft_update()
        self.log_dict({"train/loss": actor_loss.detach(), "train/td": td.detach(), "train/q": q_mu.mean().detach()},
                      batch_size=int(rows.sum()))

    @torch.no_grad()
    def _soft_update(self) -> None:
        tau = self.hparams.tau
        for name, online in (("encoder", self.encoder), ("actor", self.actor), ("critic", self.critic)):
            for target, source in zip(self.target[name].parameters(), online.parameters()):
                target.lerp_(source, tau)
