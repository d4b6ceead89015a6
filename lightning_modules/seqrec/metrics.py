"""Full-ranking metrics computed from the rank of the target (HSTU's `ndcg = 1/log2(rank+1)`).

Ties count against the target: its rank is the number of candidate items scoring >= it (itself included),
so a model that scores everything equally gets the worst rank, never a lucky one. Non-finite scores count
against the target too: a target scored NaN or +-inf ranks last among the candidates, and any other candidate
scored NaN or +-inf ranks above it (a comparison with NaN is False, which would otherwise rank a NaN target
first).
"""
from __future__ import annotations

import torch


def target_rank(scores: torch.Tensor, target: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """1-based rank of `target` [B] among the columns of `scores` [B, N].

    `exclude` [B, N] bool marks columns that are not candidates (padding id, filtered history); the target
    itself is never excluded.
    """
    target_score = scores.gather(1, target.unsqueeze(1))
    beats = (scores >= target_score) | ~torch.isfinite(scores) | ~torch.isfinite(target_score)
    if exclude is not None:
        beats &= ~exclude
    beats.scatter_(1, target.unsqueeze(1), True)
    return beats.sum(dim=1)


def ranking_metrics(rank: torch.Tensor, ks: list[int] | tuple[int, ...]) -> dict[str, torch.Tensor]:
    """Per-sample HR@k, NDCG@k, MRR@k for each k, plus the untruncated MRR; float tensors [B]."""
    rank = rank.float()
    out: dict[str, torch.Tensor] = {}
    for k in ks:
        hit = (rank <= k).float()
        out[f"hr@{k}"] = hit
        out[f"ndcg@{k}"] = hit / torch.log2(rank + 1.0)
        out[f"mrr@{k}"] = hit / rank
    out["mrr"] = 1.0 / rank
    return out
