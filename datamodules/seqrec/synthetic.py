"""A synthetic sequential dataset with a planted pattern, needing no files.

Each item i has a fixed successor succ[i] (a random permutation). A user's next item is succ[current] with
probability `p_follow`, otherwise an item drawn from a Zipf popularity law. A model that learns transitions
can reach HR@10 near `p_follow`; popularity cannot, because the successors are spread over the whole catalogue.
Timestamps grow by exponential gaps, so time-aware models see real-looking time.
"""
from __future__ import annotations

import numpy as np

from contracts.registry import register_dataset
from datamodules.seqrec.base import ItemMetadata, SeqRecDataModule


@register_dataset("synthetic-seqrec", family="seqrec")
class SyntheticSeqRec(SeqRecDataModule):
    folder = "synthetic-seqrec"

    def __init__(self, data_dir: str | None = None, num_users: int = 1000, num_items: int = 200,
                 min_length: int = 8, max_length: int = 30, p_follow: float = 0.8, zipf_a: float = 1.2,
                 seed: int = 0, max_len: int = 20, batch_size: int = 128, eval_batch_size: int = 256,
                 min_seq_len: int = 3, train_windows: str = "last", num_workers: int = 0,
                 validation_item: bool = True, length_grouped: bool = False):
        super().__init__(data_dir, max_len=max_len, batch_size=batch_size, eval_batch_size=eval_batch_size,
                         min_seq_len=min_seq_len, train_windows=train_windows, num_workers=num_workers,
                         validation_item=validation_item, length_grouped=length_grouped)
        self.generator_args = dict(num_users=num_users, num_items=num_items, min_length=min_length,
                                   max_length=max_length, p_follow=p_follow, zipf_a=zipf_a, seed=seed)

    def prepare_data(self) -> None:
        pass  # generated in memory: nothing to download or cache on disk

    def _sequences(self):
        if not hasattr(self, "_generated"):
            self._generated = self.sequences_from_interactions(self.generate())
        return self._generated

    def generate(self) -> dict[str, np.ndarray]:
        a = self.generator_args
        rng = np.random.default_rng(a["seed"])
        n_items, n_users = a["num_items"], a["num_users"]
        successor = rng.permutation(n_items)
        popularity = 1.0 / np.arange(1, n_items + 1) ** a["zipf_a"]
        popularity /= popularity.sum()
        lengths = rng.integers(a["min_length"], a["max_length"] + 1, size=n_users)
        steps = int(lengths.max())
        # Generate all users in lock-step: one vectorised draw per position, not per user.
        seqs = np.empty((n_users, steps), dtype=np.int64)
        seqs[:, 0] = rng.choice(n_items, size=n_users, p=popularity)
        for t in range(1, steps):
            follow = rng.random(n_users) < a["p_follow"]
            seqs[:, t] = np.where(follow, successor[seqs[:, t - 1]], rng.choice(n_items, size=n_users, p=popularity))
        keep = np.arange(steps)[None, :] < lengths[:, None]
        gaps = rng.exponential(3600.0, size=(n_users, steps)).astype(np.int64) + 1
        times = 1_600_000_000 + np.cumsum(gaps, axis=1)
        users = np.broadcast_to(np.arange(n_users)[:, None], seqs.shape)
        return {"user": users[keep], "item": seqs[keep], "time": times[keep]}


