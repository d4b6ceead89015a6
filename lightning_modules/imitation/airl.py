"""AIRL (Fu, Luo & Levine 2018, "Learning Robust Rewards with Adversarial Inverse Reinforcement Learning"): the
discriminator has the form D(s, a, s') = exp f / (exp f + pi(a | s)) with f(s, a, s') = g(s, a) + gamma h(s') - h(s)
(a reward term and a shaping potential), so its logit is f - log pi(a | s). The policy is trained in the true
environment on r = log D - log(1 - D) = f - log pi with the family's clipped surrogate (the paper uses TRPO), on the
same expert set (the top `top_fraction` of the log by SDG) and with the same environment access as GAIL.
`state_only` makes g read the state alone (the paper's disentangled reward, for transfer; off by default since the
board tests imitation, not transfer)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from contracts.batch import imitation as B
from contracts.registry import register_model
from lightning_modules.imitation.base import ImitationModule
from lightning_modules.imitation.layers import mlp


class ShapedReward(nn.Module):
    """f(s, a, s') = g(s, a) + gamma h(s') - h(s), with h(s') = 0 after the last step."""

    def __init__(self, state_dim: int, action_dim: int, hidden_dim: int, gamma: float, state_only: bool):
        super().__init__()
        self.state_only, self.gamma = state_only, gamma
        self.g = mlp([state_dim + (0 if state_only else action_dim), hidden_dim, hidden_dim, 1])
        self.h = mlp([state_dim, hidden_dim, hidden_dim, 1])

    def forward(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """states [B, T+1, S], actions [B, T, A] -> f [B, T]."""
        s, s_next = states[:, :-1], states[:, 1:]
        g = self.g(s if self.state_only else torch.cat([s, actions], -1)).squeeze(-1)
        h, h_next = self.h(s).squeeze(-1), self.h(s_next).squeeze(-1)
        h_next = torch.cat([h_next[:, :-1], torch.zeros_like(h_next[:, -1:])], 1)  # terminal: no potential
        return g + self.gamma * h_next - h


@register_model("airl", family="imitation")
class AIRL(ImitationModule):
    needs_env_rollouts = True

    def __init__(self, state_dim: int, action_dim: int, horizon: int, top_fraction: float = 0.25,
                 state_only: bool = False, window: int = 1, encoder: str = "mlp", hidden_dim: int = 64,
                 d_model: int = 32, num_heads: int = 2, num_layers: int = 2, lr: float = 1e-3, disc_lr: float = 1e-3,
                 ppo_epochs: int = 4, clip: float = 0.2, gamma: float = 1.0, entropy_coef: float = 0.0):
        super().__init__(state_dim, action_dim, horizon, window, encoder, hidden_dim, d_model, num_heads, num_layers,
                         lr)
        self.save_hyperparameters()
        self.reward_net = ShapedReward(state_dim, action_dim, hidden_dim, gamma, state_only)

    def disc_logits(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """log D - log(1 - D) = f(s, a, s') - log pi(a | s) at every step [B, T] (pi held fixed)."""
        with torch.no_grad():
            logp = self.log_likelihood(states, actions)
        return self.reward_net(states, actions) - logp

    def learn(self, item: dict) -> dict:
        hp, h, ro = self.hparams, item[B.HISTORY], item[B.ROLLOUT]
        opt_pi, opt_d = self.optimizers()
        rows = self.expert_rows(h, hp.top_fraction)
        expert_s, expert_a = h[B.STATES][rows].to(self.device), h[B.ACTIONS][rows].to(self.device)
        states, actions = ro[B.STATES].to(self.device), ro[B.ACTIONS].to(self.device)
        e, g = self.disc_logits(expert_s, expert_a), self.disc_logits(states, actions)
        d_loss = F.binary_cross_entropy_with_logits(e, torch.ones_like(e)) + \
            F.binary_cross_entropy_with_logits(g, torch.zeros_like(g))
        self.step_optimizer(d_loss, opt_d, self.reward_net.parameters())
        with torch.no_grad():
            reward = self.disc_logits(states, actions)
        logs = self.ppo_update(self.windows(states, actions), actions, ro[B.LOGP].to(self.device),
                               self.reward_advantage(reward, hp.gamma), opt_pi, hp.ppo_epochs, hp.clip,
                               hp.entropy_coef)
        return {**logs, "disc_loss": d_loss.detach(), "reward": reward.mean(), "env_sdg": ro[B.SDG].mean()}

    def configure_optimizers(self):
        return [torch.optim.Adam(self.policy.parameters(), lr=self.hparams.lr),
                torch.optim.Adam(self.reward_net.parameters(), lr=self.hparams.disc_lr)]

    @staticmethod
    def search_space(trial) -> dict:
        return {"lr": trial.suggest_float("lr", 1e-4, 3e-3, log=True),
                "disc_lr": trial.suggest_float("disc_lr", 1e-4, 3e-3, log=True)}
