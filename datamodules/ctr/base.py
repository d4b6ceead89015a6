"""The ctr datamodule base: tabular rows (label, numeric fields, categorical fields) -> split -> tensors.

A subclass names its columns and yields its source as pandas DataFrames (`frames()`: one per chunk, so large CSVs
stream through in pieces), each with the split it belongs to when the source is pre-split (BARS' train/valid/test
files), or None for a single-file source. Everything after that is shared and vectorised:
  1. per chunk: column check, binary label check, numeric fields parsed (NA -> 0, FuxiCTR's fill_na; +-inf or a
     non-numeric entry is refused with the file and line, never cast), categorical values (NA -> "", FuxiCTR's
     fill_na) hashed to uint64 with pandas' vectorised hash, per column;
  2. single-file sources get a fixed seeded permutation split with the subclass's ratios (8:1:1, 7:2:1);
  3. vocabularies from the TRAINING rows only: a value seen < `min_count` times in training, or never, maps to the
     out-of-vocabulary index 0 (FuxiCTR's min_categr_count and __OOV__); known values get 1..V in sorted-hash order;
  4. numeric transform fitted on training rows: "none" (values as given), "standardize" ((x - mean) / std),
     "log_standardize" (sign(x) log1p(|x|), then standardized);
  5. arrays cached as .npz (key: source identity + options), with their content hash as `data_hash`.
6. sources larger than memory: with `streaming` (Criteo's datamodules expose it) steps 1-5 run out of core
   (`datamodules.ctr.stream`: memory bounded by a chunk and the vocabularies) into .npy files read back in blocks.
`encode(frame)` maps new rows with the fitted vocabularies and statistics (unseen values -> OOV), so a model can
score rows that never went through training.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import torch

from contracts.atomic import save_cache
from contracts.batch import ctr as B
from datamodules.base import DataError, PaperboardDataModule, TensorBatchDataset, arrays_hash, load_cache

SPLITS = ("train", "val", "test")
DENSE_TRANSFORMS = ("none", "standardize", "log_standardize")
HASH_KEY = "paperboardctr-v1"  # pandas hash_array key (16 bytes); changing it changes every vocabulary


def hash_values(values: pd.Series) -> np.ndarray:
    """uint64 hash of each categorical value; NA and "" are the same value (FuxiCTR fills NA with "").

    Strings go through Arrow: dictionary-encode the column (C++), hash only its distinct values, gather by index,
    so no Python object is made per row.
    """
    if pd.api.types.is_numeric_dtype(values.dtype):
        as_int = values.fillna(-(2 ** 62)).to_numpy().astype(np.int64)
        return pd.util.hash_array(as_int, hash_key=HASH_KEY, categorize=False)
    import pyarrow as pa  # the family's extra: imported where used, so that the other families import without it
    import pyarrow.compute as pc

    array = pa.array(values, from_pandas=True)
    if not pa.types.is_string(array.type) and not pa.types.is_large_string(array.type):
        array = pc.cast(array, pa.string())
    encoded = pc.dictionary_encode(pc.fill_null(array, ""))
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    distinct = encoded.dictionary.to_numpy(zero_copy_only=False).astype(object)
    distinct_hashes = pd.util.hash_array(distinct, hash_key=HASH_KEY, categorize=False)
    return distinct_hashes[encoded.indices.to_numpy(zero_copy_only=False)]


def parse_label(values: pd.Series, positive: tuple = (1, "1", "1.0"), negative: tuple = (0, "0", "0.0"),
                where: str = "") -> np.ndarray:
    """{0, 1} float32 labels; anything else is a DataError naming the offending values."""
    if pd.api.types.is_numeric_dtype(values.dtype):
        arr = values.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isin(arr, (0.0, 1.0))
        if bad.any():
            raise DataError(f"{where}label is not binary: found value(s) {sorted(set(arr[bad].tolist()))[:5]}; "
                            f"expected 0/1")
        return arr.astype(np.float32)
    text = values.astype(str).str.strip()
    is_pos, is_neg = text.isin([str(p) for p in positive]), text.isin([str(n) for n in negative])
    bad = ~(is_pos | is_neg)
    if bad.any():
        raise DataError(f"{where}label is not binary: found value(s) {sorted(text[bad].unique().tolist())[:5]}; "
                        f"expected {list(positive)} (positive) or {list(negative)} (negative)")
    return is_pos.to_numpy().astype(np.float32)


def locate(frame: pd.DataFrame, row: int, where: str = "") -> str:
    """`file line N` for a chunk read from a CSV (its attrs say which file and line it starts at), else `row N`."""
    if "source" in frame.attrs:
        return f"{frame.attrs['source']} line {frame.attrs.get('first_line', 2) + row}"
    return f"{where}row {row + 1}"


def reject_infinite(frame: pd.DataFrame, column: str, values: np.ndarray, where: str = "") -> None:
    """A numeric field that is +-inf (an overflowing or corrupt entry) is a DataError naming file, line and fix: it
    would reach the model as inf and the run's logloss as NaN."""
    bad = np.isinf(values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"{locate(frame, row, where)}: numeric column {column!r} is {values[row]}, not a finite number "
                        f"({int(bad.sum())} such row(s)); fix those entries or leave them empty (empty means 0)")


