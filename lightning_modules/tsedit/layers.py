"""The diffusion backbone shared by every tsedit model: a cosine noise schedule (Nichol & Dhariwal 2021, Eq. 17),
a small conditional epsilon-network (1-D residual convolutions with FiLM conditioning on the diffusion step and
the attribute, plus one self-attention layer over time), and the learned noisy-statistic regressor used by
classifier-style segment control.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def cosine_alpha_bar(num_steps: int, s: float = 0.008) -> torch.Tensor:
    """alpha_bar_t for t = 0..T-1 (Improved DDPM, Eq. 17), betas clipped at 0.999 as in the paper."""
    t = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    betas = (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)
    return torch.cumprod(1 - betas, 0).float()


def step_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of the (integer) diffusion step, [B] -> [B, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class ResidualBlock(nn.Module):
    """GroupNorm -> SiLU -> dilated conv, FiLM by the condition, GroupNorm -> SiLU -> conv, plus the input."""

    def __init__(self, dim: int, dilation: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(8, dim)
        self.conv1 = nn.Conv1d(dim, dim, 3, padding=dilation, dilation=dilation)
        self.film = nn.Linear(dim, 2 * dim)
        self.norm2 = nn.GroupNorm(8, dim)
        self.conv2 = nn.Conv1d(dim, dim, 3, padding=1)
        self.act = nn.SiLU()

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.act(self.norm1(h)))
        scale, shift = self.film(cond)[:, :, None].chunk(2, dim=1)
        out = self.norm2(out) * (1 + scale) + shift
        return h + self.conv2(self.act(out))


class ConditionalDenoiser(nn.Module):
    """epsilon_theta(x_t, t, c): [B,C,L] -> [B,C,L]. Attribute index `num_classes` is the null (unconditional)
    token used for classifier-free dropout during training."""

    def __init__(self, channels: int, window: int, num_classes: int, hidden_dim: int = 64, num_blocks: int = 4,
                 num_heads: int = 4):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.input = nn.Conv1d(channels, hidden_dim, 3, padding=1)
        self.step_mlp = nn.Sequential(nn.Linear(hidden_dim, 4 * hidden_dim), nn.SiLU(), nn.Linear(4 * hidden_dim, hidden_dim))
        self.attr_embedding = nn.Embedding(num_classes + 1, hidden_dim)
        self.blocks = nn.ModuleList(ResidualBlock(hidden_dim, 2 ** (i % 4)) for i in range(num_blocks))
        self.position = nn.Parameter(torch.randn(1, window, hidden_dim) * 0.02)
        self.attention = nn.TransformerEncoderLayer(hidden_dim, num_heads, 2 * hidden_dim, dropout=0.0,
                                                    batch_first=True, norm_first=True)
        self.out_norm = nn.GroupNorm(8, hidden_dim)
        self.output = nn.Conv1d(hidden_dim, channels, 3, padding=1)
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, attr: torch.Tensor) -> torch.Tensor:
        cond = self.step_mlp(step_embedding(t, self.hidden_dim)) + self.attr_embedding(attr)
        h = self.input(x)
        half = len(self.blocks) // 2
        for block in self.blocks[:half]:
            h = block(h, cond)
        h = self.attention(h.transpose(1, 2) + self.position).transpose(1, 2)
        for block in self.blocks[half:]:
            h = block(h, cond)
        return self.output(torch.nn.functional.silu(self.out_norm(h)))


class NoisyStatisticRegressor(nn.Module):
    """r_phi(x_t, t, W) = <W, f_phi(x_t, t)>: predicts a linear segment statistic <W, x_0> of the clean series
    from the noisy one (the regression analogue of Dhariwal & Nichol's noisy classifier). Being linear in W,
    one network serves every window, channel and statistic (mean or sum)."""

    def __init__(self, channels: int, hidden_dim: int = 32, num_blocks: int = 2):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.input = nn.Conv1d(channels, hidden_dim, 3, padding=1)
        self.step_mlp = nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, hidden_dim))
        self.blocks = nn.ModuleList(ResidualBlock(hidden_dim, 2 ** i) for i in range(num_blocks))
        self.output = nn.Conv1d(hidden_dim, channels, 1)

    def pointwise(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        cond = self.step_mlp(step_embedding(t, self.hidden_dim))
        h = self.input(x_t)
        for block in self.blocks:
            h = block(h, cond)
        return self.output(h)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, seg_weight: torch.Tensor) -> torch.Tensor:
        """[B,C,L], [B], [B,K,C,L] -> [B,K]."""
        return torch.einsum("bkcl,bcl->bk", seg_weight, self.pointwise(x_t, t))
