"""Approximate nearest-neighbour search for retrieval evaluation, beside the exact top-k it approximates.

A production retrieval system serves from an approximate index, not from a scan of every item. `ItemIndex` builds
one over the item vectors with faiss (`faiss-cpu`, the retrieval extra): "ivf" is an inverted file of `nlist`
k-means cells (default 4 sqrt(N)) searched in `nprobe` cells, "hnsw" a graph of `hnsw_m` links per node searched
with breadth `ef_search`; both by inner product, which is the model's score (cosine of L2-normalised vectors).
`approx_rank` turns the index's ranked candidates into the 1-based rank the exact evaluation would report, with the
user's seen items removed: a held-out item the index did not return counts as a miss. `index_recall` is the
fraction of the exact top-k that the index's top-k keeps.
"""
from __future__ import annotations

import math

import numpy as np
import torch

INDEXES = ("exact", "ivf", "hnsw")


class ItemIndex:
    """An index over item vectors [N + 1, d] (row 0, the padding id, is never returned)."""

    def __init__(self, kind: str, items: torch.Tensor, nlist: int = 0, nprobe: int = 8, hnsw_m: int = 32,
                 ef_search: int = 64, seed: int = 0):
        if kind not in INDEXES or kind == "exact":
            raise ValueError(f"an approximate index is one of {INDEXES[1:]}, got {kind!r}")
        try:
            import faiss
        except ImportError as error:
            raise ImportError("eval_index='ivf'/'hnsw' needs faiss (pip install faiss-cpu, or paperboard[retrieval]); "
                              "eval_index='exact' needs nothing") from error
        vectors = np.ascontiguousarray(items[1:].detach().float().cpu().numpy())
        num, dim = vectors.shape
        if kind == "ivf":
            cells = nlist or max(1, min(num // 39, int(4 * math.sqrt(num))))  # faiss wants >= 39 points a cell
            self.index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, cells, faiss.METRIC_INNER_PRODUCT)
            self.index.cp.seed = seed
            self.index.train(vectors)
            self.index.nprobe = min(nprobe, cells)
        else:
            self.index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efSearch = ef_search
        self.index.add(vectors)
        self.kind, self.num_items = kind, num

    def search(self, users: torch.Tensor, depth: int) -> torch.Tensor:
        """Item ids [B, depth] in decreasing score; 0 where the index returned fewer."""
        depth = min(depth, self.num_items)
        if self.kind == "hnsw":
            self.index.hnsw.efSearch = max(self.index.hnsw.efSearch, depth)
        _, found = self.index.search(np.ascontiguousarray(users.detach().float().cpu().numpy()), depth)
        return torch.from_numpy(found + 1).clamp_(min=0).to(users.device)  # faiss -1 (none) -> padding id 0


def kept(ids: torch.Tensor, exclude: torch.Tensor) -> torch.Tensor:
    """Which retrieved ids [B, D] are candidates: not the padding id, not excluded [B, N + 1] for that user."""
    return (ids != 0) & ~exclude.gather(1, ids)


def approx_rank(ids: torch.Tensor, exclude: torch.Tensor, target: torch.Tensor, miss: int) -> torch.Tensor:
    """1-based rank of `target` [B] among the candidates of the retrieved `ids`; `miss` when it was not retrieved."""
    exclude = exclude.scatter(1, target.unsqueeze(1), False)  # the target is never excluded
    position = kept(ids, exclude).long().cumsum(1)
    is_target = ids == target.unsqueeze(1)
    rank = (position * is_target).sum(1)
    return torch.where(is_target.any(1), rank, torch.full_like(rank, miss))


def top_candidates(ids: torch.Tensor, valid: torch.Tensor, k: int) -> torch.Tensor:
    """The first `k` candidate ids of each row of `ids` (0 where a row has fewer)."""
    order = torch.argsort((~valid).to(torch.int8), dim=1, stable=True)[:, :k]
    return torch.where(valid.gather(1, order), ids.gather(1, order), torch.zeros_like(order))


def index_recall(approx_ids: torch.Tensor, exact_ids: torch.Tensor, k: int) -> torch.Tensor:
    """Per row: |approx top-k & exact top-k| / k (both already without excluded items and padding)."""
    a, e = approx_ids[:, :k], exact_ids[:, :k]
    shared = ((a.unsqueeze(2) == e.unsqueeze(1)) & (e.unsqueeze(1) != 0)).any(2).sum(1)
    return shared.float() / k