def parse_dense(frame: pd.DataFrame, columns: list[str], where: str = "") -> np.ndarray:
    """Numeric fields as float32 with NA -> 0; a non-numeric or infinite entry is a DataError, never silently
    zeroed or passed on."""
    if not columns:
        return np.zeros((len(frame), 0), dtype=np.float32)
    out = np.empty((len(frame), len(columns)), dtype=np.float32)
    for j, col in enumerate(columns):
        raw = frame[col]
        if pd.api.types.is_numeric_dtype(raw.dtype):
            values = raw
        else:  # only the rows that fail to parse are looked at as text
            values = pd.to_numeric(raw, errors="coerce")
            suspect = values.isna() & raw.notna()
            if suspect.any():
                text = raw[suspect].astype(str).str.strip()
                if (text != "").any():
                    row = int(np.flatnonzero((suspect & (raw.astype(str).str.strip() != "")).to_numpy())[0])
                    raise DataError(f"{locate(frame, row, where)}: numeric column {col!r} has non-numeric value(s) "
                                    f"{text[text != ''].unique()[:3].tolist()}; fix them or leave them empty "
                                    f"(empty means 0)")
        filled = values.fillna(0).to_numpy(dtype=np.float64)
        reject_infinite(frame, col, filled, where)
        out[:, j] = filled.astype(np.float32)
    return out


