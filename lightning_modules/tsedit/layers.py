"""The diffusion backbones shared by every tsedit model: a cosine noise schedule (Nichol & Dhariwal 2021, Eq. 17),
two conditional epsilon-networks of different families, and the learned noisy-statistic regressor used by
classifier-style segment control.

- `ConditionalDenoiser` (`backbone="conv"`): 1-D residual convolutions with FiLM conditioning on the diffusion
  step and the attribute, plus one self-attention layer over time.
- `CSDIDenoiser` (`backbone="csdi"`): the residual stack of CSDI (Tashiro et al., NeurIPS 2021, Sec. 4 and
  App. E, `diff_CSDI`): each layer adds the step embedding, runs a transformer layer over time (per channel) and
  one over channels (per time step), adds the side information, applies the gated activation
  sigmoid(gate) * tanh(filter), and splits into a residual and a skip path; the output sums the skips. Side
  information here is a learned time and channel embedding plus the attribute embedding (CSDI's side
  information is the time and feature embedding plus the observation mask, which editing does not need).
- `TransformerDenoiser` (`backbone="transformer"`): the Diffusion-TS family (Yuan & Qiao, ICLR 2024, Sec. 3):
  time steps are tokens (all channels embedded together), a transformer whose layers are conditioned on the
  diffusion step and attribute by adaptive LayerNorm (AdaLN, Diffusion-TS Eq. 5-6), and an output that is the
  sum of a trend part (a low-order polynomial fitted per channel from the tokens, Eq. 3) and a seasonal/residual
  part (a linear read-out). Difference from Diffusion-TS: an encoder only (no encoder-decoder split), no Fourier
  seasonal layer and no Fourier loss term; it is about 10x cheaper than `csdi` on a CPU.
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


class CSDIResidualLayer(nn.Module):
    """One CSDI residual layer on h [B, D, C, L]: step embedding, temporal then feature transformer, side
    information, gated activation, residual and skip outputs (each [B, D, C, L])."""

    def __init__(self, dim: int, side_dim: int, num_heads: int):
        super().__init__()
        self.step_projection = nn.Linear(dim, dim)
        layer = lambda: nn.TransformerEncoderLayer(dim, num_heads, 64, dropout=0.0, activation="gelu", batch_first=True)
        self.time_layer, self.feature_layer = layer(), layer()
        self.mid_projection = nn.Conv1d(dim, 2 * dim, 1)
        self.cond_projection = nn.Conv1d(side_dim, 2 * dim, 1)
        self.output_projection = nn.Conv1d(dim, 2 * dim, 1)

    def forward(self, h: torch.Tensor, side: torch.Tensor, step: torch.Tensor):
        B, D, C, L = h.shape
        y = h + self.step_projection(step)[:, :, None, None]
        y = self.time_layer(y.permute(0, 2, 3, 1).reshape(B * C, L, D)).reshape(B, C, L, D)
        y = self.feature_layer(y.transpose(1, 2).reshape(B * L, C, D)).reshape(B, L, C, D).permute(0, 3, 2, 1)
        y = self.mid_projection(y.reshape(B, D, C * L)) + self.cond_projection(side.reshape(B, -1, C * L))
        gate, filt = y.chunk(2, dim=1)
        y = self.output_projection(torch.sigmoid(gate) * torch.tanh(filt))
        residual, skip = y.reshape(B, 2 * D, C, L).chunk(2, dim=1)
        return (h + residual) / math.sqrt(2.0), skip


class CSDIDenoiser(nn.Module):
    """epsilon_theta(x_t, t, c) with CSDI's residual layers; the same interface as `ConditionalDenoiser`."""

    def __init__(self, channels: int, window: int, num_classes: int, hidden_dim: int = 64, num_blocks: int = 4,
                 num_heads: int = 4, side_dim: int = 32):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.input = nn.Conv1d(1, hidden_dim, 1)
        self.step_mlp = nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, hidden_dim),
                                      nn.SiLU())
        self.time_embedding = nn.Parameter(torch.randn(1, side_dim, 1, window) * 0.02)
        self.channel_embedding = nn.Parameter(torch.randn(1, side_dim, channels, 1) * 0.02)
        self.attr_embedding = nn.Embedding(num_classes + 1, side_dim)
        self.layers = nn.ModuleList(CSDIResidualLayer(hidden_dim, side_dim, num_heads) for _ in range(num_blocks))
        self.skip_projection = nn.Conv1d(hidden_dim, hidden_dim, 1)
        self.output = nn.Conv1d(hidden_dim, 1, 1)
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, attr: torch.Tensor) -> torch.Tensor:
        B, C, L = x.shape
        h = torch.relu(self.input(x.reshape(B, 1, C * L))).reshape(B, self.hidden_dim, C, L)
        step = self.step_mlp(step_embedding(t, self.hidden_dim))
        side = self.time_embedding + self.channel_embedding + self.attr_embedding(attr)[:, :, None, None]
        skips = 0.0
        for layer in self.layers:
            h, skip = layer(h, side.expand(B, -1, C, L), step)
            skips = skips + skip
        out = torch.relu(self.skip_projection((skips / math.sqrt(len(self.layers))).reshape(B, self.hidden_dim, C * L)))
        return self.output(out).reshape(B, C, L)


