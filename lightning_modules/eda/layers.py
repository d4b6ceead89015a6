"""Layers of the learned timing models: the multi-path timing encoder (Eq. 1-2) and the multi-scale layout encoder
(Eq. 3-5), shared by the paper's sizer and the TransSizer-style predictor."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel


class PathEncoder(nn.Module):
    """Eq. 1-2: a Transformer encodes the gate features along each path; a gate's timing vector concatenates its own
    embedding on its critical path (critical encoding), the sum over that path (intra-path encoding), and the mean
    of its embeddings over the endpoint-critical paths through it (inter-path encoding)."""

    def __init__(self, num_features: int, d_model: int, num_heads: int, num_layers: int, max_len: int):
        super().__init__()
        self.embed = nn.Linear(num_features, d_model)
        self.position = nn.Embedding(max_len, d_model)
        layer = nn.TransformerEncoderLayer(d_model, num_heads, 2 * d_model, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.out_dim = 3 * d_model

    def encode(self, tokens: torch.Tensor, paths: torch.Tensor) -> torch.Tensor:
        """tokens [I, d]; paths [P, L] instance ids (-1 pad) -> [P, L, d]."""
        pad = paths < 0
        seq = tokens[paths.clamp(min=0)] * (~pad).unsqueeze(-1) + self.position.weight[: paths.shape[1]]
        # the math kernel has a double backward, which the gradient-matching loss needs
        with sdpa_kernel(SDPBackend.MATH):
            return self.encoder(seq, src_key_padding_mask=pad) * (~pad).unsqueeze(-1)

    def forward(self, features: torch.Tensor, gate_paths: torch.Tensor, end_paths: torch.Tensor) -> torch.Tensor:
        I = features.shape[0]
        tokens = self.embed(features)
        own = self.encode(tokens, gate_paths)  # [I, L, d]
        position = (gate_paths == torch.arange(I)[:, None]).float().argmax(1)
        critical = own[torch.arange(I), position]
        intra = own.sum(1)
        ends = self.encode(tokens, end_paths)  # [E, L, d]
        ids, ok = end_paths.reshape(-1), end_paths.reshape(-1) >= 0
        total = torch.zeros(I, tokens.shape[1], dtype=tokens.dtype).index_add(0, ids[ok], ends.reshape(-1, ends.shape[-1])[ok])
        count = torch.zeros(I, dtype=tokens.dtype).index_add(0, ids[ok], torch.ones(int(ok.sum()), dtype=tokens.dtype))
        inter = total / count.clamp(min=1).unsqueeze(-1)
        return torch.cat([critical, intra, inter], -1)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1, dilated 3x3 (2, 5, 7) and image-pooling branches, fused by a 1x1 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.branches = nn.ModuleList([nn.Conv2d(channels, channels, 1)] + [
            nn.Conv2d(channels, channels, 3, padding=d, dilation=d) for d in (2, 5, 7)])
        self.pool = nn.Conv2d(channels, channels, 1)
        self.fuse = nn.Conv2d(5 * channels, channels, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        outs = [torch.relu(b(h)) for b in self.branches]
        pooled = torch.relu(self.pool(h.mean((-2, -1), keepdim=True))).expand_as(h)
        return torch.relu(self.fuse(torch.cat(outs + [pooled], 1)))


class LayoutEncoder(nn.Module):
    """Eq. 3-5: per scale a small conv trunk + ASPP (Eq. 3; the paper's trunk is ResNet-50), bilinear upsampling to
    the largest scale, a softmax attention over scales (Eq. 4), the attention-weighted sum (Eq. 5), and the gate
    mask: each gate reads the fused map at its own bin."""

    def __init__(self, scales: tuple[int, ...], channels: int):
        super().__init__()
        self.scales = tuple(scales)
        self.trunks = nn.ModuleList([nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.ReLU(),
                                                   nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
                                                   ASPP(channels)) for _ in self.scales])
        self.attention = nn.Sequential(nn.Conv2d(channels * len(self.scales), channels, 3, padding=1), nn.ReLU(),
                                       nn.Conv2d(channels, len(self.scales), 1))
        self.out_dim = channels

    def forward(self, images: list[torch.Tensor], bins: torch.Tensor) -> torch.Tensor:
        """images: [3, s, s] per scale; bins [I] at the largest scale -> [I, channels]."""
        top = max(self.scales)
        maps = [nn.functional.interpolate(trunk(img[None]), size=(top, top), mode="bilinear", align_corners=False)
                for trunk, img in zip(self.trunks, images)]
        weights = torch.softmax(self.attention(torch.cat(maps, 1)), 1)  # [1, S, top, top]
        fused = sum(weights[:, k: k + 1] * m for k, m in enumerate(maps))[0]  # [C, top, top]
        return fused.flatten(1)[:, bins].T


def mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, out_dim))


def r2(pred: torch.Tensor, target: torch.Tensor) -> float:
    var = float(((target - target.mean()) ** 2).sum())
    return 1.0 - float(((pred - target) ** 2).sum()) / var if var > 0 else float("nan")
