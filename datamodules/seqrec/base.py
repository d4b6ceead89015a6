"""The seqrec datamodule base: per-user time-ordered sequences -> leave-one-out splits -> padded tensors.

A subclass only loads its source into flat arrays (`load_interactions`): user, item (raw ids) and, where the data
has them, timestamps, in the order the interactions happened. Everything after that is shared and vectorised:
stable time ordering (ties keep file order, so the split never depends on sort internals), item re-indexing to
1..n, leave-one-out, left-padded windows of `max_len` built with one numpy gather, and a cache.

Two protocol switches, so that one datamodule serves the validated protocol and the reference ones:
- `validation_item=True` (default): train = all but the last two items, val target = second-last, test target =
  last. `validation_item=False` is the generative-recommenders (HSTU) protocol: train = all but the last item and
  no validation item; its one evaluation set (history = all but last, target = last) is both the val and the test
  split, as the official trainer evaluates that set after every epoch and reports from it.
- `train_windows`: "last" (one row per user: the last `max_len` targets of its training part, a target at every
  position), "all" (non-overlapping windows covering every training target once), or "prefixes" (RecBole's
  sequential augmentation: every prefix of the training part is one sample whose only target is the item after
  it, so a user with n training items gives n - 1 rows).

The interaction table is kept as int32 codes wherever ids fit (users and items as categorical codes, one
stable lexsort), so a 20M-row table is preprocessed in a few GB.

`length_grouped=True` (off by default) makes a batch cost its longest row instead of `max_len`: training batches
group rows of similar length (`LengthGroupedBatchSampler`), evaluation rows are ordered by length, and every batch
drops the leading columns that are padding in all its rows (`trim_left_padding`, exact for every seqrec model), and
a training batch carries a `loss_scale` that keeps each target's weight in the loss what plain batching gives it.
On short-sequence data (Amazon Beauty: median 3 training targets, 50-item windows) an epoch costs a fraction; the
price is batches of like-length users instead of uniformly drawn ones (Hugging Face's `group_by_length`).

Item side information (`item_features=True`, on datasets whose subclass implements `item_metadata`): a per-item
feature table in the format of `contracts.batch.seqrec` (token slots per field, a text embedding), built once from
the dataset's item file and cached, returned by `item_features()`. It enters the data hash only when it is on, so
a board without features keeps its hash and its batches.
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, Sampler

from contracts.atomic import save_cache
from contracts.batch import seqrec as B
from contracts.batch.seqrec import FIELD_SIZES, ITEM_TEXT, ITEM_TOKENS, SLOT_FIELD
from datamodules.base import DataError, PaperboardDataModule, TensorBatchDataset, arrays_hash, load_cache

TRAIN_WINDOWS = ("last", "all", "prefixes")


def trim_left_padding(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch without its leading columns that are padding in every row: each [B, L] tensor keeps its last
    `longest row` columns (at least one). Exact for the family's models: learned positions count from the window's
    right end (`window_positions`) or from each row's first item, and attention masks, relative biases and rotary
    embeddings depend on relative positions only."""
    ids = batch[B.INPUT_IDS]
    present = (ids != B.PAD).any(0)
    first = int(present.float().argmax()) if bool(present.any()) else ids.shape[1] - 1  # argmax: the first True
    if first == 0:
        return batch
    width = ids.shape[1]
    return {k: v[:, first:] if v.dim() == 2 and v.shape[1] == width else v for k, v in batch.items()}


def trim_and_weigh(batch: dict[str, torch.Tensor], mean_targets: float) -> dict[str, torch.Tensor]:
    """A length-grouped training batch: trimmed, with `loss_scale` = its target count / `mean_targets`. A batch of
    short rows holds few targets; averaged over them, each would weigh many times what it weighs in a plain batch of
    uniformly drawn rows. The scale turns the batch mean into the sum over the epoch's mean count."""
    batch = trim_left_padding(batch)
    targets = (batch[B.TARGET_IDS] != B.PAD).sum()
    return {**batch, B.LOSS_SCALE: targets.float() / mean_targets}


