"""Time-series editing datasets (family `tsedit`). Importing this package registers them."""
from datamodules.tsedit import csv_series, synthetic  # noqa: F401
