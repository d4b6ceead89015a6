"""Layers shared by several families (seqrec's Transformers and SAFER's tabular/notes streams)."""
from __future__ import annotations

import contextlib
import os

import torch
import torch.nn.functional as F
from torch import nn

# PAPERBOARD_REFERENCE_KERNELS=1 runs a whole process (a board run, a sweep trial) on the reference code
_REFERENCE = os.environ.get("PAPERBOARD_REFERENCE_KERNELS", "") == "1"


@contextlib.contextmanager
def reference_kernels(enabled: bool = True):
    """Within this block models run their plain reference code instead of the fused/faster kernels that compute the
    same maths (used by the equivalence tests and by `benchmarks.perf.seqrec_speed`, which times both in one run)."""
    global _REFERENCE
    before, _REFERENCE = _REFERENCE, enabled
    try:
        yield
    finally:
        _REFERENCE = before


def using_reference_kernels() -> bool:
    return _REFERENCE


class MultiHeadAttention(nn.Module):
    """Softmax multi-head attention through `scaled_dot_product_attention`; queries and keys may differ in input."""

    def __init__(self, dim: int, num_heads: int, dropout: float, bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=bias)
        self.k = nn.Linear(dim, dim, bias=bias)
        self.v = nn.Linear(dim, dim, bias=bias)
        self.out = nn.Linear(dim, dim, bias=bias)
        self.dropout = dropout

    def split(self, x: torch.Tensor) -> torch.Tensor:
        b, l, d = x.shape
        return x.view(b, l, self.num_heads, d // self.num_heads).transpose(1, 2)

    def forward(self, query_in: torch.Tensor, key_in: torch.Tensor, mask: torch.Tensor, rotary=None) -> torch.Tensor:
        q, k, v = self.split(self.q(query_in)), self.split(self.k(key_in)), self.split(self.v(key_in))
        if rotary is not None:
            q, k = rotary(q), rotary(k)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        b, h, l, dh = y.shape
        return self.out(y.transpose(1, 2).reshape(b, l, h * dh))
