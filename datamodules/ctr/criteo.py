"""Criteo in the BARS layouts (reczoo/BARS, reczoo/Datasets), plus the 200-row DeepCTR sample as a format check.

Every variant reads CSV in chunks (about `chunk_rows` at a time, Arrow's streaming reader), so a 45M-row file
never sits in memory as text; with `streaming=True` the encoded rows do not either (datamodules.ctr.stream).
  criteo-x1      BARS Criteo_x1: label, I1-I13 numeric (floats as published: AFN's normalised values, used as
                 given), C1-C26 categorical, min_categr_count 1; the random 7:2:1 split as published in
                 train.csv / valid.csv / test.csv. Embedding size 10 on the BARS leaderboard.
  criteo-x4      BARS Criteo_x4 (AutoInt's random 8:1:1 split): every integer field is bucketed as FuxiCTR's code
                 does it (fuxictr/datasets/criteo.py, convert_to_bucket: floor(ln(x)^2) if x > 2 else int(x), NA
                 -> 0; the reczoo README's floor(log2 x) is not what the code does) and becomes categorical, so the
                 dense branch is empty; min_categr_count 10 (Criteo_x4_001) or 2 (x4_002).
  criteo-sample  DeepCTR's examples/criteo_sample.txt (200 rows, Kaggle raw integers): the x1 layout with
                 sign(x) log1p(|x|) then standardised numeric fields, a fixed 7:2:1 split. Too small to benchmark.
When the BARS files are absent, `standin="auto"` (the boards' setting) runs on a Criteo-shaped synthetic file
(`datamodules.ctr.synthetic.criteo_shaped_frame`) written once under the cache dir and read through the same
chunked reader with the layout's random split; describe() and the data hash say which source a run used.
`standin="none"` insists on the real files; `standin="synthetic"` always uses the stand-in.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from contracts.atomic import atomic_write_bytes
from contracts.registry import register_dataset
from datamodules.base import DataError, RemoteFile, require_file
from datamodules.ctr.base import CTRDataModule, file_identity
from datamodules.ctr.synthetic import criteo_shaped_frame

I_COLS = tuple(f"I{i}" for i in range(1, 14))
C_COLS = tuple(f"C{i}" for i in range(1, 27))
STANDINS = ("auto", "synthetic", "none")

# BARS publishes no checksums for Criteo_x1's CSVs; Criteo_x4's md5s are reczoo/Datasets Criteo_x4/README.md's.
CRITEO_X1 = {split: RemoteFile(names=(f"{name}.csv",), url="https://huggingface.co/datasets/reczoo/Criteo_x1")
             for split, name in (("train", "train"), ("val", "valid"), ("test", "test"))}
CRITEO_X4 = {split: RemoteFile(names=(f"{name}.csv",), checksums={f"{name}.csv": f"md5:{md5}"},
                               url="https://huggingface.co/datasets/reczoo/Criteo_x4")
             for split, name, md5 in (("train", "train", "4a53bb7cbc0e4ee25f9d6a73ed824b1a"),
                                      ("val", "valid", "fba5428b22895016e790e2dec623cb56"),
                                      ("test", "test", "cfc37da0d75c4d2d8778e76997df2976"))}
CRITEO_SAMPLE = RemoteFile(
    names=("criteo_sample.txt",),
    url="https://raw.githubusercontent.com/shenweichen/DeepCTR/1b5fe40e158d1ee6af8b1d9df217a5ed5aea9136/examples/criteo_sample.txt",
    checksums={"criteo_sample.txt": "sha256:08b84f12a22438fb534e989a5e4fa245726b2bda001983556bc2aea2f094f724"},
)


def fuxictr_bucket(values: pd.Series) -> np.ndarray:
    """FuxiCTR's convert_to_bucket, vectorised: NA -> 0, then floor(ln(x)^2) if x > 2 else int(x)."""
    x = pd.to_numeric(values, errors="coerce").fillna(0).to_numpy(dtype=np.float64)
    return np.where(x > 2, np.floor(np.log(np.maximum(x, 1.0)) ** 2), np.trunc(x)).astype(np.int64)


def read_csv_chunks(path: Path, chunk_rows: int, dense_cols, sparse_cols,
                    block_bytes: int = 8 << 20) -> Iterator[pd.DataFrame]:
    """Arrow's streaming CSV reader (C++) in chunks of about `chunk_rows` rows; categorical columns as strings ("" kept
    as a value), numeric as float32 (empty -> NA), label column named `label`.

    The reader parses `block_bytes` blocks and reads several blocks ahead of the consumer, so its memory is a
    multiple of the block size: small blocks (8 MiB) joined into chunks keep it small whatever the chunk size."""
    import pyarrow as pa  # the family's extra: imported where used, so that the other families import without it
    import pyarrow.csv as pacsv

    read = pacsv.ReadOptions(block_size=block_bytes)
    convert = pacsv.ConvertOptions(column_types={**{c: pa.float32() for c in dense_cols},
                                                 **{c: pa.string() for c in sparse_cols}},
                                   strings_can_be_null=False)
    line = 2  # the first data line, after the header

    def chunk_of(batches: list) -> pd.DataFrame:
        nonlocal line
        chunk = pa.Table.from_batches(batches).to_pandas()
        if "Label" in chunk.columns and "label" not in chunk.columns:  # Criteo_x4 capitalises it
            chunk = chunk.rename(columns={"Label": "label"})
        chunk.attrs.update(source=str(path), first_line=line)  # so that a bad value's message names its line
        line += len(chunk)
        return chunk

    try:
        reader = pacsv.open_csv(path, read_options=read, convert_options=convert)
        pending, rows = [], 0
        for record_batch in reader:
            pending.append(record_batch)
            rows += record_batch.num_rows
            if rows >= chunk_rows:
                yield chunk_of(pending)
                pending, rows = [], 0
        if pending:
            yield chunk_of(pending)
    except pa.ArrowInvalid as err:  # e.g. a non-numeric entry in a numeric column, a ragged row
        raise DataError(f"cannot parse {path}: {err}") from err


