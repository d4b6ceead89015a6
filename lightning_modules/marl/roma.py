"""ROMA-style role embeddings: Wang et al. 2020, "ROMA: Multi-Agent Reinforcement Learning with Emergent Roles"
(ICML 2020), as a baseline that learns roles *without* a controller and without global information.

Each agent draws a stochastic role rho_i ~ N(mu(o_i), sigma(o_i)) (role encoder, ROMA Sec. 3.1) and a role decoder
(hypernetwork) generates the parameters of its local utility's last layer: Q_i = h(o_i) W(rho_i) + b(rho_i).
Two role losses regularise the roles (ROMA eq. 4 and eq. 7):
  identifiability  L_I = KL(p(rho_i | o_i) || q_xi(rho_i | o_i, a_{i,t-1}))   (+ the entropy term H(rho_i|o_i))
                   the variational posterior q_xi sees the agent's trajectory, here (o_i, previous action);
  specialisation   L_D = -mean_{i != j} min(KL_sym(p_i, p_j), U): roles of different agents are pushed apart up to U.
Trained with QMIX's mixer (ROMA uses QMIX). Defaults follow ROMA's configuration (role latent dim 3,
kl_loss_weight 1e-4, h_loss_weight 1e-4, dis_loss_weight 1e-3).
Simplifications (named, no flags): feed-forward agents instead of GRUs; the trajectory seen by q_xi is the current
observation and previous action; ROMA's learned dissimilarity model d_phi is replaced by the clipped symmetric KL.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from contracts.batch import marl as B
from contracts.registry import register_model
from lightning_modules.marl.base import mlp
from lightning_modules.marl.cord import LOGVAR_MIN, LOGVAR_MAX, gaussian_kl, sample_role
from lightning_modules.marl.qlearning import QLearningModule


class RoleDecodedAgent(nn.Module):
    """Q_i(o_i, ·) = h(o_i) W(rho_i) + b(rho_i) (ROMA's role decoder generating the utility's last layer)."""

    def __init__(self, obs_dim: int, hidden_dim: int, n_actions: int, role_dim: int):
        super().__init__()
        self.body = mlp([obs_dim, hidden_dim, hidden_dim], layer_norm_input=True)
        self.role_encoder = mlp([obs_dim, hidden_dim, 2 * role_dim], layer_norm_input=True)
        self.decoder_w = mlp([role_dim, hidden_dim, hidden_dim * n_actions])
        self.decoder_b = mlp([role_dim, hidden_dim, n_actions])
        self.hidden_dim, self.n_actions, self.role_dim = hidden_dim, n_actions, role_dim

    def role_distribution(self, obs):
        mu, logvar = self.role_encoder(obs).chunk(2, -1)
        return mu, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)

    def forward(self, obs: torch.Tensor, role: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.body(obs))
        w = self.decoder_w(role).view(*role.shape[:-1], self.hidden_dim, self.n_actions)
        return torch.einsum("...h,...ha->...a", h, w) + self.decoder_b(role)


@register_model("roma", family="marl")
class ROMA(QLearningModule):
    mixer_name = "qmix"

    def __init__(self, obs_dim: int, n_actions: int, num_agents: int, episode_limit: int, role_dim: int = 3,
                 kl_loss_weight: float = 1e-4, h_loss_weight: float = 1e-4, dis_loss_weight: float = 1e-3,
                 dis_clip: float = 1.0, hidden_dim: int = 64, lr: float = 5e-4, gamma: float = 0.99,
                 buffer_size: int = 5000, batch_size: int = 32, train_iters: int = 1, target_update_interval: int = 200,
                 epsilon_start: float = 1.0, epsilon_finish: float = 0.05, epsilon_anneal_steps: int = 50_000,
                 double_q: bool = True, grad_clip: float = 10.0, mixing_embed_dim: int = 32, hypernet_dim: int = 64):
        super().__init__(obs_dim, n_actions, num_agents, episode_limit, hidden_dim, lr, gamma, buffer_size, batch_size,
                         train_iters, target_update_interval, epsilon_start, epsilon_finish, epsilon_anneal_steps,
                         double_q, grad_clip, mixing_embed_dim, hypernet_dim)
        self.save_hyperparameters()
        self.agent = RoleDecodedAgent(obs_dim, hidden_dim, n_actions, role_dim)
        self.posterior = mlp([obs_dim + n_actions, hidden_dim, 2 * role_dim], layer_norm_input=True)  # q_xi

    def online_modules(self) -> nn.ModuleDict:
        return nn.ModuleDict({"agent": self.agent, "mixer": self.mixer})

    def act(self, obs, t, state, explore):
        mu, logvar = self.agent.role_distribution(obs)
        q = self.agent(obs, sample_role(mu, logvar, explore))
        return self.greedy_or_random(q, explore), {}, state

    def roles(self, batch: dict, nets: nn.ModuleDict, target: bool):
        obs = batch[B.OBS]
        mu, logvar = nets["agent"].role_distribution(obs)
        if target:
            return mu, {}
        prev = F.one_hot(batch[B.ACTIONS], self.n_actions).float()
        prev = torch.cat([torch.zeros_like(prev[:, :1]), prev], 1)  # [B, T+1, N, A]
        q_mu, q_logvar = self.posterior(torch.cat([obs, prev], -1)).chunk(2, -1)
        q_logvar = q_logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)
        identifiability = gaussian_kl(mu, logvar, q_mu, q_logvar).sum(-1).mean()
        entropy = (0.5 * (math.log(2 * math.pi * math.e) + logvar)).sum(-1).mean()
        pair = gaussian_kl(mu.unsqueeze(-2), logvar.unsqueeze(-2), mu.unsqueeze(-3), logvar.unsqueeze(-3)).mean(-1)
        sym = (pair + pair.transpose(-1, -2)).clamp(max=self.hparams.dis_clip)
        N = obs.shape[-2]
        off = ~torch.eye(N, dtype=torch.bool, device=obs.device)
        dissimilarity = sym[..., off].mean() if N > 1 else torch.zeros((), device=obs.device)
        hp = self.hparams
        loss = hp.kl_loss_weight * identifiability - hp.h_loss_weight * entropy - hp.dis_loss_weight * dissimilarity
        return sample_role(mu, logvar, True), {"_loss": loss, "identifiability": identifiability.detach(),
                                                "dissimilarity": dissimilarity.detach()}