class CTRDataModule(PaperboardDataModule):
    label_col: str = "label"
    dense_cols: tuple[str, ...] = ()
    sparse_cols: tuple[str, ...] = ()
    split_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    label_positive: tuple = (1, "1", "1.0")
    label_negative: tuple = (0, "0", "0.0")

    def __init__(self, data_dir: str | None = None, batch_size: int = 4096, eval_batch_size: int = 8192,
                 min_count: int = 1, dense_transform: str = "none", split_seed: int = 2021, num_workers: int = 0):
        super().__init__(data_dir, batch_size, eval_batch_size, num_workers)
        if dense_transform not in DENSE_TRANSFORMS:
            raise ValueError(f"dense_transform must be one of {DENSE_TRANSFORMS}, got {dense_transform!r}")
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        self.min_count = min_count
        self.dense_transform = dense_transform
        self.split_seed = split_seed
        self.arrays: dict[str, np.ndarray] | None = None
        self.train_set = self.val_set = self.test_set = None

    # ----- what a subclass provides -------------------------------------------------------------------------
    def frames(self) -> Iterator[tuple[pd.DataFrame, str | None]]:
        """Yield (chunk, split) pairs; split is "train"/"val"/"test" for pre-split sources, else None."""
        raise NotImplementedError

    def source_key(self) -> str:
        """Identifies the source files (name, size, mtime) or generator arguments; part of the cache key."""
        raise NotImplementedError

    def transform_chunk(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Per-chunk column rewrites before parsing (Criteo_x4's integer bucketing); identity by default."""
        return frame

    # ----- the shared pipeline ------------------------------------------------------------------------------
    def cache_key(self) -> str:
        options = json.dumps({"source": self.source_key(), "min_count": self.min_count, "ratios": self.split_ratios,
                              "dense": self.dense_transform, "seed": self.split_seed, "dense_cols": self.dense_cols,
                              "sparse_cols": self.sparse_cols, "v": 1}, sort_keys=True)
        import hashlib

        return f"{self.registry_name}-{hashlib.sha1(options.encode()).hexdigest()[:12]}"

    # ----- out of core (datamodules.ctr.stream): a subclass whose sources can outgrow memory exposes `streaming` --
    streaming: bool = False

    def stream_folder(self) -> Path:
        return self.cache_dir / f"{self.cache_key()}-stream"

    def _streamed(self) -> Path:
        """The encoded folder, built once (in a temporary folder renamed into place, so a crash leaves no half)."""
        from datamodules.ctr.stream import build_streaming

        folder = self.stream_folder()
        if not (folder / "meta.json").exists():
            import shutil

            partial = folder.with_name(folder.name + f".partial-{os.getpid()}")
            shutil.rmtree(partial, ignore_errors=True)
            build_streaming(self, partial)
            shutil.rmtree(folder, ignore_errors=True)
            partial.rename(folder)
        return folder

    def _fitted(self) -> dict[str, np.ndarray]:
        """Vocabularies and numeric statistics, from memory or from the encoded folder."""
        if not self.streaming:
            return self._prepared()
        folder = self._streamed()
        fitted = {f"vocab/{j}": np.load(folder / f"vocab-{j}.npy") for j in range(len(self.sparse_cols))}
        return {**fitted, **{k: np.load(folder / f"{k}.npy") for k in ("field_dims", "dense_mean", "dense_std")}}

    def prepare_data(self) -> None:
        if self.streaming:
            self._streamed()
            return
        self._prepared()

    def _prepared(self) -> dict[str, np.ndarray]:
        if self.arrays is not None:
            return self.arrays
        path = self.cache_dir / f"{self.cache_key()}.npz"
        arrays = load_cache(path) if self.use_cache else None
        if arrays is None:
            arrays = self.build(self.frames())
            if self.use_cache:
                save_cache(path, arrays)
        self.arrays = arrays
        return arrays

    use_cache: bool = True

    def check_columns(self, frame: pd.DataFrame, where: str) -> None:
        required = [self.label_col, *self.dense_cols, *self.sparse_cols]
        missing = [c for c in required if c not in frame.columns]
        if missing:
            raise DataError(f"{where}lacks column(s) {', '.join(missing)}; it has {', '.join(map(str, frame.columns))}."
                            f" Expected {self.label_col}, {', '.join(self.dense_cols) or '(no numeric fields)'} and "
                            f"{', '.join(self.sparse_cols)}.")

    def parse_chunk(self, frame: pd.DataFrame, where: str = "") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self.check_columns(frame, where)
        for col in (*self.dense_cols, *self.sparse_cols):  # before any bucketing turns inf into a huge integer
            if pd.api.types.is_float_dtype(frame[col].dtype):
                reject_infinite(frame, col, frame[col].to_numpy(dtype=np.float64, na_value=np.nan), where)
        frame = self.transform_chunk(frame)
        label = parse_label(frame[self.label_col], self.label_positive, self.label_negative, where)
        dense = parse_dense(frame, list(self.dense_cols), where)
        hashes = np.empty((len(frame), len(self.sparse_cols)), dtype=np.uint64)
        for j, col in enumerate(self.sparse_cols):
            hashes[:, j] = hash_values(frame[col])
        return label, dense, hashes

    def build(self, frames) -> dict[str, np.ndarray]:
        labels, denses, hashes, splits = [], [], [], []
        for i, (frame, split) in enumerate(frames):
            label, dense, hashed = self.parse_chunk(frame, where=f"{self.registry_name} (chunk {i}): ")
            labels.append(label), denses.append(dense), hashes.append(hashed)
            splits.append(np.full(len(frame), -1 if split is None else SPLITS.index(split), dtype=np.int8))
        if not labels:
            raise DataError(f"{self.registry_name}: the source has no rows")
        label, dense, hashed = np.concatenate(labels), np.concatenate(denses), np.concatenate(hashes)
        split = np.concatenate(splits)
        del labels, denses, hashes
        if (split == -1).any():
            split[split == -1] = self.permutation_split(int((split == -1).sum()))
        for s, name in enumerate(SPLITS):
            if not (split == s).any():
                raise DataError(f"{self.registry_name}: the {name} split is empty ({len(split)} rows in all); "
                                f"the source is too small for ratios {self.split_ratios}")
        train = split == 0
        arrays: dict[str, np.ndarray] = {"label": label, "split": split}
        sparse = np.zeros(hashed.shape, dtype=np.int32)
        field_dims = np.zeros(len(self.sparse_cols), dtype=np.int64)
        for j, col in enumerate(self.sparse_cols):
            keys, counts = np.unique(hashed[train, j], return_counts=True)
            keys = keys[counts >= self.min_count]
            arrays[f"vocab/{j}"] = keys
            sparse[:, j] = self._lookup(keys, hashed[:, j])
            field_dims[j] = len(keys) + 1  # + the OOV bucket, index 0
        arrays["sparse"], arrays["field_dims"] = sparse, field_dims
        dense, mean, std = self._fit_dense(dense, train)
        arrays.update(dense=dense, dense_mean=mean, dense_std=std)
        return arrays

    @staticmethod
    def _lookup(keys: np.ndarray, hashed: np.ndarray) -> np.ndarray:
        """1 + position of each hash in the sorted vocabulary, or 0 (OOV) where it is not there."""
        if len(keys) == 0:
            return np.zeros(len(hashed), dtype=np.int32)
        # A hash-table lookup (pandas Index), several times faster than searchsorted on random queries; -1 -> OOV.
        return (pd.Index(keys).get_indexer(hashed) + 1).astype(np.int32)

    def _transform_dense(self, dense: np.ndarray) -> np.ndarray:
        if self.dense_transform == "log_standardize":
            return (np.sign(dense) * np.log1p(np.abs(dense))).astype(np.float32)
        return dense

    def _fit_dense(self, dense: np.ndarray, train: np.ndarray):
        dense = self._transform_dense(dense)
        m = dense.shape[1]
        if self.dense_transform == "none" or m == 0:
            return dense, np.zeros(m, np.float32), np.ones(m, np.float32)
        mean = dense[train].mean(0).astype(np.float32)
        std = dense[train].std(0).astype(np.float32)
        std[std == 0] = 1.0
        return ((dense - mean) / std).astype(np.float32), mean, std

    def permutation_split(self, n: int) -> np.ndarray:
        """A fixed seeded split: a permutation of the rows cut at the ratios (independent of the run's seed)."""
        ratios = np.asarray(self.split_ratios, dtype=np.float64)
        cuts = np.floor(np.cumsum(ratios / ratios.sum())[:2] * n).astype(np.int64)
        order = np.random.default_rng(self.split_seed).permutation(n)
        split = np.empty(n, dtype=np.int8)
        split[order[:cuts[0]]], split[order[cuts[0]:cuts[1]]], split[order[cuts[1]:]] = 0, 1, 2
        return split

    def encode(self, frame: pd.DataFrame) -> dict[str, torch.Tensor]:
        """A batch from new rows with the fitted vocabularies (unseen values -> OOV 0) and numeric statistics."""
        arrays = self._fitted()
        label, dense, hashed = self.parse_chunk(frame, where="encode: ")
        sparse = np.stack([self._lookup(arrays[f"vocab/{j}"], hashed[:, j]) for j in range(len(self.sparse_cols))],
                          axis=1) if self.sparse_cols else np.zeros((len(frame), 0), np.int32)
        dense = self._transform_dense(dense)
        if self.dense_transform != "none" and dense.shape[1]:
            dense = (dense - arrays["dense_mean"]) / arrays["dense_std"]
        return {B.DENSE: torch.from_numpy(np.ascontiguousarray(dense, dtype=np.float32)),
                B.SPARSE: torch.from_numpy(sparse.astype(np.int64)), B.LABEL: torch.from_numpy(label)}

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        if self.streaming:
            from datamodules.ctr.stream import StreamingSplit, streaming_hash

            folder = self._streamed()
            self.data_hash = streaming_hash(folder)
            seed = torch.initial_seed() % 2 ** 32  # the run's seed (Lightning seeds torch): the epochs' block order
            for name in SPLITS:
                setattr(self, f"{name}_set", StreamingSplit(folder, name, self.batch_size if name == "train" else
                                                            self.eval_batch_size, shuffle=name == "train", seed=seed))
            return
        a = self._prepared()
        self.data_hash = arrays_hash({k: a[k] for k in ("label", "split", "sparse", "dense", "field_dims")})
        for s, name in enumerate(SPLITS):
            rows = np.flatnonzero(a["split"] == s)
            tensors = {B.DENSE: torch.from_numpy(np.ascontiguousarray(a["dense"][rows], dtype=np.float32)),
                       B.SPARSE: torch.from_numpy(a["sparse"][rows].astype(np.int64)),
                       B.LABEL: torch.from_numpy(np.ascontiguousarray(a["label"][rows], dtype=np.float32))}
            setattr(self, f"{name}_set", TensorBatchDataset(tensors))

    def train_dataloader(self):
        if self.streaming:  # the dataset yields whole batches, shuffled its own way
            return torch.utils.data.DataLoader(self.train_set, batch_size=None, num_workers=self.num_workers)
        return super().train_dataloader()

    def val_dataloader(self):
        if self.streaming:
            return torch.utils.data.DataLoader(self.val_set, batch_size=None, num_workers=self.num_workers)
        return super().val_dataloader()

    def test_dataloader(self):
        if self.streaming:
            return torch.utils.data.DataLoader(self.test_set, batch_size=None, num_workers=self.num_workers)
        return super().test_dataloader()

    def model_kwargs(self) -> dict:
        a = self._fitted()
        return {"field_dims": [int(d) for d in a["field_dims"]], "num_dense": len(self.dense_cols)}

    def describe(self) -> dict:
        if self.streaming:
            meta = json.loads((self._streamed() / "meta.json").read_text())
            a = self._fitted()
            return {"data_hash": self.data_hash, "fields_dense": len(self.dense_cols),
                    "fields_sparse": len(self.sparse_cols), "vocabulary": int(a["field_dims"].sum()),
                    "min_count": self.min_count, "dense_transform": self.dense_transform, "streaming": True,
                    **{k: v for k, v in meta.items() if k.endswith(("_rows", "_positive_rate"))}}
        a = self._prepared()
        out = {"data_hash": self.data_hash, "fields_dense": len(self.dense_cols), "fields_sparse": len(self.sparse_cols),
               "vocabulary": int(a["field_dims"].sum()), "min_count": self.min_count,
               "dense_transform": self.dense_transform}
        for s, name in enumerate(SPLITS):
            rows = a["split"] == s
            out[f"{name}_rows"] = int(rows.sum())
            out[f"{name}_positive_rate"] = round(float(a["label"][rows].mean()), 5)
        return out


def file_identity(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()}:{stat.st_size}:{int(stat.st_mtime)}"
