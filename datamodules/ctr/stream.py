"""Out-of-core preprocessing and loading for CTR sources too large for memory (Criteo's 45M rows).

`build_streaming(dm, folder)` turns a datamodule's chunk stream (`dm.frames()`) into encoded arrays on disk with
memory bounded by one chunk plus the vocabularies, whatever the row count:
  pass 1 (the CSV is parsed once): per chunk, `dm.parse_chunk` (label, numeric fields, hashed categorical values);
         the split (from the source's files, else `row_split`); the training rows' value counts merged into one
         sorted (hash, count) table per field; the numeric transform's running sums; everything appended to spill
         files on disk;
  pass 2: the spill read back block by block (plain file reads, no memory map, so pages never pile up in this
         process), hashes mapped to vocabulary indices (min_count as in memory), numeric fields standardised,
         appended to `label.npy`, `split.npy`, `dense.npy`, `sparse.npy`.
The result equals `dm.build()` for a pre-split source (same vocabularies, indices, statistics up to float
rounding). For a single-file source the in-memory path's permutation split needs the row count before the
first row; here each row's split is a function of its position (`row_split`), so split sizes match the ratios
up to binomial noise, and the data hash differs from the in-memory build of the same file.

`StreamingSplit` serves one split's rows for training and evaluation from those files: blocks of rows read in
order (training: blocks in a seeded random order, rows shuffled within each block), whole batches at a time.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from contracts.batch import ctr as B

SPLIT_NAMES = ("train", "val", "test")
MASK64 = (1 << 64) - 1


def row_split(start: int, count: int, ratios, seed: int) -> np.ndarray:
    """Split codes (0 train, 1 val, 2 test) of rows start..start+count-1: a splitmix64 hash of (seed, position)
    read as a uniform number in [0, 1) and cut at the ratios. Any chunking of the rows gives the same codes."""
    x = (np.arange(start, start + count, dtype=np.uint64) + np.uint64((seed * 0x9E3779B97F4A7C15) & MASK64))
    with np.errstate(over="ignore"):
        x = x * np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(31)
        x = x * np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(29)
    u = (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    ratios = np.asarray(ratios, dtype=np.float64)
    cuts = np.cumsum(ratios / ratios.sum())[:2]
    return np.searchsorted(cuts, u, side="right").astype(np.int8)


class ValueCounts:
    """A sorted table of distinct uint64 keys and their counts, merged chunk by chunk (memory: distinct values)."""

    def __init__(self):
        self.keys = np.empty(0, dtype=np.uint64)
        self.counts = np.empty(0, dtype=np.int64)

    def add(self, values: np.ndarray) -> None:
        keys, counts = np.unique(values, return_counts=True)
        merged, inverse = np.unique(np.concatenate([self.keys, keys]), return_inverse=True)
        self.counts = np.bincount(inverse, weights=np.concatenate([self.counts, counts]),
                                  minlength=len(merged)).astype(np.int64)
        self.keys = merged


class NpyAppender:
    """A .npy file of known final shape written in row blocks (header first, then raw rows appended)."""

    def __init__(self, path: Path, dtype, rows: int, width: int | None):
        self.path, self.dtype = path, np.dtype(dtype)
        shape = (rows,) if width is None else (rows, width)
        self.file = open(path, "wb")
        np.lib.format.write_array_header_1_0(self.file, {"descr": np.lib.format.dtype_to_descr(self.dtype),
                                                          "fortran_order": False, "shape": shape})
        self.expected, self.written = rows, 0

    def append(self, block: np.ndarray) -> None:
        self.file.write(np.ascontiguousarray(block, dtype=self.dtype).tobytes())
        self.written += len(block)

    def close(self) -> None:
        self.file.close()
        if self.written != self.expected:
            raise RuntimeError(f"{self.path}: wrote {self.written} rows, expected {self.expected}")


def _header(f) -> tuple:
    """(shape, fortran_order, dtype) of an open .npy file, leaving it at the first data byte."""
    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return read(f)


def npy_rows(path: Path, start: int, count: int) -> np.ndarray:
    """Rows start..start+count-1 of a .npy file, by a plain read (no memory map)."""
    with open(path, "rb") as f:
        shape, _, dtype = _header(f)
        row_bytes = dtype.itemsize * int(np.prod(shape[1:], dtype=np.int64))
        f.seek(f.tell() + start * row_bytes)
        count = max(0, min(count, shape[0] - start))
        return np.fromfile(f, dtype=dtype, count=count * int(np.prod(shape[1:], dtype=np.int64))).reshape(
            (count, *shape[1:]))


def npy_shape(path: Path) -> tuple:
    with open(path, "rb") as f:
        return _header(f)[0]


def build_streaming(dm, folder: Path, block_rows: int = 500_000) -> dict:
    """Encode `dm`'s source into `folder` (see the module docstring); returns the metadata it writes."""
    folder.mkdir(parents=True, exist_ok=True)
    spill = folder / "spill"
    spill.mkdir(exist_ok=True)
    num_dense, num_sparse = len(dm.dense_cols), len(dm.sparse_cols)
    vocab = [ValueCounts() for _ in range(num_sparse)]
    sums = np.zeros(num_dense), np.zeros(num_dense)
    files = {name: open(spill / name, "wb") for name in ("label", "split", "dense", "hashes")}
    rows = train_rows = 0
    try:  # pass 1
        for i, (frame, split_name) in enumerate(dm.frames()):
            label, dense, hashed = dm.parse_chunk(frame, where=f"{dm.registry_name} (chunk {i}): ")
            n = len(label)
            split = (np.full(n, SPLIT_NAMES.index(split_name), dtype=np.int8) if split_name is not None
                     else row_split(rows, n, dm.split_ratios, dm.split_seed))
            train = split == 0
            for j in range(num_sparse):
                vocab[j].add(hashed[train, j])
            transformed = dm._transform_dense(dense)[train].astype(np.float64)
            sums[0][:] += transformed.sum(0)
            sums[1][:] += (transformed ** 2).sum(0)
            for name, block in (("label", label), ("split", split), ("dense", dense), ("hashes", hashed)):
                files[name].write(np.ascontiguousarray(block).tobytes())
            rows, train_rows = rows + n, train_rows + int(train.sum())
            del frame, label, dense, hashed
    finally:
        for f in files.values():
            f.close()
    if rows == 0:
        raise ValueError(f"{dm.registry_name}: the source has no rows")

    keys = []
    for j in range(num_sparse):
        keys.append(vocab[j].keys[vocab[j].counts >= dm.min_count])
        np.save(folder / f"vocab-{j}.npy", keys[j])
    del vocab
    field_dims = np.array([len(k) + 1 for k in keys], dtype=np.int64)
    if dm.dense_transform == "none" or num_dense == 0 or train_rows == 0:
        mean, std = np.zeros(num_dense, np.float32), np.ones(num_dense, np.float32)
    else:
        mean64 = sums[0] / train_rows
        std64 = np.sqrt(np.maximum(sums[1] / train_rows - mean64 ** 2, 0.0))
        mean, std = mean64.astype(np.float32), std64.astype(np.float32)
        std[std == 0] = 1.0

    out = {"label": NpyAppender(folder / "label.npy", np.float32, rows, None),
           "split": NpyAppender(folder / "split.npy", np.int8, rows, None),
           "dense": NpyAppender(folder / "dense.npy", np.float32, rows, num_dense),
           "sparse": NpyAppender(folder / "sparse.npy", np.int32, rows, num_sparse)}
    counts = np.zeros(3, dtype=np.int64)
    positives = np.zeros(3)
    with open(spill / "label", "rb") as fl, open(spill / "split", "rb") as fs, open(spill / "dense", "rb") as fd, \
            open(spill / "hashes", "rb") as fh:  # pass 2
        for start in range(0, rows, block_rows):
            n = min(block_rows, rows - start)
            label = np.fromfile(fl, dtype=np.float32, count=n)
            split = np.fromfile(fs, dtype=np.int8, count=n)
            dense = np.fromfile(fd, dtype=np.float32, count=n * num_dense).reshape(n, num_dense)
            hashed = np.fromfile(fh, dtype=np.uint64, count=n * num_sparse).reshape(n, num_sparse)
            sparse = np.empty((n, num_sparse), dtype=np.int32)
            for j in range(num_sparse):
                sparse[:, j] = dm._lookup(keys[j], hashed[:, j])
            dense = dm._transform_dense(dense)
            if dm.dense_transform != "none" and num_dense:
                dense = (dense - mean) / std
            for name, block in (("label", label), ("split", split), ("dense", dense), ("sparse", sparse)):
                out[name].append(block)
            counts += np.bincount(split, minlength=3)
            positives += np.bincount(split, weights=label, minlength=3)
    for appender in out.values():
        appender.close()
    for name in ("label", "split", "dense", "hashes"):
        os.remove(spill / name)
    spill.rmdir()
    np.save(folder / "field_dims.npy", field_dims)
    np.save(folder / "dense_mean.npy", mean)
    np.save(folder / "dense_std.npy", std)
    meta = {"rows": rows, **{f"{s}_rows": int(counts[k]) for k, s in enumerate(SPLIT_NAMES)},
            **{f"{s}_positive_rate": round(float(positives[k] / max(counts[k], 1)), 5) for k, s in enumerate(SPLIT_NAMES)},
            "block_rows": block_rows}
    (folder / "meta.json").write_text(json.dumps(meta))
    return meta


