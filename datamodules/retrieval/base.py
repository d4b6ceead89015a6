"""The retrieval datamodule base: per-user item sequences -> (history, next item) samples and item side information.

A subclass provides the interactions (`sequences()`: items 1..N per user in time order, as flat `items` and
`offsets`) and, where the data has them, item texts and attribute lists (`item_metadata()`). The split is
leave-one-out like the seqrec boards: a user's last item is the test target, the one before it the validation
target, and every earlier item after the first is a training target with the (up to `max_len`) items before it as
its history. Evaluation filters every item the user saw before the target.

Item side information, built once and cached with the data:
- `attributes`: multi-hot over the dataset's attribute vocabulary (genres, release decade, category, brand);
- `text`: sentence embeddings of each item's text (`text_encoder`: the offline all-MiniLM-L6-v2 when installed,
  else TF-IDF + SVD), zero rows for items without text;
- `behaviour`: item factors from the training part only (truncated SVD of the positive PMI of items that follow
  each other within `behaviour_window` positions), so no validation or test interaction leaks into them;
- `count`: how often each item is a training target (the popularity that samplers and logQ correction use).
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch

from contracts.atomic import save_cache
from contracts.batch import retrieval as R
from datamodules.base import DataError, PaperboardDataModule, TensorBatchDataset, arrays_hash, load_cache
from datamodules.text import embed_texts, resolve_encoder, text_hash_entry, text_identity
from datamodules.seqrec.base import left_padded_windows

FEATURES = ("attributes", "text", "behaviour", "count", "seen_items", "user_starts")


def training_targets(offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(user, position) of every training target: positions starts+1 .. ends-3 (the last two are val and test)."""
    starts, train_end = offsets[:-1], offsets[1:] - 2
    per_user = np.maximum(train_end - starts - 1, 0)
    user = np.repeat(np.arange(len(starts)), per_user)
    first = np.repeat(starts + 1, per_user)
    within = np.arange(per_user.sum()) - np.repeat(np.cumsum(per_user) - per_user, per_user)
    return user, first + within


def behaviour_factors(items: np.ndarray, offsets: np.ndarray, num_items: int, dim: int, window: int,
                      seed: int = 0) -> np.ndarray:
    """[N+1, dim] factors of the positive PMI of (item, item within `window` later) pairs in the training parts."""
    from scipy import sparse
    from sklearn.decomposition import TruncatedSVD

    starts, train_end = offsets[:-1], offsets[1:] - 2
    user = np.repeat(np.arange(len(starts)), offsets[1:] - offsets[:-1])
    in_train = np.arange(len(items)) < train_end[user]
    rows, cols = [], []
    for gap in range(1, window + 1):  # a few vectorised passes, one per distance
        a = np.arange(len(items) - gap)
        ok = in_train[a] & in_train[a + gap] & (user[a] == user[a + gap])
        rows.append(items[a[ok]])
        cols.append(items[a[ok] + gap])
    r, c = np.concatenate(rows), np.concatenate(cols)
    co = sparse.coo_matrix((np.ones(len(r) * 2, dtype=np.float64), (np.concatenate([r, c]), np.concatenate([c, r]))),
                           shape=(num_items + 1, num_items + 1)).tocsr()
    co.sum_duplicates()
    total = co.sum()
    marg = np.asarray(co.sum(axis=1)).ravel()
    coo = co.tocoo()
    pmi = np.log(coo.data * total / (marg[coo.row] * marg[coo.col]))
    keep = pmi > 0
    ppmi = sparse.csr_matrix((pmi[keep], (coo.row[keep], coo.col[keep])), shape=co.shape)
    k = max(1, min(dim, num_items - 1))
    factors = TruncatedSVD(n_components=k, random_state=seed).fit_transform(ppmi).astype(np.float32)
    factors /= np.linalg.norm(factors, axis=1, keepdims=True).clip(1e-8)
    factors[0] = 0.0
    return np.pad(factors, ((0, 0), (0, dim - k)))


