"""ESANS's multimodal semantic-aware clustering (MSAC) codebooks: two-level residual k-means over fused item vectors.

Level 1 (primary) is k-means on the fused vectors; level 2 (secondary) is k-means on the residuals (vector minus
its primary centroid), one shared residual codebook as in residual quantisation. Items are then sorted by
(primary, secondary) so that every cluster and every (primary, secondary) cell is one contiguous range, which lets
samplers draw from a cluster, or from a cluster minus one cell, with index arithmetic instead of per-item Python.

The paper's fused vectors come from CLIP, BERT and a GNN aligned by InfoNCE; here the modalities are the item
table's text embedding, its attributes and behaviour factors of the training interactions, each L2-normalised and
concatenated (`fuse`), which is the part of the alignment that needs no extra training.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def fuse(features: dict[str, torch.Tensor], modalities: tuple[str, ...]) -> np.ndarray:
    """[N+1, sum of dims] the chosen modalities, each row-normalised (zero rows stay zero), concatenated."""
    if not modalities:
        raise ValueError("MSAC needs at least one modality: choose from text, attributes, behaviour")
    parts = []
    for name in modalities:
        if name not in ("text", "attributes", "behaviour"):
            raise ValueError(f"unknown modality {name!r}: choose from text, attributes, behaviour")
        x = features[name].detach().cpu().numpy().astype(np.float64)
        parts.append(x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12))
    return np.concatenate(parts, axis=1)


@dataclass
class Codebooks:
    """Cluster structure over items 1..N (index 0, padding, belongs to no cluster)."""

    primary: torch.Tensor  # [N+1] primary cluster of each item (-1 for padding)
    cell: torch.Tensor  # [N+1] (primary, secondary) cell id, cells of one primary consecutive (-1 for padding)
    order: torch.Tensor  # [N] item ids sorted by (primary, secondary)
    primary_start: torch.Tensor  # [K1] first position in `order` of each primary cluster
    primary_size: torch.Tensor  # [K1]
    cell_start: torch.Tensor  # [C] first position in `order` of each cell
    cell_size: torch.Tensor  # [C]
    centroids: torch.Tensor  # [K1, D] primary centroids

    def to(self, device) -> "Codebooks":
        return Codebooks(**{k: getattr(self, k).to(device) for k in self.__dataclass_fields__})


def _kmeans(x: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.cluster import KMeans

    k = max(1, min(k, len(np.unique(x, axis=0))))
    model = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(x)
    return model.labels_, model.cluster_centers_


def residual_codebooks(vectors: np.ndarray, num_primary: int, num_secondary: int, seed: int = 0) -> Codebooks:
    """Two-level residual k-means over rows 1..N of `vectors` (row 0 is padding); deterministic given `seed`."""
    x = vectors[1:]
    primary, centroids = _kmeans(x, num_primary, seed)
    residual = x - centroids[primary]
    secondary, _ = _kmeans(residual, num_secondary, seed + 1)
    key = primary * (secondary.max() + 1) + secondary
    _, cell = np.unique(key, return_inverse=True)  # cells numbered in (primary, secondary) order
    order = np.lexsort((np.arange(len(x)), cell))
    cell_sorted = cell[order]
    cell_start = np.searchsorted(cell_sorted, np.arange(cell.max() + 1))
    cell_size = np.bincount(cell, minlength=cell.max() + 1)
    k1 = centroids.shape[0]
    primary_sorted = primary[order]
    primary_start = np.searchsorted(primary_sorted, np.arange(k1))
    primary_size = np.bincount(primary, minlength=k1)
    pad = lambda a: torch.from_numpy(np.concatenate([[-1], a]).astype(np.int64))
    as_long = lambda a: torch.from_numpy(np.asarray(a, dtype=np.int64))
    return Codebooks(primary=pad(primary), cell=pad(cell), order=as_long(order + 1),
                     primary_start=as_long(primary_start), primary_size=as_long(primary_size),
                     cell_start=as_long(cell_start), cell_size=as_long(cell_size),
                     centroids=torch.from_numpy(centroids.astype(np.float32)))
