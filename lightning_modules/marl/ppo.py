"""Independent PPO and MAPPO with parameter-shared agents.

- IPPO: de Witt et al. 2020, "Is Independent Learning All You Need in the StarCraft Multi-Agent Challenge?"
  Each agent's critic V(o_i) sees only its own observation.
- MAPPO: Yu et al. 2022, "The Surprising Effectiveness of PPO in Cooperative Multi-Agent Games" (NeurIPS D&B).
  A centralised critic V(s, o_i) on the global state (all agents' observations) plus the agent's own
  ("agent-specific global state", their Sec. 4.2); the actor is the same as IPPO's.
Both: clipped surrogate (PPO eq. 7) with GAE(lambda) (Schulman et al. 2016), entropy bonus, clipped value loss,
gradient-norm clipping, Adam with eps 1e-5, layer-normalised inputs, value normalisation (MAPPO's `ValueNorm`,
their Sec. 4.1 "value normalization": the critic predicts returns standardised by running statistics, so the
value clip of 0.2 is in units of return standard deviations); defaults from MAPPO's MPE configuration
(lr 7e-4, 10 PPO epochs, 1 mini-batch, clip 0.2, gamma 0.99, lambda 0.95, entropy 0.01, hidden 64).
Differences from the official MAPPO code: no recurrent policy (MPE runs use feed-forward in their Table 13 too),
squared instead of Huber value error (delta 10, equal on standardised returns), the running statistics are updated
once per rollout (the official code updates them at every mini-batch of every epoch on the same returns),
the team reward is shared by all agents. `use_value_norm=False` gives the raw-return critic.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Categorical

from contracts.batch import marl as B
from contracts.registry import register_model
from lightning_modules.marl.base import MARLModule, mlp


def gae(rewards: torch.Tensor, values: torch.Tensor, terminated: torch.Tensor, gamma: float, lam: float):
    """Generalised advantage estimation over time (dim 1). rewards [E,T,...], values [E,T+1,...] (the last one
    bootstraps the time-limit truncation), terminated [E,T,...] (1 stops the bootstrap). Returns (adv, returns)."""
    T = rewards.shape[1]
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(T)):  # T = episode length (25): the recursion is over time only, batched otherwise
        nonterminal = 1.0 - terminated[:, t]
        delta = rewards[:, t] + gamma * values[:, t + 1] * nonterminal - values[:, t]
        last = delta + gamma * lam * nonterminal * last
        adv[:, t] = last
    return adv, adv + values[:, :T]


class ValueNorm(nn.Module):
    """Running mean / variance of the value targets (MAPPO `onpolicy/utils/valuenorm.py`: exponential moving
    averages with beta 0.99999 and a debiasing term, variance floored at 1e-2). Buffers, so checkpoints keep them."""

    def __init__(self, beta: float = 0.99999, epsilon: float = 1e-5):
        super().__init__()
        self.beta, self.epsilon = beta, epsilon
        self.register_buffer("running_mean", torch.zeros((), dtype=torch.float64))
        self.register_buffer("running_mean_sq", torch.zeros((), dtype=torch.float64))
        self.register_buffer("debiasing_term", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        x = x.detach().double()
        self.running_mean.mul_(self.beta).add_(x.mean() * (1 - self.beta))
        self.running_mean_sq.mul_(self.beta).add_((x ** 2).mean() * (1 - self.beta))
        self.debiasing_term.mul_(self.beta).add_(1 - self.beta)

    def mean_std(self) -> tuple[torch.Tensor, torch.Tensor]:
        debias = self.debiasing_term.clamp(min=self.epsilon)
        mean, mean_sq = self.running_mean / debias, self.running_mean_sq / debias
        return mean.float(), (mean_sq - mean ** 2).clamp(min=1e-2).sqrt().float()

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self.mean_std()
        return (x - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self.mean_std()
        return x * std + mean


class PPOModule(MARLModule):
    centralised_critic = False

    def __init__(self, obs_dim: int, n_actions: int, num_agents: int, episode_limit: int, hidden_dim: int = 64,
                 lr: float = 7e-4, gamma: float = 0.99, gae_lambda: float = 0.95, clip: float = 0.2,
                 ppo_epochs: int = 10, num_minibatches: int = 1, entropy_coef: float = 0.01, value_coef: float = 1.0,
                 max_grad_norm: float = 10.0, use_value_norm: bool = True):
        super().__init__(obs_dim, n_actions, num_agents, episode_limit, gamma)
        self.save_hyperparameters()
        self.actor = mlp([obs_dim, hidden_dim, hidden_dim, n_actions], layer_norm_input=True)
        critic_in = obs_dim * (num_agents + 1) if self.centralised_critic else obs_dim
        self.critic = mlp([critic_in, hidden_dim, hidden_dim, 1], layer_norm_input=True)
        self.value_norm = ValueNorm() if use_value_norm else None

    def act(self, obs, t, state, explore):
        dist = Categorical(logits=self.actor(obs))
        actions = dist.sample() if explore else dist.probs.argmax(-1)
        return actions, {"logp": dist.log_prob(actions)}, state

    def critic_input(self, obs: torch.Tensor) -> torch.Tensor:
        """[..., N, D] -> [..., N, D'] what the critic reads: o_i (IPPO) or [s, o_i] with s = all observations (MAPPO)."""
        if not self.centralised_critic:
            return obs
        state = obs.flatten(-2).unsqueeze(-2).expand(*obs.shape[:-1], obs.shape[-2] * obs.shape[-1])
        return torch.cat([state, obs], -1)

    def learn(self, rollout: dict) -> dict:
        hp = self.hparams
        obs, actions = rollout[B.OBS].to(self.device), rollout[B.ACTIONS].to(self.device)
        old_logp = rollout["logp"].to(self.device)
        E, T1, N, _ = obs.shape
        reward = rollout[B.REWARD].to(self.device).unsqueeze(-1).expand(E, T1 - 1, N)
        term = rollout[B.TERMINATED].to(self.device).unsqueeze(-1).expand(E, T1 - 1, N)
        critic_obs = self.critic_input(obs)
        with torch.no_grad():
            old_values = self.critic(critic_obs).squeeze(-1)  # [E, T+1, N], in the critic's (normalised) units
            values = self.value_norm.denormalize(old_values) if self.value_norm is not None else old_values
            adv, returns = gae(reward, values, term, self.gamma, hp.gae_lambda)
            if self.value_norm is not None:
                self.value_norm.update(returns)
                returns = self.value_norm.normalize(returns)  # the critic's target, in its units
            old_values = old_values[:, :-1]
        flat = lambda x: x.reshape(E * (T1 - 1) * N, *x.shape[3:])  # noqa: E731
        obs_f, cobs_f = flat(obs[:, :-1]), flat(critic_obs[:, :-1])
        act_f, old_logp_f, adv_f, ret_f, oldv_f = flat(actions), flat(old_logp), flat(adv), flat(returns), flat(old_values)
        adv_f = (adv_f - adv_f.mean()) / (adv_f.std() + 1e-8)
        opt = self.optimizers()
        n = obs_f.shape[0]
        logs = {}
        for _ in range(hp.ppo_epochs):
            perm = torch.randperm(n, device=self.device)
            for idx in perm.chunk(hp.num_minibatches):
                dist = Categorical(logits=self.actor(obs_f[idx]))
                logp = dist.log_prob(act_f[idx])
                ratio = (logp - old_logp_f[idx]).exp()
                surrogate = torch.min(ratio * adv_f[idx], ratio.clamp(1 - hp.clip, 1 + hp.clip) * adv_f[idx])
                value = self.critic(cobs_f[idx]).squeeze(-1)
                value_clipped = oldv_f[idx] + (value - oldv_f[idx]).clamp(-hp.clip, hp.clip)
                value_loss = torch.max((value - ret_f[idx]) ** 2, (value_clipped - ret_f[idx]) ** 2).mean()
                entropy = dist.entropy().mean()
                policy_loss = -surrogate.mean()
                loss = policy_loss + hp.value_coef * value_loss - hp.entropy_coef * entropy
                self.step_optimizer(loss, opt, self.parameters(), hp.max_grad_norm)
        logs.update(policy_loss=policy_loss.detach(), value_loss=value_loss.detach(), entropy=entropy.detach())
        return logs

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, eps=1e-5)

    @staticmethod
    def search_space(trial) -> dict:
        return {"lr": trial.suggest_float("lr", 1e-4, 1e-3, log=True),
                "ppo_epochs": trial.suggest_categorical("ppo_epochs", [5, 10, 15]),
                "entropy_coef": trial.suggest_float("entropy_coef", 1e-3, 5e-2, log=True),
                "hidden_dim": trial.suggest_categorical("hidden_dim", [64, 128])}


@register_model("ippo", family="marl")
class IPPO(PPOModule):
    """Independent PPO (de Witt et al. 2020): shared actor pi(a|o_i), decentralised critic V(o_i)."""

    centralised_critic = False


@register_model("mappo", family="marl")
class MAPPO(PPOModule):
    """MAPPO (Yu et al. 2022): shared actor pi(a|o_i), centralised critic V(s, o_i)."""

    centralised_critic = True