class LengthGroupedBatchSampler(BatchSampler):
    """Batches of rows of similar length: the sampler's order is cut into groups of `group_batches` batches, each
    group is sorted by length (longest first) and cut into batches, and the epoch's batches are shuffled (the
    megabatch scheme of Hugging Face's `group_by_length`). Every row appears once per epoch, as with plain batching."""

    def __init__(self, sampler: Sampler, batch_size: int, drop_last: bool, lengths: torch.Tensor,
                 group_batches: int = 50):
        super().__init__(sampler, batch_size, drop_last)
        self.lengths = lengths
        self.group_batches = group_batches

    def __iter__(self):
        order = torch.as_tensor(list(self.sampler), dtype=torch.long)
        span = self.batch_size * self.group_batches
        batches = []
        for start in range(0, len(order), span):  # a loop over groups (tens per epoch), not rows
            group = order[start:start + span]
            group = group[torch.argsort(self.lengths[group], descending=True, stable=True)]
            batches.extend(group.split(self.batch_size))
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        for i in torch.randperm(len(batches)).tolist():
            yield batches[i].tolist()


@dataclass
class ItemMetadata:
    """What a dataset knows about its items, aligned with `raw_item_ids`: per field, each item's values (any
    hashable, an empty list when the item lacks the field), and either texts to embed (an empty string = no text) or
    ready-made embeddings (synthetic data). `text_source` says in words what the text is; `notes` holds counts the
    board states (e.g. items whose alignment was ambiguous)."""

    fields: dict[str, list[list]]
    texts: list[str] | None = None
    text_embeddings: np.ndarray | None = None
    text_source: str = "none"
    notes: dict = field(default_factory=dict)