class RetrievalDataModule(PaperboardDataModule):

    def __init__(self, data_dir: str | None = None, max_len: int = 50, batch_size: int = 512,
                 eval_batch_size: int = 1024, text_encoder: str = "auto", behaviour_dim: int = 32,
                 behaviour_window: int = 3, num_workers: int = 0):
        super().__init__(data_dir, batch_size, eval_batch_size, num_workers)
        if max_len < 1 or behaviour_dim < 1 or behaviour_window < 1:
            raise ValueError("max_len, behaviour_dim and behaviour_window must be >= 1")
        resolve_encoder(text_encoder)  # fails now, with the fix, if the encoder is unknown or missing
        self.max_len = max_len
        self.text_encoder = text_encoder
        self.behaviour_dim = behaviour_dim
        self.behaviour_window = behaviour_window
        self.num_items: int | None = None
        self._features: dict[str, torch.Tensor] | None = None

    # ----- what a subclass provides ----------------------------------------------------------------------
    def sequences(self) -> dict[str, np.ndarray]:
        """`items` (ids 1..N, int64, users' items in time order, concatenated), `offsets` [U+1], `raw_item_ids` [N]
        (the source's id of item i+1), each user with at least 3 items."""
        raise NotImplementedError

    def item_metadata(self, raw_item_ids: np.ndarray) -> tuple[list[str] | None, list[list[str]]]:
        """Per item (aligned with `raw_item_ids`): its text (None when the data has none) and attribute tokens."""
        return None, [[] for _ in raw_item_ids]

    def cache_key(self) -> str:
        """Names the source and options so another file or option never reads a stale cache."""
        return self.registry_name

    # ----- shared pipeline -----------------------------------------------------------------------------
    def prepare_data(self) -> None:
        self._prepared()

    def _prepared(self) -> dict[str, np.ndarray]:
        key = hashlib.sha1(f"{self.cache_key()}|{self.text_encoder}|{self.behaviour_dim}|{self.behaviour_window}|v2"
                           .encode()).hexdigest()[:12]
        path = self.cache_dir / f"{self.registry_name}-retrieval-{key}.npz"
        cached = load_cache(path)
        if cached is not None:
            return cached
        seq = self.sequences()
        items, offsets = np.asarray(seq["items"], dtype=np.int64), np.asarray(seq["offsets"], dtype=np.int64)
        if len(offsets) < 2 or ((offsets[1:] - offsets[:-1]) < 3).any():
            raise DataError(f"{self.registry_name}: every user needs >= 3 items (train, validation, test)")
        num_items = len(seq["raw_item_ids"])
        texts, attributes = self.item_metadata(seq["raw_item_ids"])
        arrays = {"items": items, "offsets": offsets, "raw_item_ids": np.asarray(seq["raw_item_ids"])}
        vocab = sorted({a for attrs in attributes for a in attrs})
        multi_hot = np.zeros((num_items + 1, max(len(vocab), 1)), dtype=np.float32)
        if vocab:
            index = {a: i for i, a in enumerate(vocab)}
            rows = np.repeat(np.arange(1, num_items + 1), [len(a) for a in attributes])
            cols = np.array([index[a] for attrs in attributes for a in attrs], dtype=np.int64)
            multi_hot[rows, cols] = 1.0
        arrays["attributes"] = multi_hot
        no_text = np.zeros(num_items, bool) if texts is None else np.array([not t for t in texts])
        arrays["items_without_metadata"] = np.array(int((no_text & ~multi_hot[1:].any(1)).sum()))
        if texts is not None:
            emb, used = embed_texts(list(texts), self.text_encoder, self.cache_dir)
            emb[np.array([not t for t in texts])] = 0.0  # no text: a zero vector, not the encoding of ""
            arrays["text"] = np.concatenate([np.zeros((1, emb.shape[1]), np.float32), emb])
            arrays["text_encoder_used"] = np.array(used)
            arrays["text_identity"] = text_identity(list(texts), used)
        else:
            arrays["text"] = np.zeros((num_items + 1, 1), np.float32)
            arrays["text_encoder_used"] = np.array("none")
            arrays["text_identity"] = np.zeros(0, np.uint8)
        arrays["behaviour"] = behaviour_factors(items, offsets, num_items, self.behaviour_dim, self.behaviour_window)
        _, positions = training_targets(offsets)
        arrays["count"] = np.bincount(items[positions], minlength=num_items + 1).astype(np.float32)
        save_cache(path, arrays)
        return arrays

    def setup(self, stage: str | None = None) -> None:
        if getattr(self, "train_set", None) is not None:
            return
        data = self._prepared()
        items, offsets = data["items"], data["offsets"]
        starts, ends = offsets[:-1], offsets[1:]
        self.num_items = int(len(data["raw_item_ids"]))
        self.num_users = len(starts)
        L = self.max_len
        user, position = training_targets(offsets)
        if len(position) == 0:
            raise DataError(f"{self.registry_name}: no training targets (every user has exactly 3 items)")
        train = {R.HISTORY: left_padded_windows(items, starts[user], position, L), R.TARGET: items[position]}
        users = np.arange(self.num_users)
        val = {R.HISTORY: left_padded_windows(items, starts, ends - 2, L), R.TARGET: items[ends - 2],
               R.USER: users, R.SEEN_END: ends - 2}
        test = {R.HISTORY: left_padded_windows(items, starts, ends - 1, L), R.TARGET: items[ends - 1],
                R.USER: users, R.SEEN_END: ends - 1}
        self.data_hash = arrays_hash({**{f"train/{k}": v for k, v in train.items()},
                                      **{f"test/{k}": v for k, v in test.items()},
                                      "attributes": data["attributes"],
                                      "text": text_hash_entry(data["text"], data.get("text_identity"))})
        as_tensors = lambda split: {k: torch.from_numpy(np.ascontiguousarray(v)).long() for k, v in split.items()}
        self.train_set = TensorBatchDataset(as_tensors(train))
        self.val_set = TensorBatchDataset(as_tensors(val))
        self.test_set = TensorBatchDataset(as_tensors(test))
        self.num_interactions = int(len(items))
        self.text_encoder_used = str(data["text_encoder_used"])
        self.items_without_metadata = int(data.get("items_without_metadata", 0))
        self._features = {
            "attributes": torch.from_numpy(data["attributes"]), "text": torch.from_numpy(data["text"]),
            "behaviour": torch.from_numpy(data["behaviour"]), "count": torch.from_numpy(data["count"]),
            "seen_items": torch.from_numpy(items), "user_starts": torch.from_numpy(starts.copy()),
        }

    def item_features(self) -> dict[str, torch.Tensor]:
        """Side information over every item id and the users' seen lists (see the batch format)."""
        if self._features is None:
            self.setup()
        return self._features

    def model_kwargs(self) -> dict:
        features = self.item_features()
        return {"num_items": self.num_items, "num_attributes": int(features["attributes"].shape[1]),
                "text_dim": int(features["text"].shape[1]), "behaviour_dim": self.behaviour_dim,
                "max_len": self.max_len}

    def describe(self) -> dict:
        return {"data_hash": self.data_hash, "users": self.num_users, "items": self.num_items,
                "interactions": self.num_interactions, "train_rows": len(self.train_set), "max_len": self.max_len,
                "text_encoder": self.text_encoder_used, "items_without_metadata": self.items_without_metadata,
                "attributes": int(self._features["attributes"].shape[1]) if self._features else None}
