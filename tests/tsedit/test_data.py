"""Datamodules: reproducible edit tasks, normalisation with training statistics, clear data errors."""
from __future__ import annotations

import numpy as np
import pytest

from contracts.batch import tsedit as B
from datamodules.base import DataError
from datamodules.tsedit.base import make_edit_tasks, sliding_windows
from datamodules.tsedit.csv_series import ETTh1, ExchangeRate
from datamodules.tsedit.synthetic import SyntheticTSEdit


def test_edit_tasks_are_reproducible_and_well_formed():
    rng = np.random.default_rng(0)
    windows = rng.standard_normal((50, 3, 40)).astype(np.float32)
    attrs = rng.integers(0, 3, 50)
    a = make_edit_tasks(windows, attrs, 40, seed=7)
    b = make_edit_tasks(windows, attrs, 40, seed=7)
    c = make_edit_tasks(windows, attrs, 40, seed=8)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a[B.ANCHOR_VALUE], c[B.ANCHOR_VALUE])
    n_constraints = (a[B.ANCHOR_CONF] > 0).sum(axis=(1, 2)) + a[B.SEG_ACTIVE].sum(axis=1)
    assert (n_constraints >= 1).all()
    has = a[B.ANCHOR_CONF] > 0
    shift = np.abs(a[B.ANCHOR_VALUE] - a[B.X])[has]
    assert (shift >= 0.5 - 1e-5).all() and (shift <= 1.5 + 1e-5).all()
    assert (a[B.EDIT_MASK][has] == 1).all()  # anchors lie inside the edited region
    stat = np.einsum("bkcl,bcl->bk", a[B.SEG_WEIGHT], a[B.X])
    per_point = np.abs(a[B.SEG_TARGET] - stat) / a[B.SEG_SCALE]
    active = a[B.SEG_ACTIVE] > 0
    assert (per_point[active] >= 0.3 - 1e-4).all() and (per_point[active] <= 1.0 + 1e-4).all()
    assert (a[B.SEG_WEIGHT].sum(axis=(2, 3))[~active] == 0).all()


def test_sliding_windows():
    series = np.arange(20, dtype=float).reshape(10, 2)
    w = sliding_windows(series, 4, 3)
    assert w.shape == (3, 2, 4)
    assert w[1, 0].tolist() == [6.0, 8.0, 10.0, 12.0]


def test_synthetic_is_normalised_with_train_statistics():
    dm = SyntheticTSEdit(num_train=512, num_val=32, num_test=32, window=32, num_val_tasks=8, num_test_tasks=8)
    dm.setup()
    x = dm.train_set.tensors[B.X].numpy()
    assert np.allclose(x.mean(axis=(0, 2)), 0, atol=1e-4) and np.allclose(x.std(axis=(0, 2)), 1, atol=1e-3)
    kw = dm.model_kwargs()
    assert kw["channels"] == 2 and kw["window"] == 32 and kw["num_classes"] == 3 and kw["data_hash"] == dm.data_hash


def test_etth1_splits_and_normalisation(shared_data):
    dm = ETTh1(data_dir=str(shared_data), window=96, eval_stride=24, num_val_tasks=8, num_test_tasks=8)
    dm.setup()
    assert dm.channels == 7 and dm.windows["train"] == 8640 - 96 + 1
    x = dm.train_set.tensors[B.X].numpy()
    assert abs(float(x[:, :, 0].mean())) < 0.05  # train windows are z-scored with the train rows' statistics
    assert set(np.unique(dm.train_set.tensors[B.ATTR].numpy())) == {0, 1, 2}


def test_missing_file_and_bad_column_are_clear(tmp_path):
    with pytest.raises(DataError, match="exchange_rate.csv"):
        ExchangeRate(data_dir=str(tmp_path)).setup()
    folder = tmp_path / "timeseries-tslib"
    folder.mkdir()
    (folder / "exchange_rate.csv").write_text("date,0,1\n2000-01-01,1,2\n")
    spec = ExchangeRate.file.__class__(ExchangeRate.file.names)  # same name, no checksum: reach the column check
    dm = ExchangeRate(data_dir=str(tmp_path))
    dm.file = spec
    with pytest.raises(DataError, match="missing column"):
        dm.setup()
