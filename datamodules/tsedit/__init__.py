"""Time-series editing datasets (family `tsedit`). Importing this package registers them."""
from datamodules.tsedit import csv_series, synthetic  # noqa: F401

# the public names: `from datamodules.tsedit import ETTh1`
from datamodules.tsedit.csv_series import ETTh1, ETTh2, ExchangeRate
from datamodules.tsedit.synthetic import SyntheticTSEdit
__all__ = ["ETTh1", "ETTh2", "ExchangeRate", "SyntheticTSEdit"]