def streaming_hash(folder: Path, block_rows: int = 1 << 20) -> str:
    """The content hash of an encoded folder (label, split, sparse, dense, field_dims), read block by block."""
    import hashlib

    h = hashlib.sha256()
    for name in ("label", "split", "sparse", "dense", "field_dims"):
        path = folder / f"{name}.npy"
        with open(path, "rb") as f:
            while chunk := f.read(block_rows * 64):
                h.update(chunk)
    return h.hexdigest()[:16]


class StreamingSplit(IterableDataset):
    """One split's rows from an encoded folder, as whole batches: {dense, sparse, label} tensors.

    Reads `block_rows` rows at a time (every split's rows, keeping this split's); with `shuffle`, blocks come in a
    seeded random order that changes each epoch and rows are shuffled within each block, the usual out-of-core
    compromise between a full shuffle and memory. Memory: one block. Under several DataLoader workers each worker
    takes every k-th block. Each process of a multi-process run would see every row: use it on one process.
    """

    def __init__(self, folder: Path, split: str, batch_size: int, shuffle: bool, block_rows: int = 1 << 20,
                 seed: int = 0):
        self.folder, self.code = Path(folder), SPLIT_NAMES.index(split)
        self.batch_size, self.shuffle, self.block_rows, self.seed = batch_size, shuffle, block_rows, seed
        self.total = int(npy_shape(self.folder / "label.npy")[0])
        meta = json.loads((self.folder / "meta.json").read_text())
        self.length = int(meta[f"{split}_rows"])
        self.epoch = 0

    def __len__(self) -> int:  # batches, for progress bars and Lightning's epoch length
        return -(-self.length // self.batch_size)

    def blocks(self) -> list[int]:
        starts = list(range(0, self.total, self.block_rows))
        if self.shuffle:
            np.random.default_rng((self.seed, self.epoch)).shuffle(starts)
        info = get_worker_info()
        return starts if info is None else starts[info.id::info.num_workers]

    def __iter__(self) -> Iterator[dict]:
        rng = np.random.default_rng((self.seed, self.epoch, 1))
        self.epoch += 1
        carry: dict | None = None
        for start in self.blocks():
            keep = npy_rows(self.folder / "split.npy", start, self.block_rows) == self.code
            block = {B.LABEL: npy_rows(self.folder / "label.npy", start, self.block_rows)[keep],
                     B.DENSE: npy_rows(self.folder / "dense.npy", start, self.block_rows)[keep],
                     B.SPARSE: npy_rows(self.folder / "sparse.npy", start, self.block_rows)[keep].astype(np.int64)}
            if carry is not None:  # the previous block's last partial batch goes first
                block = {k: np.concatenate([carry[k], v]) for k, v in block.items()}
                carry = None
            n = len(block[B.LABEL])
            if self.shuffle:
                order = rng.permutation(n)
                block = {k: v[order] for k, v in block.items()}
            full = n - n % self.batch_size
            for i in range(0, full, self.batch_size):
                yield {k: torch.from_numpy(np.ascontiguousarray(v[i:i + self.batch_size])) for k, v in block.items()}
            if full < n:
                carry = {k: v[full:] for k, v in block.items()}
        if carry is not None and len(carry[B.LABEL]):
            yield {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in carry.items()}
