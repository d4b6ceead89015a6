"""MLLM-MSR's evaluation protocol over any per-user item sequence with item text.

Users (not interactions) are split 80/10/10 at random (`split_seed`, 42 as in the official `split.py`). A user's
target is their last item and their history the `max_history` items before it (10 as in the official Amazon
processing: 10 history + 1 target). Training users give `train_windows` samples each, the last one first (1 = the
paper; more windows slide the target back one item each). Every sample is scored on 1 positive + k negatives: k =
`train_negatives` in training (1 = the paper's 1:1), `num_eval_negatives` in validation and test (20 = the paper's
1 + 20). Negatives are drawn uniformly, without repeats, from the items the user never interacted with (never the
positive, never a history item), once per split from `negative_seed`, cached, and their hash recorded.

A subclass implements `load_sequences()`: per-interaction user and item arrays in time order per user, and the
items' texts (what the item summariser reads; the offline encoder embeds them).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from contracts.atomic import save_cache
from contracts.batch import mllmrec as B
from datamodules.base import DataError, PaperboardDataModule, TensorBatchDataset, arrays_hash, load_cache
from datamodules.text import embed_texts, text_hash_entry, text_identity

SPLITS = ("train", "val", "test")


def sample_negatives(users: np.ndarray, seen_keys: np.ndarray, num_items: int, k: int,
                     rng: np.random.Generator) -> np.ndarray:
    """[S, k] item ids in 1..num_items, distinct per row, none with key user * (num_items + 1) + item in
    `seen_keys` (sorted). One vectorised redraw per column until every row is valid."""
    out = np.zeros((len(users), k), dtype=np.int64)
    base = users.astype(np.int64) * (num_items + 1)

    def bad(rows: np.ndarray, items: np.ndarray, column: int) -> np.ndarray:
        keys = base[rows] + items
        pos = np.searchsorted(seen_keys, keys).clip(max=len(seen_keys) - 1)
        clash = seen_keys[pos] == keys
        if column:
            clash |= (out[rows, :column] == items[:, None]).any(axis=1)
        return clash

    for column in range(k):  # columns, not samples: each pass is vectorised over the rows still to fill
        rows = np.arange(len(users))
        for _ in range(1000):
            if not len(rows):
                break
            items = rng.integers(1, num_items + 1, size=len(rows))
            clash = bad(rows, items, column)
            out[rows[~clash], column] = items[~clash]
            rows = rows[clash]
        else:
            raise DataError(f"could not draw {k} negatives for some users: too few items they have not seen "
                            f"({num_items} items); lower the number of negatives")
    return out


class MLLMRecDataModule(PaperboardDataModule):
    text_source: str = "none"

    def __init__(self, data_dir: str | None = None, max_history: int = 10, num_eval_negatives: int = 20,
                 train_negatives: int = 1, train_windows: int = 1, split: tuple[float, float, float] = (0.8, 0.1, 0.1),
                 split_seed: int = 42, negative_seed: int = 0, max_users: int = 0, text_encoder: str = "auto",
                 tfidf_dim: int = 64, batch_size: int = 128, eval_batch_size: int = 512, num_workers: int = 0):
        super().__init__(data_dir, batch_size, eval_batch_size, num_workers)
        if max_history < 1 or num_eval_negatives < 1 or train_negatives < 1 or train_windows < 1:
            raise ValueError("max_history, num_eval_negatives, train_negatives and train_windows must be >= 1")
        if len(split) != 3 or abs(sum(split) - 1.0) > 1e-6 or min(split) <= 0:
            raise ValueError(f"split must be three positive fractions (train, val, test) summing to 1, got {split}")
        self.max_history, self.num_eval_negatives = max_history, num_eval_negatives
        self.train_negatives, self.train_windows = train_negatives, train_windows
        self.split, self.split_seed, self.negative_seed = tuple(split), split_seed, negative_seed
        self.max_users, self.text_encoder, self.tfidf_dim = max_users, text_encoder, tfidf_dim
        self.facts: dict = {}
        self._texts: list[str] | None = None
        self._text_embeddings: np.ndarray | None = None
        self.num_items = 0

    # ----- what a subclass provides ------------------------------------------------------------------------------
    def load_sequences(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(user [I], item [I] with ids 1..N, in time order within each user; texts [N+1], texts[0] = "")."""
        raise NotImplementedError

    def source_identity(self) -> str:
        """A string that changes when the source files change (keys the caches)."""
        raise NotImplementedError

    def planted_text_embeddings(self) -> np.ndarray | None:
        """Synthetic data gives its item vectors directly; real data embeds its texts."""
        return None

    # ----- setup ---------------------------------------------------------------------------------------------------
    def settings(self) -> dict:
        return {"max_history": self.max_history, "num_eval_negatives": self.num_eval_negatives,
                "train_negatives": self.train_negatives, "train_windows": self.train_windows,
                "split": list(self.split), "split_seed": self.split_seed, "negative_seed": self.negative_seed,
                "max_users": self.max_users}

    def setup(self, stage: str | None = None) -> None:
        if self.data_hash is not None:
            return
        key = hashlib.sha1(json.dumps([self.source_identity(), self.settings()], sort_keys=True).encode()).hexdigest()
        path = self.cache_dir / f"mllmrec-{key[:16]}.npz"
        arrays = load_cache(path)
        users, items, texts = self.load_sequences()
        if arrays is None:
            arrays = self.build(users, items, len(texts) - 1)
            save_cache(path, arrays)
        self.num_items = len(texts) - 1
        self._texts = texts
        planted = self.planted_text_embeddings()
        identity = np.zeros(0, np.uint8)
        if planted is not None:
            emb, used = planted.astype(np.float32), "planted"
        else:
            emb, used = embed_texts(texts[1:], self.text_encoder, self.cache_dir, tfidf_dim=self.tfidf_dim)
            emb = np.concatenate([np.zeros((1, emb.shape[1]), np.float32), np.asarray(emb, np.float32)])
            identity = text_identity(texts[1:], used, self.tfidf_dim)
        self._text_embeddings = emb
        sets = {}
        for split in SPLITS:
            sets[split] = TensorBatchDataset({
                B.HISTORY: torch.from_numpy(arrays[f"{split}_history"]),
                B.CANDIDATES: torch.from_numpy(np.concatenate([arrays[f"{split}_positive"][:, None],
                                                               arrays[f"{split}_negatives"]], axis=1)),
                B.USER: torch.from_numpy(arrays[f"{split}_user"])})
        self.train_set, self.val_set, self.test_set = sets["train"], sets["val"], sets["test"]
        self.data_hash = arrays_hash({**arrays, "text": text_hash_entry(emb, identity)})
        self.facts = {
            "users": int(len(np.unique(users))),
            "users_kept": int(sum(len(np.unique(arrays[f"{s}_user"])) for s in SPLITS)),
            "items": self.num_items, "interactions": int(len(items)),
            **{f"{s}_samples": len(sets[s]) for s in SPLITS},
            **{f"{s}_negatives_hash": arrays_hash({"negatives": arrays[f"{s}_negatives"]}) for s in SPLITS},
            "text_encoder": used, "text_dim": int(emb.shape[1]), "text_source": self.text_source,
            "items_without_text": int(sum(1 for t in texts[1:] if not t)),
        }

    def build(self, users: np.ndarray, items: np.ndarray, num_items: int) -> dict[str, np.ndarray]:
        """The three splits' samples and negatives (vectorised over users and samples)."""
        users = np.asarray(users)
        uniq, user_idx = np.unique(users, return_inverse=True)
        order = np.argsort(user_idx, kind="stable")  # keeps time order within a user
        user_idx, items = user_idx[order], np.asarray(items, dtype=np.int64)[order]
        num_users = len(uniq)
        if items.min() < 1 or items.max() > num_items:
            raise DataError(f"item ids must lie in 1..{num_items} (one text per item)")
        counts = np.bincount(user_idx, minlength=num_users)
        if (counts < 2).any():
            raise DataError(f"{int((counts < 2).sum())} users have fewer than 2 interactions; every user needs a "
                            f"history and a target")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rng = np.random.default_rng(self.split_seed)
        chosen = rng.permutation(num_users)
        if self.max_users:
            chosen = chosen[:self.max_users]
        n_train = int(round(self.split[0] * len(chosen)))
        n_val = int(round(self.split[1] * len(chosen)))
        members = {"train": np.sort(chosen[:n_train]), "val": np.sort(chosen[n_train:n_train + n_val]),
                   "test": np.sort(chosen[n_train + n_val:])}
        if min(len(m) for m in members.values()) == 0:
            raise DataError(f"{len(chosen)} users are too few for a {self.split} user split; use more users")
        seen = np.unique(user_idx.astype(np.int64) * (num_items + 1) + items)
        out: dict[str, np.ndarray] = {}
        for i, split in enumerate(SPLITS):
            u = members[split]
            windows = self.train_windows if split == "train" else 1
            # target positions: the user's last `windows` items, each needing at least one item of history
            back = np.arange(windows)
            target = (starts[u] + counts[u] - 1)[:, None] - back[None, :]
            valid = target > starts[u][:, None]
            su = np.repeat(u, windows)[valid.ravel()]
            target = target.ravel()[valid.ravel()]
            offsets = np.arange(-self.max_history, 0)
            pos = target[:, None] + offsets[None, :]
            history = np.where(pos >= starts[su][:, None], items[pos.clip(min=0)], B.PAD)
            k = self.train_negatives if split == "train" else self.num_eval_negatives
            negatives = sample_negatives(su, seen, num_items, k,
                                         np.random.default_rng([self.negative_seed, i]))
            out.update({f"{split}_history": history.astype(np.int64), f"{split}_positive": items[target],
                        f"{split}_negatives": negatives, f"{split}_user": su.astype(np.int64)})
        return out

    # ----- what models read ----------------------------------------------------------------------------------------
    def item_text_embeddings(self) -> torch.Tensor:
        if self._text_embeddings is None:
            raise RuntimeError("call setup() before item_text_embeddings()")
        return torch.from_numpy(self._text_embeddings)

    def item_texts(self) -> list[str]:
        if self._texts is None:
            raise RuntimeError("call setup() before item_texts()")
        return self._texts

    def model_kwargs(self) -> dict:
        self.setup("fit")
        return {"num_items": self.num_items, "max_history": self.max_history,
                "text_dim": int(self._text_embeddings.shape[1])}

    def describe(self) -> dict:
        return {"data_hash": self.data_hash, **self.facts, **self.settings()}


def read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="latin-1").splitlines()
