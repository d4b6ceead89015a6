"""CORD: "Generalizable Cooperation via Role Diversity" (Matsuyama, Su, Wang, Ye, Lu; arXiv 2501.02221).

Hierarchy (paper Sec. 3-4; details from the first author's precursor code COID, `src/modules/agents/coid.py`):
  - a high-level **role controller** (COID's "coach") reads the global state every `role_interval` (k = 4) steps
    and assigns each agent a continuous role z_i ~ N(mu_i, diag sigma_i^2) (log-variance clamped to [-10, 0],
    reparameterised); roles are held fixed between decision points;
  - **role-conditioned low-level agents** with shared parameters act on (o_i, z_i): z_i is added to the agent's
    hidden vector before its Q head; the agents are trained with QMIX (double Q) end to end through the roles.
Controller encoder (COID `Coach.encode`): entity encoder -> multi-head self-attention over all agents -> a_i;
influence embeddings iota_j = Linear([e_j, emb(prev action_j), prev role_j]); agent i cross-attends from a_i over
{iota_j, j != i} -> c_i; the role head reads [a_i, c_i]. A counterfactual branch replaces the other agents'
iota_j by a fixed random placeholder (drawn at init, never trained): q_i = N(mu~_i, sigma~_i^2) is agent i's role
without the other agents' information.

The objective "maximise role entropy subject to a causal constraint" decomposes into (COID `Coach.calcu_loss`):
  causal influence   I = tanh(lambda_inf * mean KL(p_i || q_i)),                lambda_inf = 1e-3   (`causal_influence`)
  heterogeneity      D = det(S), S_ij = exp(-[KL(p_i||p_j) + KL(p_j||p_i)]) (dim-averaged), S_ii = 1 (`role_heterogeneity`)
  role entropy       H = mean sum_dims clamp(entropy(p_i), 0, 10)                                   (`role_entropy`)
`objective`:
  "loss"   (COID code, default): L = L_TD - influence_weight*I - heterogeneity_weight*D - entropy_weight*H at the
           decision points (COID: vi_lambda = 0.0025 for I and D, entropy_lambda/10 = 1e-5), KLs averaged over the
           batch as in COID;
  "reward" (the paper's text, via summaries: r = r_env + alpha r_c + beta r_d): r_c = I and r_d = D computed per
           team at each decision point from the acting controller are added to the team reward in the TD target
           (alpha = influence_weight, beta = heterogeneity_weight); the entropy term stays a loss.
Registered variants: `cord_reward` (objective="reward"); ablations: `cord_no_rc` (influence_weight 0), `cord_no_rd` (heterogeneity_weight 0),
`cord_flat` (hierarchy=False: roles come from each agent's own observation at every step, no global state and
no other agents' information, so I = 0 identically).
Differences from COID, with flags: QMIX's standard hypernetwork mixer instead of COID's attention mixer
(no flag); feed-forward MLP agents on the canonical observation instead of entity attention (no flag); the
counterfactual placeholder is one fixed vector repeated (COID draws n_agents-1, fixed; one vector lets teams of any
size be evaluated); target roles use the target controller's mean; roles have `role_dim` = hidden width (COID 128).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from contracts.batch import marl as B
from contracts.registry import register_model, register_model_variant
from lightning_modules.marl.qlearning import QLearningModule

OBJECTIVES = ("loss", "reward")
LOGVAR_MIN, LOGVAR_MAX = -10.0, 0.0


# ----- the three terms, as plain functions (tests check them against hand-computed values) --------------------------
def gaussian_kl(mu_p, logvar_p, mu_q, logvar_q) -> torch.Tensor:
    """Elementwise KL(N(mu_p, e^logvar_p) || N(mu_q, e^logvar_q)) of diagonal Gaussians."""
    return 0.5 * (logvar_q - logvar_p + (logvar_p.exp() + (mu_p - mu_q) ** 2) / logvar_q.exp() - 1.0)


def causal_influence(mu, logvar, mu_cf, logvar_cf, influence_lambda: float = 1e-3, reduce_dims=None) -> torch.Tensor:
    """I = tanh(lambda * mean KL(p_i || q_i)); the mean runs over `reduce_dims` (default: every element, as COID)."""
    kl = gaussian_kl(mu, logvar, mu_cf, logvar_cf)
    kl = kl.mean() if reduce_dims is None else kl.mean(dim=reduce_dims)
    return torch.tanh(influence_lambda * kl)


def role_similarity(mu, logvar, batch_mean: bool = True) -> torch.Tensor:
    """S_ij = exp(-(KL(p_i||p_j) + KL(p_j||p_i))) over the agent axis (-2), each KL averaged over role dims and, with
    `batch_mean`, over every leading (batch) axis as COID does; S_ii = 1. [..., N, D] -> [N, N] or [..., N, N]."""
    kl = gaussian_kl(mu.unsqueeze(-2), logvar.unsqueeze(-2), mu.unsqueeze(-3), logvar.unsqueeze(-3)).mean(-1)  # [..., N, N]
    if batch_mean:
        kl = kl.reshape(-1, *kl.shape[-2:]).mean(0)
    distance = kl + kl.transpose(-1, -2)
    return torch.exp(-distance)  # the diagonal is exp(0) = 1


def role_heterogeneity(mu, logvar, batch_mean: bool = True) -> torch.Tensor:
    """D = det(S): 1 when the roles are mutually distinct, 0 when two coincide (a DPP volume)."""
    return torch.linalg.det(role_similarity(mu, logvar, batch_mean))


def role_entropy(logvar) -> torch.Tensor:
    """H = mean over agents/batch of sum over dims of clamp(entropy(N(mu, e^logvar)), 0, 10)."""
    entropy = 0.5 * (math.log(2 * math.pi * math.e) + logvar)
    return entropy.clamp(0, 10).sum(-1).mean()


# ----- the role controller -----------------------------------------------------------------------------------------
class RoleController(nn.Module):
    """COID's coach over the team's observations (entities = agents). forward -> (mu, logvar, mu_cf, logvar_cf)."""

    def __init__(self, obs_dim: int, n_actions: int, role_dim: int, embed_dim: int = 128, num_heads: int = 4,
                 hierarchy: bool = True):
        super().__init__()
        self.hierarchy = hierarchy
        self.entity_encode = nn.Linear(obs_dim, embed_dim)
        self.self_attention = nn.MultiheadAttention(embed_dim, num_heads, batch_first=True)
        self.agent_embedding = nn.Linear(2 * embed_dim, embed_dim)
        self.action_embedding = nn.Linear(n_actions, embed_dim)
        self.influence_embedding = nn.Linear(2 * embed_dim + role_dim, embed_dim)
        self.influence_attention = nn.MultiheadAttention(embed_dim, num_heads, batch_first=True)
        self.attention_norm = nn.LayerNorm(embed_dim)
        self.mean = nn.Linear(2 * embed_dim, role_dim)
        self.logvar = nn.Linear(2 * embed_dim, role_dim)
        self.register_buffer("placeholder", torch.randn(1, 1, embed_dim))  # fixed, never trained

    def forward(self, obs: torch.Tensor, prev_actions: torch.Tensor, prev_roles: torch.Tensor):
        """obs [..., N, D], prev_actions [..., N, A] (one-hot), prev_roles [..., N, Dz]."""
        lead, N = obs.shape[:-2], obs.shape[-2]
        obs, prev_actions, prev_roles = (x.reshape(-1, N, x.shape[-1]) for x in (obs, prev_actions, prev_roles))
        he = self.entity_encode(obs)  # [b, N, dh]
        b, dh = he.shape[0], he.shape[-1]
        if self.hierarchy:
            x = F.relu(he)
            h_team, _ = self.self_attention(x, x, x, need_weights=False)
        else:  # flat ablation: no global information at all
            h_team = torch.zeros_like(he)
        a = self.agent_embedding(torch.cat([h_team, he], -1))  # a_i  [b, N, dh]
        placeholder = self.placeholder.expand(b, 1, dh)
        c_cf, _ = self.influence_attention(a, placeholder, placeholder, need_weights=False)
        c_cf = self.attention_norm(c_cf)
        if self.hierarchy and N > 1:
            iota = self.influence_embedding(torch.cat([he, self.action_embedding(prev_actions), prev_roles], -1))
            # query a_i attends over iota_j for j != i: one attention call with the diagonal masked
            not_self = torch.eye(N, dtype=torch.bool, device=obs.device)  # True = not allowed
            c, _ = self.influence_attention(a, iota, iota, attn_mask=not_self, need_weights=False)
            c = self.attention_norm(c)
        else:
            c = c_cf
        h, h_cf = torch.cat([a, c], -1), torch.cat([a, c_cf], -1)
        mu, logvar = self.mean(h), self.logvar(h).clamp(LOGVAR_MIN, LOGVAR_MAX)
        mu_cf, logvar_cf = self.mean(h_cf), self.logvar(h_cf).clamp(LOGVAR_MIN, LOGVAR_MAX)
        return tuple(t.reshape(*lead, N, t.shape[-1]) for t in (mu, logvar, mu_cf, logvar_cf))


def sample_role(mu, logvar, explore: bool):
    return mu + torch.randn_like(mu) * (0.5 * logvar).exp() if explore else mu


class CORDModule(QLearningModule):
    mixer_name = "qmix"
    replay_keys = (B.OBS, B.ACTIONS, B.REWARD, B.TERMINATED, "role", "intrinsic_rc", "intrinsic_rd")

    def __init__(self, obs_dim: int, n_actions: int, num_agents: int, episode_limit: int,
                 objective: str = "loss", hierarchy: bool = True, role_interval: int = 4,
                 influence_weight: float = 0.0025, heterogeneity_weight: float = 0.0025, entropy_weight: float = 1e-5,
                 influence_lambda: float = 1e-3, hidden_dim: int = 128, attention_dim: int = 128, num_heads: int = 4,
                 lr: float = 5e-4, gamma: float = 0.99, buffer_size: int = 5000, batch_size: int = 32,
                 train_iters: int = 1, target_update_interval: int = 200, epsilon_start: float = 1.0,
                 epsilon_finish: float = 0.05, epsilon_anneal_steps: int = 50_000, double_q: bool = True,
                 grad_clip: float = 10.0, mixing_embed_dim: int = 32, hypernet_dim: int = 64):
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
        super().__init__(obs_dim, n_actions, num_agents, episode_limit, hidden_dim, lr, gamma, buffer_size, batch_size,
                         train_iters, target_update_interval, epsilon_start, epsilon_finish, epsilon_anneal_steps,
                         double_q, grad_clip, mixing_embed_dim, hypernet_dim)
        self.save_hyperparameters()
        self.role_dim = hidden_dim  # roles are added to the agents' hidden vector
        self.interval = role_interval if hierarchy else 1
        self.controller = RoleController(obs_dim, n_actions, self.role_dim, attention_dim, num_heads, hierarchy)

    def online_modules(self) -> nn.ModuleDict:
        return nn.ModuleDict({"agent": self.agent, "mixer": self.mixer, "controller": self.controller})

    # ----- acting ------------------------------------------------------------------------------------------------
    def reset_policy_state(self, num_envs: int, num_agents: int):
        return {"role": torch.zeros(num_envs, num_agents, self.role_dim, device=self.device),
                "prev_action": torch.zeros(num_envs, num_agents, self.n_actions, device=self.device)}

    def intrinsic_terms(self, mu, logvar, mu_cf, logvar_cf):
        """Per-team r_c and r_d ([E] each) of one decision point, for the paper's reward form."""
        rc = causal_influence(mu, logvar, mu_cf, logvar_cf, self.hparams.influence_lambda, reduce_dims=(-2, -1))
        rd = role_heterogeneity(mu, logvar, batch_mean=False)
        return rc, rd

    def act(self, obs, t, state, explore):
        E = obs.shape[0]
        rc = rd = torch.zeros(E, device=obs.device)
        if t % self.interval == 0:
            mu, logvar, mu_cf, logvar_cf = self.controller(obs, state["prev_action"], state["role"])
            role = sample_role(mu, logvar, explore)
            if self.hparams.objective == "reward":
                rc, rd = self.intrinsic_terms(mu, logvar, mu_cf, logvar_cf)
        else:
            role = state["role"]
        actions = self.greedy_or_random(self.agent(obs, role), explore)
        extras = {"role": role, "intrinsic_rc": rc, "intrinsic_rd": rd}
        return actions, extras, {"role": role, "prev_action": F.one_hot(actions, self.n_actions).float()}

    # ----- learning ----------------------------------------------------------------------------------------------
    def decision_steps(self, T1: int) -> torch.Tensor:
        return torch.arange(0, T1, self.interval)

    def roles(self, batch: dict, nets: nn.ModuleDict, target: bool):
        obs, actions, played = batch[B.OBS], batch[B.ACTIONS], batch["role"]  # played roles [B, T, N, Dz]
        Bsz, T1, N, _ = obs.shape
        steps = self.decision_steps(T1).to(obs.device)
        prev_actions = F.one_hot(actions, self.n_actions).float()
        zeros_a = torch.zeros_like(prev_actions[:, :1])
        prev_actions = torch.cat([zeros_a, prev_actions], 1)[:, steps]  # action before each decision point
        prev_roles = torch.cat([torch.zeros_like(played[:, :1]), played], 1)[:, steps]
        mu, logvar, mu_cf, logvar_cf = nets["controller"](obs[:, steps], prev_actions, prev_roles)
        role = mu if target else sample_role(mu, logvar, True)
        fill = torch.arange(T1, device=obs.device) // self.interval  # forward-fill: role of the last decision point
        roles = role[:, fill]
        if target:
            return roles, {}
        influence = causal_influence(mu, logvar, mu_cf, logvar_cf, self.hparams.influence_lambda)
        heterogeneity = role_heterogeneity(mu, logvar, batch_mean=True)
        entropy = role_entropy(logvar)
        hp = self.hparams
        loss = -hp.entropy_weight * entropy
        if hp.objective == "loss":
            loss = loss - hp.influence_weight * influence - hp.heterogeneity_weight * heterogeneity
        # logged every training step beside td_loss: the three terms and their weighted sum in the loss
        return roles, {"_loss": loss, "influence": influence.detach(), "heterogeneity": heterogeneity.detach(),
                       "role_entropy": entropy.detach(), "regulariser": loss.detach()}

    def training_reward(self, batch: dict) -> torch.Tensor:
        reward = batch[B.REWARD]
        if self.hparams.objective == "reward":
            reward = reward + self.hparams.influence_weight * batch["intrinsic_rc"] \
                + self.hparams.heterogeneity_weight * batch["intrinsic_rd"]
        return reward

    @staticmethod
    def search_space(trial) -> dict:
        return {**QLearningModule.search_space(trial),
                # from COID's weights (0.0025, lambda 1e-3: terms ~1e-6 of the TD loss) to ones that rival it
                "influence_weight": trial.suggest_float("influence_weight", 1e-4, 1.0, log=True),
                "heterogeneity_weight": trial.suggest_float("heterogeneity_weight", 1e-4, 1.0, log=True),
                "influence_lambda": trial.suggest_float("influence_lambda", 1e-3, 1.0, log=True),
                "role_interval": trial.suggest_categorical("role_interval", [2, 4, 8])}


@register_model("cord", family="marl")
class CORD(CORDModule):
    """CORD with its defaults: hierarchy on, k = 4, COID's loss-form weights."""


register_model_variant("cord_no_rc", CORD, "Ablation: CORD without the causal-influence term (influence_weight = 0).",
                       influence_weight=0.0)
register_model_variant("cord_no_rd", CORD,
                       "Ablation: CORD without the role-heterogeneity term (heterogeneity_weight = 0).",
                       heterogeneity_weight=0.0)
register_model_variant("cord_flat", CORD, "Ablation: no hierarchy: roles from each agent's own observation at every "
                       "step (no global state).", hierarchy=False)
register_model_variant("cord_reward", CORD, "CORD with the paper's intrinsic-reward form: r = r_env + alpha r_c + "
                       "beta r_d (objective=\"reward\").", objective="reward")
