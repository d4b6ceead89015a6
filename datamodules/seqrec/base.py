"""The seqrec datamodule base: per-user time-ordered sequences -> leave-one-out splits -> padded tensors.

A subclass only loads its source into flat arrays (`load_interactions`): user, item (raw ids) and, where the data
has them, timestamps, in the order the interactions happened. Everything after that is shared and vectorised:
stable time ordering (ties keep file order, so the split never depends on sort internals), item re-indexing to
1..n, leave-one-out with a validation item (train = all but the last two, val target = second-last,
test target = last), left-padded windows of `max_len` built with one numpy gather, and a cache.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from contracts.atomic import save_cache
from contracts.batch import seqrec as B
from datamodules.base import DataError, PaperboardDataModule, TensorBatchDataset, arrays_hash, load_cache

TRAIN_WINDOWS = ("last", "all")


def left_padded_windows(values: np.ndarray, starts: np.ndarray, ends: np.ndarray, length: int) -> np.ndarray:
    """Row u holds values[max(starts[u], ends[u]-length) : ends[u]], right-aligned, zero-filled on the left."""
    index = ends[:, None] - length + np.arange(length)[None, :]
    valid = index >= starts[:, None]
    out = values[np.clip(index, 0, None)]
    out[~valid] = 0
    return out


class SeqRecDataModule(PaperboardDataModule):

    def __init__(self, data_dir: str | None = None, max_len: int = 50, batch_size: int = 128,
                 eval_batch_size: int = 256, min_seq_len: int = 3, train_windows: str = "last",
                 num_workers: int = 0):
        super().__init__(data_dir, batch_size, eval_batch_size, num_workers)
        if train_windows not in TRAIN_WINDOWS:
            raise ValueError(f"train_windows must be one of {TRAIN_WINDOWS}, got {train_windows!r}")
        if min_seq_len < 3:
            raise ValueError("min_seq_len must be >= 3: leave-one-out needs a training pair, a val and a test item")
        self.max_len = max_len
        self.min_seq_len = min_seq_len
        self.train_windows = train_windows
        self.num_items: int | None = None
        self.num_users: int | None = None
        self.has_time: bool | None = None

    # ----- what a subclass provides ----------------------------------------------------------------------
    def source_file(self) -> Path:
        """The source file (found, checked or downloaded with `require_file`)."""
        raise NotImplementedError

    def load_interactions(self, path: Path) -> dict[str, np.ndarray]:
        """Flat arrays `user`, `item` (raw ids, any integer), optional `time` (int seconds); rows in the order the
        interactions happened within each user (ties in time keep this order)."""
        raise NotImplementedError

    # ----- shared pipeline -----------------------------------------------------------------------------
    def prepare_data(self) -> None:
        self._sequences()

    def _sequences(self) -> dict[str, np.ndarray]:
        source = self.source_file()
        stat = source.stat()
        # The key names the exact source file (path, size, mtime) and the options, so a replaced file or another
        # data dir never reads a stale cache.
        identity = hashlib.sha1(f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
        path = self.cache_dir / f"{self.registry_name}-{source.name}-{identity}-min{self.min_seq_len}.npz"
        cached = load_cache(path)
        if cached is not None:
            return cached
        arrays = self.sequences_from_interactions(self.load_interactions(source))
        save_cache(path, arrays)
        return arrays

    def sequences_from_interactions(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        user, item = np.asarray(raw["user"]), np.asarray(raw["item"])
        if len(user) == 0:
            raise DataError(f"{self.registry_name}: the source has no interactions")
        time = raw.get("time")
        # Stable sort by (user, time): same-time items keep their source order, deterministically.
        order = np.lexsort((np.arange(len(user)), time, user)) if time is not None else np.argsort(user, kind="stable")
        user, item = user[order], item[order]
        time = time[order].astype(np.int64) if time is not None else None
        _, user_start, counts = np.unique(user, return_index=True, return_counts=True)
        keep_user = counts >= self.min_seq_len
        if not keep_user.any():
            raise DataError(f"{self.registry_name}: no user has >= {self.min_seq_len} interactions; the splits "
                            f"would be empty. Lower min_seq_len or check the file.")
        row_keep = np.repeat(keep_user, counts)
        user, item = user[row_keep], item[row_keep]
        time = time[row_keep] if time is not None else None
        counts = counts[keep_user]
        raw_items, item_index = np.unique(item, return_inverse=True)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        arrays = {"items": (item_index + 1).astype(np.int64), "offsets": offsets, "raw_item_ids": raw_items}
        if time is not None:
            arrays["times"] = time
        return arrays

    def setup(self, stage: str | None = None) -> None:
        if getattr(self, "train_set", None) is not None:
            return
        seq = self._sequences()
        items, offsets = seq["items"], seq["offsets"]
        times = seq.get("times")
        self.has_time = times is not None  # sources without timestamps: time channels must be off
        self.num_items = int(len(seq["raw_item_ids"]))
        self.num_users = len(offsets) - 1
        starts, ends = offsets[:-1], offsets[1:]
        L = self.max_len
        train_end = ends - 2  # exclusive end of each user's training part

        # Training rows: inputs are the train part minus its last item, targets the train part shifted by one.
        if self.train_windows == "last":
            row_start, row_end = starts, train_end
        else:  # non-overlapping windows of L targets, ending at the end of the training part
            n_windows = np.maximum(1, -(-(train_end - starts - 1) // L))
            row_start = np.repeat(starts, n_windows)
            within = np.arange(n_windows.sum()) - np.repeat(np.cumsum(n_windows) - n_windows, n_windows)
            row_end = np.repeat(train_end, n_windows) - (np.repeat(n_windows, n_windows) - 1 - within) * L
        train = {
            B.INPUT_IDS: left_padded_windows(items, row_start, row_end - 1, L),
            B.TARGET_IDS: left_padded_windows(items, row_start + 1, row_end, L),
        }
        val = {B.INPUT_IDS: left_padded_windows(items, starts, train_end, L), B.TARGET: items[train_end]}
        test = {B.INPUT_IDS: left_padded_windows(items, starts, ends - 1, L), B.TARGET: items[ends - 1]}
        if times is not None:
            train[B.TIMESTAMPS] = left_padded_windows(times, row_start, row_end - 1, L)
            train[B.NEXT_TIMESTAMPS] = left_padded_windows(times, row_start + 1, row_end, L)
            val[B.TIMESTAMPS] = left_padded_windows(times, starts, train_end, L)
            val[B.NEXT_TIMESTAMPS] = left_padded_windows(times, starts + 1, train_end + 1, L)
            test[B.TIMESTAMPS] = left_padded_windows(times, starts, ends - 1, L)
            test[B.NEXT_TIMESTAMPS] = left_padded_windows(times, starts + 1, ends, L)
        for split in (val, test):
            split[B.SAMPLE_IDX] = np.arange(self.num_users)
        self.data_hash = arrays_hash({**{f"train/{k}": v for k, v in train.items()},
                                      **{f"val/{k}": v for k, v in val.items()},
                                      **{f"test/{k}": v for k, v in test.items()}})
        to_tensors = lambda split: {k: torch.from_numpy(np.ascontiguousarray(v)).long() for k, v in split.items()}
        self.train_set = TensorBatchDataset(to_tensors(train))
        self.val_set = TensorBatchDataset(to_tensors(val))
        self.test_set = TensorBatchDataset(to_tensors(test))
        self.num_interactions = int(len(items))

    def model_kwargs(self) -> dict:
        if self.num_items is None:
            self.setup()
        return {"num_items": self.num_items, "max_len": self.max_len}

    def describe(self) -> dict:
        return {"data_hash": self.data_hash, "users": self.num_users, "items": self.num_items,
                "interactions": self.num_interactions, "train_rows": len(self.train_set),
                "has_time": self.has_time, "max_len": self.max_len, "train_windows": self.train_windows}
