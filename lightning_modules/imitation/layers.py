"""Shared machinery of the imitation family: state-action history windows, Gaussian policies over them (an MLP, or
a transformer over the window), a per-step discriminator, a VAE environment simulator and a fitted-Q performance
estimator."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal


def mlp(sizes: list[int], activation=nn.ReLU) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


def history_windows(states: torch.Tensor, actions: torch.Tensor, window: int) -> torch.Tensor:
    """states [B, T, S] (s_0..s_{T-1}), actions [B, T, A] (a_0..a_{T-1}) -> tokens [B, T, L, S+A]: at step t the
    last L states s_{t-L+1..t}, each paired with the action taken before it (a_{t-L..t-1}; zeros before the start),
    so the policy at t never sees a_t. Zero tokens pad the start of an episode."""
    prev = torch.cat([torch.zeros_like(actions[:, :1]), actions[:, :-1]], 1)
    tokens = torch.cat([states, prev], -1)
    padded = F.pad(tokens, (0, 0, window - 1, 0))  # [B, T+L-1, D]
    return padded.unfold(1, window, 1).transpose(-1, -2)  # [B, T, L, D]


class GaussianPolicy(nn.Module):
    """pi(a_t | window) = N(mu, diag sigma^2) with mu = tanh(.) in the action box. `encoder`: "mlp" reads the
    flattened window; "transformer" embeds each (s, a_prev) token, adds a learned position embedding, applies
    multi-head self-attention and reads the last token (PAIL's policy generator). sigma is state-independent."""

    def __init__(self, state_dim: int, action_dim: int, window: int, encoder: str = "mlp", hidden_dim: int = 64,
                 d_model: int = 32, num_heads: int = 2, num_layers: int = 2, init_log_std: float = -1.0):
        super().__init__()
        if encoder not in ("mlp", "transformer"):
            raise ValueError(f"encoder must be mlp or transformer, got {encoder!r}")
        token = state_dim + action_dim
        self.encoder_kind = encoder
        if encoder == "mlp":
            self.encoder = mlp([token * window, hidden_dim, hidden_dim], nn.Tanh)
            width = hidden_dim
        else:
            self.embed = nn.Linear(token, d_model)
            self.position = nn.Parameter(torch.zeros(window, d_model))
            layer = nn.TransformerEncoderLayer(d_model, num_heads, 2 * d_model, dropout=0.0, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
            width = d_model
        self.mean = nn.Linear(width, action_dim)
        self.log_std = nn.Parameter(torch.full((action_dim,), init_log_std))

    def forward(self, tokens: torch.Tensor) -> Normal:
        """tokens [..., L, S+A] -> the action distribution [..., A]."""
        lead = tokens.shape[:-2]
        flat = tokens.reshape(-1, *tokens.shape[-2:])
        if self.encoder_kind == "mlp":
            h = self.encoder(flat.flatten(1))
        else:
            h = self.encoder(self.embed(flat) + self.position)[:, -1]
        mu = torch.tanh(self.mean(h)).reshape(*lead, -1)
        return Normal(mu, self.log_std.clamp(-5, 1).exp().expand_as(mu))


class StepDiscriminator(nn.Module):
    """D(s, a) -> logit of "from the expert set"; a trajectory's score is the mean over its steps."""

    def __init__(self, state_dim: int, action_dim: int, hidden_dim: int = 64):
        super().__init__()
        self.net = mlp([state_dim + action_dim, hidden_dim, hidden_dim, 1])

    def forward(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([states, actions], -1)).squeeze(-1)

    def loss(self, expert: tuple[torch.Tensor, torch.Tensor], generated: tuple[torch.Tensor, torch.Tensor]):
        """-E_expert log D - E_generated log(1 - D)."""
        e, g = self(*expert), self(*generated)
        return F.binary_cross_entropy_with_logits(e, torch.ones_like(e)) + \
            F.binary_cross_entropy_with_logits(g, torch.zeros_like(g))

    @torch.no_grad()
    def reward(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """GAIL's reward -log(1 - D(s, a)) = softplus(logit)."""
        return F.softplus(self(states, actions))


class VAESimulator(nn.Module):
    """Conditional VAE environment model: q(z | s, a, s'), p(s' | s, a, z) = N(s + f(s, a, z), I), prior N(0, I).
    Rolled forward by sampling z from the prior."""

    def __init__(self, state_dim: int, action_dim: int, latent_dim: int = 4, hidden_dim: int = 64, beta: float = 0.1):
        super().__init__()
        self.latent_dim, self.beta = latent_dim, beta
        self.encoder = mlp([2 * state_dim + action_dim, hidden_dim, 2 * latent_dim])
        self.decoder = mlp([state_dim + action_dim + latent_dim, hidden_dim, hidden_dim, state_dim])

    def loss(self, s: torch.Tensor, a: torch.Tensor, s_next: torch.Tensor) -> torch.Tensor:
        mu, log_var = self.encoder(torch.cat([s, a, s_next], -1)).chunk(2, -1)
        z = mu + torch.randn_like(mu) * (0.5 * log_var).exp()
        recon = s + self.decoder(torch.cat([s, a, z], -1))
        kl = 0.5 * (mu ** 2 + log_var.exp() - 1 - log_var).sum(-1)
        return F.mse_loss(recon, s_next, reduction="none").sum(-1).mean() + self.beta * kl.mean()

    @torch.no_grad()
    def step(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        z = torch.randn(*s.shape[:-1], self.latent_dim, device=s.device)
        return s + self.decoder(torch.cat([s, a, z], -1))


class PerformanceEstimator(nn.Module):
    """Fitted Q-learning with the episode's final score as the only reward: Q(s_t, a_t) regresses on
    gamma max_a' Q'(s_{t+1}, a') (target "max": Q-learning, the max over `action_grid` points of the box) or on
    gamma Q'(s_{t+1}, a_{t+1}) (target "sarsa": the logged next action), and on the score at the last step.
    Q' is a Polyak-averaged copy."""

    def __init__(self, state_dim: int, action_dim: int, hidden_dim: int = 64, gamma: float = 1.0,
                 target: str = "max", action_grid: int = 11, tau: float = 0.05):
        super().__init__()
        if target not in ("max", "sarsa"):
            raise ValueError(f"target must be max or sarsa, got {target!r}")
        self.q = mlp([state_dim + action_dim, hidden_dim, hidden_dim, 1])
        self.q_target = mlp([state_dim + action_dim, hidden_dim, hidden_dim, 1])
        self.q_target.load_state_dict(self.q.state_dict())
        self.q_target.requires_grad_(False)
        self.gamma, self.target_kind, self.tau = gamma, target, tau
        grid = torch.linspace(-1, 1, action_grid)
        self.register_buffer("grid", torch.cartesian_prod(*[grid] * action_dim).reshape(-1, action_dim))

    def forward(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.q(torch.cat([s, a], -1)).squeeze(-1)

    @torch.no_grad()
    def max_target(self, s: torch.Tensor) -> torch.Tensor:
        K = self.grid.shape[0]
        s_rep = s.unsqueeze(-2).expand(*s.shape[:-1], K, s.shape[-1])
        a_rep = self.grid.expand(*s.shape[:-1], K, self.grid.shape[-1])
        return self.q_target(torch.cat([s_rep, a_rep], -1)).squeeze(-1).max(-1).values

    def loss(self, states: torch.Tensor, actions: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
        """states [B, T+1, S], actions [B, T, A], score [B] (reward at the last step only)."""
        s, a = states[:, :-1], actions
        with torch.no_grad():
            if self.target_kind == "max":
                nxt = self.max_target(states[:, 1:])
            else:
                nxt = self.q_target(torch.cat([states[:, 1:-1], actions[:, 1:]], -1)).squeeze(-1)
                nxt = torch.cat([nxt, torch.zeros_like(nxt[:, :1])], 1)
            target = self.gamma * nxt
            target[:, -1] = score  # terminal: no bootstrap
        return F.mse_loss(self(s, a), target)

    def update_target(self) -> None:
        polyak_(self.q_target, self.q, self.tau)


@torch.no_grad()
def polyak_(target: nn.Module, source: nn.Module, rate: float) -> None:
    """target <- (1 - rate) target + rate source, parameter by parameter."""
    for p, tp in zip(source.parameters(), target.parameters()):
        tp.lerp_(p, rate)


def normalise(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean()) / (x.std() + 1e-8) if x.numel() > 1 else x - x.mean()


def returns_to_go(rewards: torch.Tensor, gamma: float) -> torch.Tensor:
    """rewards [B, T] -> discounted returns from each step [B, T]."""
    out = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        running = rewards[:, t] + gamma * running
        out[:, t] = running
    return out


