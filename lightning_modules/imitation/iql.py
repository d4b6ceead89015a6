"""IQL (Kostrikov, Nair & Levine 2022, "Offline Reinforcement Learning with Implicit Q-Learning"), the offline-RL
row: learned from the log alone, like PAIL, never touching the environment in training.

The log has no per-step reward, only each episode's SDG, so the reward is the episode's SDG (percent, times
`reward_scale`) at its last step and zero elsewhere, with gamma 1 by default (fixed 24-step episodes whose state
holds the time left). V(s) regresses on min(Q1, Q2)'(s, a) with the expectile loss (tau), Q_i(s, a) on
r + gamma V(s'), and the policy (the family's Gaussian policy) is extracted by advantage-weighted regression,
weights exp(beta (Q'(s, a) - V(s))) clipped at 100; the target Q's are Polyak averages (rate `polyak`). Each
mini-batch of episodes gives `updates_per_batch` gradient steps (the log is 336 episodes, so an epoch of single
steps would be 6 updates; IQL's own budget is 1e6)."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from contracts.batch import imitation as B
from contracts.registry import register_model
from lightning_modules.imitation.base import ImitationModule
from lightning_modules.imitation.layers import mlp, polyak_


def expectile_loss(diff: torch.Tensor, tau: float) -> torch.Tensor:
    """E[|tau - 1(diff < 0)| diff^2]: tau = 0.5 is half the squared error, tau -> 1 approaches the maximum."""
    weight = torch.where(diff < 0, 1 - tau, tau)
    return (weight * diff.pow(2)).mean()


@register_model("iql", family="imitation")
class IQL(ImitationModule):
    def __init__(self, state_dim: int, action_dim: int, horizon: int, window: int = 1, encoder: str = "mlp",
                 hidden_dim: int = 64, d_model: int = 32, num_heads: int = 2, num_layers: int = 2,
                 lr: float = 1e-3, critic_lr: float = 1e-3, expectile: float = 0.7, beta: float = 3.0,
                 gamma: float = 1.0, polyak: float = 0.01, reward_scale: float = 1.0, updates_per_batch: int = 20):
        super().__init__(state_dim, action_dim, horizon, window, encoder, hidden_dim, d_model, num_heads, num_layers,
                         lr)
        self.save_hyperparameters()
        self.q = nn.ModuleList(mlp([state_dim + action_dim, hidden_dim, hidden_dim, 1]) for _ in range(2))
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.v = mlp([state_dim, hidden_dim, hidden_dim, 1])

    @staticmethod
    def _q(nets: nn.ModuleList, s: torch.Tensor, a: torch.Tensor) -> list[torch.Tensor]:
        sa = torch.cat([s, a], -1)
        return [net(sa).squeeze(-1) for net in nets]

    def learn(self, item: dict) -> dict:
        hp, h = self.hparams, item[B.HISTORY]
        opt_pi, opt_q, opt_v = self.optimizers()
        S, A = h[B.STATES].to(self.device), h[B.ACTIONS].to(self.device)
        s, s_next = S[:, :-1], S[:, 1:]
        reward = torch.zeros(A.shape[:2], device=self.device)
        reward[:, -1] = h[B.SDG].to(self.device) * hp.reward_scale
        not_done = torch.ones_like(reward)
        not_done[:, -1] = 0
        tokens = self.windows(S, A)
        for _ in range(hp.updates_per_batch):
            with torch.no_grad():
                q_t = torch.minimum(*self._q(self.q_target, s, A))
            v_loss = expectile_loss(q_t - self.v(s).squeeze(-1), hp.expectile)
            self.step_optimizer(v_loss, opt_v, self.v.parameters(), max_grad_norm=10.0)
            with torch.no_grad():
                target = reward + hp.gamma * not_done * self.v(s_next).squeeze(-1)
            q_loss = sum(F.mse_loss(q, target) for q in self._q(self.q, s, A))
            self.step_optimizer(q_loss, opt_q, self.q.parameters(), max_grad_norm=10.0)
            with torch.no_grad():
                weight = (hp.beta * (q_t - self.v(s).squeeze(-1))).exp().clamp(max=100.0)
            pi_loss = -(weight * self.policy(tokens).log_prob(A).sum(-1)).mean()
            self.step_optimizer(pi_loss, opt_pi, self.policy.parameters())
            polyak_(self.q_target, self.q, hp.polyak)
        return {"v_loss": v_loss.detach(), "q_loss": q_loss.detach(), "policy_loss": pi_loss.detach(),
                "awr_weight": weight.mean()}

    def configure_optimizers(self):
        hp = self.hparams
        return [torch.optim.Adam(self.policy.parameters(), lr=hp.lr),
                torch.optim.Adam(self.q.parameters(), lr=hp.critic_lr),
                torch.optim.Adam(self.v.parameters(), lr=hp.critic_lr)]

    @staticmethod
    def search_space(trial) -> dict:
        return {"lr": trial.suggest_float("lr", 1e-4, 3e-3, log=True),
                "expectile": trial.suggest_categorical("expectile", [0.7, 0.8, 0.9]),
                "beta": trial.suggest_float("beta", 0.3, 10.0, log=True)}
