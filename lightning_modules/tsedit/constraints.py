"""Point anchors and segment statistics as tensors, and the exact Euclidean projection onto them.

An anchor pins x[c, t] to v; a segment statistic is a linear functional <W_k, x> with target m_k (a mean has
W = 1/n on its window, a sum W = 1). Both are linear, so the set of series meeting all of them is affine and the
projection has a closed form: set the anchored coordinates, then make the minimum-norm change of the free
coordinates that meets the K segment equations (a K x K solve per row, K <= a few; batched, no Python loops).
"""
from __future__ import annotations

import torch


def segment_stats(x: torch.Tensor, seg_weight: torch.Tensor) -> torch.Tensor:
    """<W_k, x> for every segment: [B,C,L], [B,K,C,L] -> [B,K]."""
    return torch.einsum("bkcl,bcl->bk", seg_weight, x)


def project_onto_constraints(x: torch.Tensor, anchor_value: torch.Tensor, anchor_mask: torch.Tensor,
                             seg_weight: torch.Tensor, seg_target: torch.Tensor, seg_active: torch.Tensor,
                             ridge: float = 1e-8) -> torch.Tensor:
    """argmin_z ||z - x||^2 s.t. z = v on anchors (anchor_mask > 0) and <W_k, z> = m_k for active segments.

    Anchors are treated as hard here (confidence is ignored): this is the constraint set of CPS and of the
    post-hoc overwrite. Inactive segments (padding) are left out of the solve.
    """
    fixed = anchor_mask > 0
    z = torch.where(fixed, anchor_value, x)
    if seg_weight.shape[1] == 0:
        return z
    active = seg_active > 0
    free_weight = seg_weight * (~fixed).unsqueeze(1) * active[:, :, None, None]  # [B,K,C,L]
    residual = (segment_stats(z, seg_weight) - seg_target) * active  # [B,K]
    gram = torch.einsum("bkcl,bjcl->bkj", free_weight, free_weight)
    gram = gram + torch.diag_embed((~active).float() + ridge)  # identity rows for padding keep it invertible
    lam = torch.linalg.solve(gram, residual.unsqueeze(-1)).squeeze(-1)  # [B,K]
    return z - torch.einsum("bk,bkcl->bcl", lam, free_weight)
