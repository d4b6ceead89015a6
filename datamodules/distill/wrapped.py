"""Distillation datasets: a seqrec dataset (same files, same split, same preprocessing) plus frozen sampled
negatives for TD3's `uni100` evaluation protocol.

The wrapped seqrec datamodule does everything real (reading, time ordering, leave-one-out, padding, caching); this
module only adds, for the validation and test splits, `num_negatives` items per user drawn uniformly from the items
the user never interacted with (history, validation and test items all excluded, as RecBole's evaluation sampler
does). They are drawn once from `negatives_seed`, vectorised (no per-user Python), saved as .npy
beside the preprocessing cache, and their hash enters `data_hash`, so runs with other negatives never compare.

The real training side covers every training target by default (`train_windows="all"`: each user's training part
cut into non-overlapping windows of `max_len` targets, so every next item of the training part is a target exactly
once), as TD3's code trains its teacher and outer loss on every RecBole training prefix. `train_windows="last"` (the
seqrec family's default) keeps only each user's last window: 40% of ML-100K's and 27% of ML-1M's training targets.
Unlike RecBole's prefixes, a target early in a later window sees only the window's items before it as history.
Real-user subsets read `user_sequences` (each user's last `max_len + 1` training items), which do not depend on
the windowing.
"""
from __future__ import annotations

import numpy as np
import torch

from contracts.atomic import save_cache
from contracts.batch import distill as B
from contracts.registry import DATASETS, register_dataset
from datamodules.base import PaperboardDataModule, TensorBatchDataset, arrays_hash, load_cache
from datamodules.seqrec.base import left_padded_windows


def sample_negatives(users: np.ndarray, items: np.ndarray, num_users: int, num_items: int, num_negatives: int,
                     seed: int) -> np.ndarray:
    """[num_users, S] distinct items in 1..num_items per row, none of which user u ever interacted with
    (`users`, `items`: flat interaction arrays, user index 0..num_users-1, item ids 1..num_items).

    Uniform without replacement, vectorised: every unseen item gets a uniform random key, seen items +inf, and the
    S smallest keys win (one argpartition over a [U, num_items] matrix; no per-user Python).
    """
    rng = np.random.default_rng(seed)
    seen = np.zeros((num_users, num_items + 1), dtype=bool)
    seen[users, items] = True
    seen[:, 0] = True  # padding id
    if ((~seen).sum(1) < num_negatives).any():
        raise ValueError(f"a user has fewer than {num_negatives} unseen items; lower num_negatives")
    keys = rng.random((num_users, num_items + 1), dtype=np.float32)
    keys[seen] = np.inf
    neg = np.argpartition(keys, num_negatives - 1, axis=1)[:, :num_negatives]
    return np.sort(neg, axis=1).astype(np.int64)


class DistillDataModule(PaperboardDataModule):
    """Wraps the registered seqrec dataset `seqrec_dataset`; train/val/test are its splits (+ negatives)."""

    seqrec_dataset: str = ""
    # runs recorded before `train_windows` existed trained on each user's last window
    earlier_behaviour = {"train_windows": "last"}

    def __init__(self, data_dir: str | None = None, batch_size: int = 128, eval_batch_size: int = 256,
                 num_negatives: int = 100, negatives_seed: int = 2024, num_workers: int = 0,
                 train_windows: str = "all", **seqrec_args):
        super().__init__(data_dir, batch_size, eval_batch_size, num_workers)
        self.inner = DATASETS.get(self.seqrec_dataset).cls(data_dir=data_dir, batch_size=batch_size,
                                                          eval_batch_size=eval_batch_size,
                                                          train_windows=train_windows, **seqrec_args)
        self.folder = self.inner.folder
        self.num_negatives = num_negatives
        self.negatives_seed = negatives_seed
        self.negatives_hash: str | None = None

    def prepare_data(self) -> None:
        self.inner.prepare_data()

    def _negatives(self, split: str) -> np.ndarray:
        key = f"negatives-{self.seqrec_dataset}-{self.inner.data_hash}-{split}-n{self.num_negatives}-s{self.negatives_seed}"
        path = self.cache_dir / f"{key}.npz"
        cached = load_cache(path)
        if cached is not None:
            return cached["negatives"]
        seed = self.negatives_seed + (0 if split == "val" else 1)
        seq = self.inner._sequences()
        users = np.repeat(np.arange(self.inner.num_users), np.diff(seq["offsets"]))
        neg = sample_negatives(users, seq["items"], self.inner.num_users, self.inner.num_items, self.num_negatives, seed)
        save_cache(path, {"negatives": neg})
        return neg

    def setup(self, stage: str | None = None) -> None:
        if getattr(self, "train_set", None) is not None:
            return
        self.inner.setup(stage)
        self.num_items, self.num_users, self.max_len = self.inner.num_items, self.inner.num_users, self.inner.max_len
        self.train_set = self.inner.train_set
        seq = self.inner._sequences()
        starts, ends = seq["offsets"][:-1], seq["offsets"][1:]
        self.train_lengths = torch.from_numpy(ends - starts - 2)  # items in each user's training part
        # each user's last max_len + 1 training items (left-padded): what real-user subsets are drawn from
        self.user_sequences = torch.from_numpy(
            left_padded_windows(seq["items"], starts, ends - 2, self.inner.max_len + 1)).long()
        negatives = {}
        for split in ("val", "test"):
            tensors = dict(getattr(self.inner, f"{split}_set").tensors)
            neg = self._negatives(split)  # every item of the user's whole sequence is excluded
            tensors[B.NEGATIVES] = torch.from_numpy(neg).long()
            negatives[split] = neg
            setattr(self, f"{split}_set", TensorBatchDataset(tensors))
        self.negatives_hash = arrays_hash(negatives)
        self.data_hash = f"{self.inner.data_hash}-{self.negatives_hash}"

    def model_kwargs(self) -> dict:
        if getattr(self, "train_set", None) is None:
            self.setup()
        return {"num_items": self.num_items, "max_len": self.max_len}

    def describe(self) -> dict:
        return {**self.inner.describe(), "data_hash": self.data_hash, "negatives_hash": self.negatives_hash,
                "num_negatives": self.num_negatives, "negatives_seed": self.negatives_seed,
                "train_targets": int((self.train_set.tensors[B.TARGET_IDS] != B.PAD).sum()),
                "seqrec_dataset": self.seqrec_dataset}


@register_dataset("distill-ml-100k", family="distill")
class DistillML100K(DistillDataModule):
    seqrec_dataset = "ml-100k"


@register_dataset("distill-ml-1m", family="distill")
class DistillML1M(DistillDataModule):
    seqrec_dataset = "ml-1m"


@register_dataset("distill-synthetic", family="distill")
class DistillSynthetic(DistillDataModule):
    """The planted-successor synthetic seqrec data (no files)."""

    seqrec_dataset = "synthetic-seqrec"
