"""Real multivariate series read from CSV files: ETTh1/ETTh2 (Zhou et al., Informer, AAAI 2021) and the
exchange-rate data (Lai et al., LSTNet, 2018) in the Autoformer/Time-Series-Library layout.

Splits follow the forecasting literature: ETT hourly 12/4/4 months (rows [0, 8640), [8640, 11520),
[11520, 14400)); exchange rate 70/10/20 % in time order. Validation and test keep the `window - 1` rows before
their border so their first window ends right after it (as Informer/Autoformer do).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from contracts.registry import register_dataset
from datamodules.base import DataError, RemoteFile, require_file
from datamodules.tsedit.base import TSEditDataModule

ETT_COLUMNS = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
EXCHANGE_COLUMNS = ["0", "1", "2", "3", "4", "5", "6", "OT"]
ETT_URL = "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/1d16c8f4f943005d613b5bc962e9eeb06058cf07/ETT-small/"


def read_columns(path, columns: list[str], name: str) -> np.ndarray:
    frame = pd.read_csv(path)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} for {name}; expected {', '.join(columns)}")
    values = frame[columns].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    if len(values) == 0:
        raise DataError(f"{path}: no rows")
    return values


class CSVSeries(TSEditDataModule):
    file: RemoteFile
    columns: list[str] = []

    def read(self) -> np.ndarray:
        return read_columns(require_file(self.dataset_dir, self.file), self.columns, self.registry_name)

    def borders(self, n_rows: int) -> tuple[int, int, int]:
        raise NotImplementedError

    def load_windows(self):
        values = self.read()
        train_end, val_end, test_end = self.borders(len(values))
        if test_end > len(values):
            raise DataError(f"{self.registry_name}: the file has {len(values)} rows, the split needs {test_end}")
        back = self.window - 1
        return self.normalise_rows(values[:train_end], values[train_end - back:val_end], values[val_end - back:test_end])

    @property
    def channel_names(self):
        return self.columns


class ETTh(CSVSeries):
    folder = "ett"
    columns = ETT_COLUMNS

    def borders(self, n_rows: int):
        month = 30 * 24
        return 12 * month, 16 * month, 20 * month


@register_dataset("etth1", family="tsedit")
class ETTh1(ETTh):
    file = RemoteFile(("ETTh1.csv",), url=ETT_URL + "ETTh1.csv",
                      checksums={"ETTh1.csv": "sha256:f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066"})


@register_dataset("etth2", family="tsedit")
class ETTh2(ETTh):
    file = RemoteFile(("ETTh2.csv",), url=ETT_URL + "ETTh2.csv",
                      checksums={"ETTh2.csv": "sha256:a3dc2c597b9218c7ce1cd55eb77b283fd459a1d09d753063f944967dd6b9218b"})


@register_dataset("exchange-rate", family="tsedit")
class ExchangeRate(CSVSeries):
    folder = "timeseries-tslib"
    columns = EXCHANGE_COLUMNS
    file = RemoteFile(("exchange_rate.csv",), url=None,
                      checksums={"exchange_rate.csv": "sha256:d55e7aa2641009814a18ba3279431b13f6d413b0eab195b9ff21988d8cf94e97"})

    def borders(self, n_rows: int):
        train_end = int(n_rows * 0.7)
        test_len = int(n_rows * 0.2)
        return train_end, n_rows - test_len, n_rows