class CriteoBase(CTRDataModule):
    label_col = "label"
    bars_files: dict = {}
    standin_format = "x1"

    def __init__(self, data_dir: str | None = None, batch_size: int = 4096, eval_batch_size: int = 8192,
                 min_count: int = 1, dense_transform: str = "none", split_seed: int = 2021,
                 chunk_rows: int = 500_000, standin: str = "auto", standin_rows: int = 200_000,
                 standin_seed: int = 0, num_workers: int = 0, streaming: bool = False):
        super().__init__(data_dir, batch_size, eval_batch_size, min_count, dense_transform, split_seed, num_workers)
        self.streaming = streaming  # out of core (datamodules.ctr.stream); single-file sources split by row hash
        if standin not in STANDINS:
            raise ValueError(f"standin must be one of {STANDINS}, got {standin!r}")
        self.chunk_rows = chunk_rows
        self.standin = standin
        self.standin_rows = standin_rows
        self.standin_seed = standin_seed

    # ----- where the rows come from ---------------------------------------------------------------------------
    def uses_standin(self) -> bool:
        if self.standin == "synthetic":
            return True
        present = all((self.dataset_dir / spec.names[0]).exists() for spec in self.bars_files.values())
        if self.standin == "auto":
            return not present
        return False

    def standin_path(self) -> Path:
        path = self.cache_dir / f"standin-{self.standin_format}-{self.standin_rows}-seed{self.standin_seed}.csv"
        if not path.exists():
            frame = criteo_shaped_frame(self.standin_rows, seed=self.standin_seed, dense_format=self.standin_format)
            atomic_write_bytes(path, frame.to_csv(index=False).encode())
        return path

    def source_key(self) -> str:
        if self.uses_standin():
            return "standin:" + file_identity(self.standin_path())
        return ";".join(file_identity(require_file(self.dataset_dir, spec)) for spec in self.bars_files.values())

    def frames(self) -> Iterator[tuple[pd.DataFrame, str | None]]:
        if self.uses_standin():
            for chunk in read_csv_chunks(self.standin_path(), self.chunk_rows, I_COLS, C_COLS):
                yield chunk, None
            return
        for split, spec in self.bars_files.items():
            path = require_file(self.dataset_dir, spec)
            for chunk in read_csv_chunks(path, self.chunk_rows, I_COLS, C_COLS):
                yield chunk, split

    def describe(self) -> dict:
        source = (f"synthetic Criteo-shaped stand-in ({self.standin_rows} rows, seed {self.standin_seed}, "
                  f"{self.standin_format} numeric form)" if self.uses_standin()
                  else f"BARS files in {self.dataset_dir}")
        return {**super().describe(), "source": source}


@register_dataset("criteo-x1", family="ctr")
class CriteoX1(CriteoBase):
    folder = "criteo_x1"
    dense_cols = I_COLS
    sparse_cols = C_COLS
    split_ratios = (0.7, 0.2, 0.1)
    bars_files = CRITEO_X1
    standin_format = "x1"


@register_dataset("criteo-x4", family="ctr")
class CriteoX4(CriteoBase):
    folder = "criteo_x4"
    dense_cols = ()
    sparse_cols = I_COLS + C_COLS  # the integers become bucketed categorical fields
    split_ratios = (0.8, 0.1, 0.1)
    bars_files = CRITEO_X4
    standin_format = "raw"

    def __init__(self, data_dir: str | None = None, batch_size: int = 4096, eval_batch_size: int = 8192,
                 min_count: int = 10, dense_transform: str = "none", split_seed: int = 2021,
                 chunk_rows: int = 500_000, standin: str = "auto", standin_rows: int = 200_000,
                 standin_seed: int = 0, num_workers: int = 0, streaming: bool = False):
        super().__init__(data_dir, batch_size, eval_batch_size, min_count, dense_transform, split_seed, chunk_rows,
                         standin, standin_rows, standin_seed, num_workers, streaming)

    def transform_chunk(self, frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        for col in I_COLS:
            frame[col] = fuxictr_bucket(frame[col])
        return frame


@register_dataset("criteo-sample", family="ctr")
class CriteoSample(CTRDataModule):
    folder = "ctr-samples-deepctr"
    dense_cols = I_COLS
    sparse_cols = C_COLS
    split_ratios = (0.7, 0.2, 0.1)

    def __init__(self, data_dir: str | None = None, batch_size: int = 64, eval_batch_size: int = 256,
                 min_count: int = 1, dense_transform: str = "log_standardize", split_seed: int = 2021,
                 num_workers: int = 0):
        super().__init__(data_dir, batch_size, eval_batch_size, min_count, dense_transform, split_seed, num_workers)

    def source_key(self) -> str:
        return file_identity(require_file(self.dataset_dir, CRITEO_SAMPLE))

    def frames(self) -> Iterator[tuple[pd.DataFrame, str | None]]:
        for chunk in read_csv_chunks(require_file(self.dataset_dir, CRITEO_SAMPLE), 100_000, I_COLS, C_COLS):
            yield chunk, None