@register_dataset("synthetic-seqrec-attrs", family="seqrec")
class SyntheticAttributeSeqRec(SeqRecDataModule):
    """A synthetic dataset whose pattern lives in the item attributes, not in the item ids.

    Items form a grid of `num_categories` categories x `num_brands` brands x `items_per_cell` items. A user's next item
    is, with probability `p_follow`, a uniformly drawn item of the cell (succ[category], same brand), where succ is a
    fixed random permutation of the categories; otherwise any item, uniformly. The item ids carry no signal of their
    own (no popularity, and each transition of ids is rare), so an ID-only model must learn every item's cell from
    co-occurrence, while a model that reads the attributes sees it directly. Side information is always on: fields
    `category` and `brand` (a fraction `attribute_missing` of items lacks both) and a planted text vector per item
    (category direction + brand direction + noise, unit norm, `text_dim` wide).
    """

    folder = "synthetic-seqrec-attrs"

    def __init__(self, data_dir: str | None = None, num_users: int = 600, num_categories: int = 8,
                 num_brands: int = 8, items_per_cell: int = 6, min_length: int = 8, max_length: int = 20,
                 p_follow: float = 0.9, attribute_missing: float = 0.0, text_dim: int = 16, seed: int = 0,
                 max_len: int = 20, batch_size: int = 128, eval_batch_size: int = 256, min_seq_len: int = 3,
                 train_windows: str = "last", num_workers: int = 0, validation_item: bool = True,
                 item_features: bool = True, length_grouped: bool = False):
        super().__init__(data_dir, max_len=max_len, batch_size=batch_size, eval_batch_size=eval_batch_size,
                         min_seq_len=min_seq_len, train_windows=train_windows, num_workers=num_workers,
                         validation_item=validation_item, item_features=item_features,
                         length_grouped=length_grouped)
        self.generator_args = dict(num_users=num_users, num_categories=num_categories, num_brands=num_brands,
                                   items_per_cell=items_per_cell, min_length=min_length, max_length=max_length,
                                   p_follow=p_follow, attribute_missing=attribute_missing, text_dim=text_dim,
                                   seed=seed)

    def prepare_data(self) -> None:
        pass  # generated in memory

    def _sequences(self):
        if not hasattr(self, "_generated"):
            self._generated = self.sequences_from_interactions(self.generate())
        return self._generated

    def catalogue(self) -> dict[str, np.ndarray]:
        """Category and brand of raw items 0..n-1, the category successor, and which items lack attributes."""
        a = self.generator_args
        rng = np.random.default_rng([a["seed"], 1])  # its own stream: the catalogue does not move the sequences
        cells = a["num_categories"] * a["num_brands"]
        cell = np.repeat(np.arange(cells), a["items_per_cell"])
        return {"category": cell // a["num_brands"], "brand": cell % a["num_brands"],
                "successor": rng.permutation(a["num_categories"]),
                "missing": rng.random(len(cell)) < a["attribute_missing"]}

    def generate(self) -> dict[str, np.ndarray]:
        a = self.generator_args
        rng = np.random.default_rng(a["seed"])
        cat = self.catalogue()
        n_items, n_users, per_cell = len(cat["category"]), a["num_users"], a["items_per_cell"]
        lengths = rng.integers(a["min_length"], a["max_length"] + 1, size=n_users)
        steps = int(lengths.max())
        seqs = np.empty((n_users, steps), dtype=np.int64)
        seqs[:, 0] = rng.integers(0, n_items, size=n_users)
        for t in range(1, steps):  # all users in lock-step: one vectorised draw per position
            prev = seqs[:, t - 1]
            cell = cat["successor"][cat["category"][prev]] * a["num_brands"] + cat["brand"][prev]
            follow = rng.random(n_users) < a["p_follow"]
            in_cell = cell * per_cell + rng.integers(0, per_cell, size=n_users)
            seqs[:, t] = np.where(follow, in_cell, rng.integers(0, n_items, size=n_users))
        keep = np.arange(steps)[None, :] < lengths[:, None]
        times = 1_600_000_000 + np.cumsum(rng.exponential(3600.0, size=(n_users, steps)).astype(np.int64) + 1, axis=1)
        users = np.broadcast_to(np.arange(n_users)[:, None], seqs.shape)
        return {"user": users[keep], "item": seqs[keep], "time": times[keep]}

    def item_metadata(self, raw_item_ids: np.ndarray) -> ItemMetadata:
        a = self.generator_args
        cat = self.catalogue()
        rng = np.random.default_rng([a["seed"], 2])
        category_dir = rng.normal(size=(a["num_categories"], a["text_dim"]))
        brand_dir = rng.normal(size=(a["num_brands"], a["text_dim"]))
        ids = np.asarray(raw_item_ids, dtype=np.int64)
        text = (category_dir[cat["category"][ids]] + brand_dir[cat["brand"][ids]]
                + 0.3 * rng.normal(size=(len(ids), a["text_dim"])))
        text /= np.linalg.norm(text, axis=1, keepdims=True)
        missing = cat["missing"][ids]
        return ItemMetadata(
            fields={"category": [[] if m else [int(c)] for c, m in zip(cat["category"][ids], missing)],
                    "brand": [[] if m else [int(b)] for b, m in zip(cat["brand"][ids], missing)]},
            text_embeddings=text.astype(np.float32),
            text_source="planted: category direction + brand direction + noise")