class AdaLNTransformerLayer(nn.Module):
    """Pre-norm self-attention and MLP, each LayerNorm modulated by the condition: LN(h) * (1 + scale) + shift,
    and each branch gated (zero-initialised gates: the layer starts as the identity)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.attention = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.modulation = nn.Linear(dim, 6 * dim)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(cond)[:, None, :].chunk(6, dim=-1)
        a = self.norm1(h) * (1 + scale1) + shift1
        h = h + gate1 * self.attention(a, a, a, need_weights=False)[0]
        return h + gate2 * self.mlp(self.norm2(h) * (1 + scale2) + shift2)


class TransformerDenoiser(nn.Module):
    """epsilon_theta(x_t, t, c): time-step tokens, AdaLN transformer, trend + seasonal/residual read-out."""

    def __init__(self, channels: int, window: int, num_classes: int, hidden_dim: int = 64, num_blocks: int = 4,
                 num_heads: int = 4, trend_degree: int = 3):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.input = nn.Conv1d(channels, hidden_dim, 3, padding=1)
        self.position = nn.Parameter(torch.randn(1, window, hidden_dim) * 0.02)
        self.step_mlp = nn.Sequential(nn.Linear(hidden_dim, 4 * hidden_dim), nn.SiLU(), nn.Linear(4 * hidden_dim, hidden_dim))
        self.attr_embedding = nn.Embedding(num_classes + 1, hidden_dim)
        self.layers = nn.ModuleList(AdaLNTransformerLayer(hidden_dim, num_heads) for _ in range(num_blocks))
        self.out_norm = nn.LayerNorm(hidden_dim)
        grid = torch.linspace(0, 1, window)
        self.register_buffer("trend_basis", torch.stack([grid ** p for p in range(trend_degree + 1)]), persistent=False)
        self.trend = nn.Linear(hidden_dim, channels * (trend_degree + 1))
        self.residual = nn.Linear(hidden_dim, channels)
        for layer in (self.trend, self.residual):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, attr: torch.Tensor) -> torch.Tensor:
        B, C, L = x.shape
        cond = self.step_mlp(step_embedding(t, self.hidden_dim)) + self.attr_embedding(attr)
        h = self.input(x).transpose(1, 2) + self.position
        for layer in self.layers:
            h = layer(h, cond)
        h = self.out_norm(h)
        coefficients = self.trend(h.mean(dim=1)).reshape(B, C, -1)  # polynomial trend per channel from pooled tokens
        return coefficients @ self.trend_basis + self.residual(h).transpose(1, 2)


BACKBONES = {"conv": ConditionalDenoiser, "transformer": TransformerDenoiser, "csdi": CSDIDenoiser}


def build_denoiser(backbone: str, channels: int, window: int, num_classes: int, hidden_dim: int, num_blocks: int,
                   num_heads: int) -> nn.Module:
    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}, got {backbone!r}")
    return BACKBONES[backbone](channels, window, num_classes, hidden_dim, num_blocks, num_heads)


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