def encode_fields(fields: dict[str, list[list]], num_items: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-field value lists -> (item_tokens [N+1, S], slot_field [S], field_sizes [F]) in the contract's format.

    Each field's values are sorted (as strings) into its vocabulary; field f owns ids offset_f + 1 .. offset_f +
    size_f of one shared range, and a field whose items hold up to m values gets m slots. Repeated values within an
    item are kept once. One pass of numpy per field, no per-item Python beyond flattening the lists."""
    blocks, slot_field, sizes, offset = [], [], [], 0
    for index, values in enumerate(fields.values()):
        if len(values) != num_items:
            raise DataError(f"item metadata has {len(values)} rows for {num_items} items")
        unique = [list(dict.fromkeys(v)) for v in values]
        lengths = np.fromiter((len(v) for v in unique), dtype=np.int64, count=num_items)
        flat = np.asarray([str(x) for v in unique for x in v], dtype=str)
        vocab, codes = np.unique(flat, return_inverse=True) if len(flat) else (np.empty(0, str), np.empty(0, np.int64))
        slots = max(int(lengths.max(initial=0)), 1)
        block = np.zeros((num_items + 1, slots), dtype=np.int64)
        rows = np.repeat(np.arange(1, num_items + 1), lengths)
        cols = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        block[rows, cols] = codes.reshape(-1) + 1 + offset
        blocks.append(block)
        slot_field.extend([index] * slots)
        sizes.append(len(vocab))
        offset += len(vocab)
    return (np.concatenate(blocks, axis=1), np.asarray(slot_field, dtype=np.int64),
            np.asarray(sizes, dtype=np.int64))


def left_padded_windows(values: np.ndarray, starts: np.ndarray, ends: np.ndarray, length: int) -> np.ndarray:
    """Row u holds values[max(starts[u], ends[u]-length) : ends[u]], right-aligned, zero-filled on the left."""
    index = ends[:, None] - length + np.arange(length)[None, :]
    valid = index >= starts[:, None]
    out = values[np.clip(index, 0, None)]
    out[~valid] = 0
    return out


class SeqRecDataModule(PaperboardDataModule):
    # runs recorded before `train_windows` existed trained on each user's last window
    earlier_behaviour = {"train_windows": "last"}

    def __init__(self, data_dir: str | None = None, max_len: int = 50, batch_size: int = 128,
                 eval_batch_size: int = 256, min_seq_len: int = 3, train_windows: str = "last",
                 num_workers: int = 0, validation_item: bool = True, item_features: bool = False,
                 text_encoder: str = "auto", length_grouped: bool = False):
        super().__init__(data_dir, batch_size, eval_batch_size, num_workers)
        if train_windows not in TRAIN_WINDOWS:
            raise ValueError(f"train_windows must be one of {TRAIN_WINDOWS}, got {train_windows!r}")
        needed = 3 if validation_item else 2
        if min_seq_len < needed:
            raise ValueError(f"min_seq_len must be >= {needed}: leave-one-out needs a training pair and a test item"
                             + (" and a validation item" if validation_item else ""))
        self.max_len = max_len
        self.min_seq_len = min_seq_len
        self.train_windows = train_windows
        self.validation_item = bool(validation_item)
        self.num_items: int | None = None
        self.num_users: int | None = None
        self.has_time: bool | None = None
        self.use_item_features = bool(item_features)
        self.text_encoder = text_encoder
        self.length_grouped = bool(length_grouped)
        self._item_features: dict[str, torch.Tensor] | None = None
        self.feature_facts: dict = {}

    # ----- what a subclass provides ----------------------------------------------------------------------
    def source_file(self) -> Path:
        """The source file (found, checked or downloaded with `require_file`)."""
        raise NotImplementedError

    def load_interactions(self, path: Path) -> dict[str, np.ndarray]:
        """Flat arrays `user`, `item` (raw ids, any integer), optional `time` (int seconds); rows in the order the
        interactions happened within each user (ties in time keep this order)."""
        raise NotImplementedError

    def item_metadata(self, raw_item_ids: np.ndarray) -> ItemMetadata:
        """The items' side information, aligned with `raw_item_ids` (the source's ids of items 1..N)."""
        raise DataError(f"{self.registry_name} has no item side information; run it with item_features: false")

    def metadata_identity(self) -> str:
        """Names the metadata files (path, size, mtime), so a replaced file never reads a stale feature cache."""
        return ""

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
        """Flat interactions -> per-user item sequences (CSR: `items` int32 ids 1..n, `offsets`), vectorised.

        Users and items become categorical codes (pandas' hash factorisation, sorted, so item ids follow the
        raw ids' order); one stable sort on a packed (user, time) key orders every user's interactions by time,
        ties in file order."""
        user, item = np.asarray(raw["user"]), np.asarray(raw["item"])
        if len(user) == 0:
            raise DataError(f"{self.registry_name}: the source has no interactions")
        if len(item) != len(user):
            raise DataError(f"{self.registry_name}: {len(user)} users but {len(item)} items; every interaction "
                            f"needs both")
        time = raw.get("time")
        user_code, raw_users = pd.factorize(user, sort=True)
        user_code = user_code.astype(np.int32 if len(raw_users) < 2**31 else np.int64)
        order = self._time_order(user_code, None if time is None else np.asarray(time))
        counts = np.bincount(user_code, minlength=len(raw_users))
        keep_user = counts >= self.min_seq_len
        if not keep_user.any():
            raise DataError(f"{self.registry_name}: no user has >= {self.min_seq_len} interactions; the splits "
                            f"would be empty. Lower min_seq_len or check the file.")
        if not keep_user.all():
            order = order[keep_user[user_code[order]]]
        del user_code
        counts = counts[keep_user]
        item_code, raw_items = pd.factorize(item[order], sort=True)
        items = (item_code + 1).astype(np.int32 if len(raw_items) < 2**31 - 1 else np.int64)
        del item_code
        offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        arrays = {"items": items, "offsets": offsets, "raw_item_ids": np.asarray(raw_items)}
        if time is not None:
            arrays["times"] = np.asarray(time)[order].astype(np.int64)
        return arrays

    @staticmethod
    def _time_order(user_code: np.ndarray, time: np.ndarray | None) -> np.ndarray:
        """Row order by (user, time), stable: rows of one user at the same time keep their file order."""
        if time is None:
            return np.argsort(user_code, kind="stable")
        time = time.astype(np.int64, copy=False)
        t0, span = int(time.min()), int(time.max()) - int(time.min())
        if span < 2**32 and int(user_code.max()) < 2**31:  # pack both keys in one int64: one stable sort
            key = user_code.astype(np.int64) << 32
            key |= time - t0
            return np.argsort(key, kind="stable")
        return np.lexsort((time, user_code))  # lexsort is stable as well

    def setup(self, stage: str | None = None) -> None:
        if getattr(self, "train_set", None) is not None:
            return
        seq = self._sequences()
        items, offsets = seq["items"].astype(np.int64), seq["offsets"]
        times = seq.get("times")
        self.has_time = times is not None  # sources without timestamps: time channels must be off
        self.num_items = int(len(seq["raw_item_ids"]))
        self.num_users = len(offsets) - 1
        starts, ends = offsets[:-1], offsets[1:]
        L = self.max_len
        train_end = ends - 2 if self.validation_item else ends - 1  # exclusive end of each user's training part

        # Training rows: inputs are the train part minus its last item, targets the train part shifted by one.
        if self.train_windows == "last":
            row_start, row_end = starts, train_end
        elif self.train_windows == "all":  # non-overlapping windows of L targets, ending at the end of the training part
            n_windows = np.maximum(1, -(-(train_end - starts - 1) // L))
            row_start = np.repeat(starts, n_windows)
            within = np.arange(n_windows.sum()) - np.repeat(np.cumsum(n_windows) - n_windows, n_windows)
            row_end = np.repeat(train_end, n_windows) - (np.repeat(n_windows, n_windows) - 1 - within) * L
        else:  # "prefixes": row (u, t) ends after the t-th training item, t = 2..n_train; only its last target counts
            n_rows = train_end - starts - 1
            row_start = np.repeat(starts, n_rows)
            within = np.arange(n_rows.sum()) - np.repeat(np.cumsum(n_rows) - n_rows, n_rows)
            row_end = row_start + 2 + within
        train = {
            B.INPUT_IDS: left_padded_windows(items, row_start, row_end - 1, L),
            B.TARGET_IDS: left_padded_windows(items, row_start + 1, row_end, L),
        }
        if self.train_windows == "prefixes":
            train[B.TARGET_IDS][:, :-1] = B.PAD  # one sample = one prefix and its next item (RecBole)
        test = {B.INPUT_IDS: left_padded_windows(items, starts, ends - 1, L), B.TARGET: items[ends - 1]}
        val_end = ends - 2 if self.validation_item else ends - 1
        val = {B.INPUT_IDS: left_padded_windows(items, starts, val_end, L), B.TARGET: items[val_end]}
        if times is not None:
            train[B.TIMESTAMPS] = left_padded_windows(times, row_start, row_end - 1, L)
            train[B.NEXT_TIMESTAMPS] = left_padded_windows(times, row_start + 1, row_end, L)
            val[B.TIMESTAMPS] = left_padded_windows(times, starts, val_end, L)
            val[B.NEXT_TIMESTAMPS] = left_padded_windows(times, starts + 1, val_end + 1, L)
            test[B.TIMESTAMPS] = left_padded_windows(times, starts, ends - 1, L)
            test[B.NEXT_TIMESTAMPS] = left_padded_windows(times, starts + 1, ends, L)
        for split in (val, test):
            split[B.SAMPLE_IDX] = np.arange(self.num_users)
        hashed = {**{f"train/{k}": v for k, v in train.items()}, **{f"val/{k}": v for k, v in val.items()},
                  **{f"test/{k}": v for k, v in test.items()}}
        if self.use_item_features:  # only then: a board without features keeps its data hash
            table = self._feature_table(seq["raw_item_ids"])
            hashed.update({f"features/{k}": table[k] for k in (ITEM_TOKENS, SLOT_FIELD, FIELD_SIZES)})
            # encoded text enters as what it was computed from (machine-independent); a planted table as its values
            text_key = "text_identity" if table["text_identity"].size else ITEM_TEXT
            hashed[f"features/{text_key}"] = table[text_key]
            self._item_features = {k: torch.from_numpy(np.ascontiguousarray(table[k]))
                                   for k in (ITEM_TOKENS, SLOT_FIELD, FIELD_SIZES, ITEM_TEXT)}
        self.data_hash = arrays_hash(hashed)
        if self.length_grouped:  # evaluation metrics are means over users, so the row order is free
            for split in (val, test):
                order = np.argsort((split[B.INPUT_IDS] != B.PAD).sum(1), kind="stable")
                split.update({k: v[order] for k, v in split.items()})
        # int64 arrays become tensors without a copy
        to_tensors = lambda split: {k: torch.from_numpy(np.ascontiguousarray(v)).long() for k, v in split.items()}
        self.train_set = TensorBatchDataset(to_tensors(train))
        self.val_set = TensorBatchDataset(to_tensors(val))
        self.test_set = TensorBatchDataset(to_tensors(test))
        self.num_interactions = int(len(items))

    def _feature_table(self, raw_item_ids: np.ndarray) -> dict[str, np.ndarray]:
        """The contract's feature arrays and the facts about them (cached: text embedding is the slow part)."""
        key = hashlib.sha1(f"{self.metadata_identity()}|{self.text_encoder}|{arrays_hash({'ids': raw_item_ids})}|v2"
                           .encode()).hexdigest()[:12]
        path = self.cache_dir / f"{self.registry_name}-item-features-{key}.npz"
        table = load_cache(path) if self.metadata_identity() else None
        if table is None:
            table = self.build_feature_table(raw_item_ids)
            if self.metadata_identity():
                save_cache(path, table)
        self.feature_facts = {
            "item_fields": [str(f) for f in table["field_names"]],
            "item_feature_slots": int(table[ITEM_TOKENS].shape[1]),
            "items_lacking_attributes": int(table["items_lacking_attributes"]),
            "text_source": str(table["text_source"]), "text_encoder": str(table["text_encoder_used"]),
            "text_dim": int(table[ITEM_TEXT].shape[1]), "items_lacking_text": int(table["items_lacking_text"]),
            **{str(k): int(v) for k, v in zip(table["note_names"], table["note_values"])},
        }
        return table

    def build_feature_table(self, raw_item_ids: np.ndarray) -> dict[str, np.ndarray]:
        meta = self.item_metadata(raw_item_ids)
        n = len(raw_item_ids)
        tokens, slot_field, sizes = encode_fields(meta.fields, n)
        identity = np.zeros(0, np.uint8)  # encoded text: what it was computed from (see `text_identity`)
        if meta.text_embeddings is not None:
            text, used = np.asarray(meta.text_embeddings, dtype=np.float32), "planted"
            has_text = np.ones(n, dtype=bool)
        elif meta.texts is not None:
            from datamodules.text import embed_texts, text_identity

            has_text = np.array([bool(t) for t in meta.texts])
            text, used = embed_texts(list(meta.texts), self.text_encoder, self.cache_dir)
            identity = text_identity(list(meta.texts), used)
            text = np.array(text, dtype=np.float32)
            text[~has_text] = 0.0  # no text: a zero vector, not the encoding of ""
        else:
            text, used, has_text = np.zeros((n, 0), np.float32), "none", np.zeros(n, dtype=bool)
        return {
            ITEM_TOKENS: tokens, SLOT_FIELD: slot_field, FIELD_SIZES: sizes,
            ITEM_TEXT: np.concatenate([np.zeros((1, text.shape[1]), np.float32), text]),
            "text_identity": identity,
            "field_names": np.asarray(list(meta.fields), dtype=str),
            "items_lacking_attributes": np.array(int((tokens[1:] == 0).all(axis=1).sum())),
            "items_lacking_text": np.array(int((~has_text).sum()) if text.shape[1] else n),
            "text_source": np.array(meta.text_source), "text_encoder_used": np.array(used),
            "note_names": np.asarray(list(meta.notes), dtype=str),
            "note_values": np.asarray(list(meta.notes.values()), dtype=np.int64),
        }

    def train_dataloader(self) -> DataLoader:
        if not self.length_grouped:
            return super().train_dataloader()
        lengths = (self.train_set.tensors[B.INPUT_IDS] != B.PAD).sum(1)
        batches = LengthGroupedBatchSampler(RandomSampler(self.train_set), self.batch_size, False, lengths)
        mean_targets = float((self.train_set.tensors[B.TARGET_IDS] != B.PAD).sum()) / len(batches)
        return DataLoader(self.train_set, batch_sampler=batches,
                          collate_fn=functools.partial(trim_and_weigh, mean_targets=mean_targets),
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        if not self.length_grouped:
            return super().val_dataloader()
        return self._loader(self.val_set, self.eval_batch_size, shuffle=False, collate_fn=trim_left_padding)

    def test_dataloader(self) -> DataLoader:
        if not self.length_grouped:
            return super().test_dataloader()
        return self._loader(self.test_set, self.eval_batch_size, shuffle=False, collate_fn=trim_left_padding)

    def item_features(self) -> dict[str, torch.Tensor] | None:
        """The per-item side information (see `contracts.batch.seqrec`), or None when `item_features` is off."""
        if not self.use_item_features:
            return None
        if self._item_features is None:
            self.setup()
        return self._item_features

    def model_kwargs(self) -> dict:
        if self.num_items is None:
            self.setup()
        return {"num_items": self.num_items, "max_len": self.max_len}

    def describe(self) -> dict:
        facts = {"data_hash": self.data_hash, "users": self.num_users, "items": self.num_items,
                 "interactions": self.num_interactions, "train_rows": len(self.train_set),
                 "has_time": self.has_time, "max_len": self.max_len, "train_windows": self.train_windows,
                 "validation_item": self.validation_item}
        if self.length_grouped:
            facts["length_grouped"] = True
        if self.use_item_features:
            facts.update(item_features=True, **self.feature_facts)
        return facts
