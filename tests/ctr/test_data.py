"""ctr datamodules: the real Adult split, the Criteo layouts through the chunked reader, FuxiCTR's bucketing,
and bad input (unknown column, non-binary label, non-numeric value, unseen category) -> DataError or OOV."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

import datamodules  # noqa: F401
from contracts.batch import ctr as B
from datamodules.base import DataError
from datamodules.ctr.adult import Adult
from datamodules.ctr.base import CTRDataModule
from datamodules.ctr.criteo import CriteoSample, CriteoX1, CriteoX4, fuxictr_bucket


class FrameCTR(CTRDataModule):
    """A datamodule over an in-memory frame, to feed the shared pipeline chosen rows."""

    registry_name = "frame-test"
    folder = "frame-test"
    label_col = "y"
    dense_cols = ("x",)
    sparse_cols = ("c",)
    use_cache = False

    def __init__(self, frame, **kwargs):
        super().__init__(**kwargs)
        self.frame = frame

    def source_key(self):
        return "frame"

    def frames(self):
        yield self.frame, None


def frame(n=100, **overrides):
    rng = np.random.default_rng(0)
    data = {"y": rng.integers(0, 2, n), "x": rng.normal(size=n), "c": rng.choice(["a", "b", "c"], n)}
    data.update(overrides)
    return pd.DataFrame(data)


def test_unknown_or_missing_column_is_a_clear_error():
    bad = frame().rename(columns={"c": "colour"})
    with pytest.raises(DataError, match=r"lacks column\(s\) c; it has y, x, colour"):
        FrameCTR(bad).setup()


def test_label_not_binary_is_a_clear_error():
    labels = np.zeros(100, dtype=int)
    labels[7] = 2
    with pytest.raises(DataError, match=r"label is not binary: found value\(s\) \[2.0\]"):
        FrameCTR(frame(y=labels)).setup()
    with pytest.raises(DataError, match="label is not binary"):
        FrameCTR(frame(y=["yes"] * 100)).setup()


def test_non_numeric_value_in_a_numeric_field_is_a_clear_error():
    x = np.arange(100).astype(object)
    x[3] = "abc"
    with pytest.raises(DataError, match="numeric column 'x' has non-numeric value"):
        FrameCTR(frame(x=x)).setup()


def test_too_few_rows_for_a_split_is_a_clear_error():
    with pytest.raises(DataError, match="split is empty"):
        FrameCTR(frame(n=3)).setup()


def test_unseen_categorical_value_maps_to_the_oov_bucket():
    dm = FrameCTR(frame(), dense_transform="standardize")
    dm.setup()
    assert dm.model_kwargs() == {"field_dims": [4], "num_dense": 1}  # a, b, c + OOV
    new = pd.DataFrame({"y": [0, 1, 1], "x": [0.0, 1.0, float("nan")], "c": ["a", "never-seen", None]})
    batch = dm.encode(new)
    assert batch[B.SPARSE][1, 0].item() == B.OOV
    assert batch[B.SPARSE][0, 0].item() != B.OOV
    # Missing is its own value ("" as in FuxiCTR); never seen in training here, so it is OOV too.
    assert batch[B.SPARSE][2, 0].item() == B.OOV
    assert torch.isfinite(batch[B.DENSE]).all()


def test_rare_values_below_min_count_are_oov_and_vocab_comes_from_train_only():
    c = np.array(["common"] * 90 + ["rare"] * 2 + ["x"] * 8)
    dm = FrameCTR(frame(c=c), min_count=3)
    dm.setup()
    codes = dm.arrays["sparse"][:, 0]
    assert (codes[c == "rare"] == B.OOV).all()
    assert (codes[c == "common"] != B.OOV).all()
    train_values = set(c[dm.arrays["split"] == 0])
    assert dm.model_kwargs()["field_dims"][0] == 1 + sum(
        (c[dm.arrays["split"] == 0] == v).sum() >= 3 for v in train_values)


def test_fuxictr_bucketing_by_hand():
    values = pd.Series([np.nan, -1, 0, 1, 2, 3, 10, 100])
    expected = [0, -1, 0, 1, 2, math.floor(math.log(3) ** 2), math.floor(math.log(10) ** 2),
                math.floor(math.log(100) ** 2)]
    assert fuxictr_bucket(values).tolist() == expected == [0, -1, 0, 1, 2, 1, 5, 21]


def test_criteo_x1_standin_streams_in_chunks_with_the_same_result(tmp_path):
    whole = CriteoX1(data_dir=str(tmp_path), standin_rows=3000, chunk_rows=100_000)
    chunked = CriteoX1(data_dir=str(tmp_path), standin_rows=3000, chunk_rows=700)
    chunked.use_cache = whole.use_cache = False
    whole.setup(), chunked.setup()
    assert whole.data_hash == chunked.data_hash
    d = whole.describe()
    assert (d["train_rows"], d["val_rows"], d["test_rows"]) == (2100, 600, 300)  # 7:2:1
    assert d["fields_dense"] == 13 and d["fields_sparse"] == 26 and "synthetic" in d["source"]


def test_criteo_x4_buckets_integers_into_categorical_fields(tmp_path):
    dm = CriteoX4(data_dir=str(tmp_path), standin_rows=2000, min_count=2)
    dm.setup()
    kwargs = dm.model_kwargs()
    assert kwargs["num_dense"] == 0 and len(kwargs["field_dims"]) == 39
    assert dm.describe()["train_rows"] == 1600  # 8:1:1


def test_missing_bars_files_without_standin_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match=r"missing dataset file: expected one of train.csv"):
        CriteoX1(data_dir=str(tmp_path), standin="none").setup()


def test_criteo_sample_format_check(shared_data):
    dm = CriteoSample(data_dir=str(shared_data))
    dm.setup()
    d = dm.describe()
    assert (d["train_rows"], d["val_rows"], d["test_rows"]) == (140, 40, 20)
    assert dm.model_kwargs()["num_dense"] == 13 and len(dm.model_kwargs()["field_dims"]) == 26
    batch = dm.train_set.__getitems__(list(range(8)))
    assert batch[B.DENSE].dtype == torch.float32 and batch[B.SPARSE].dtype == torch.int64


def test_adult_split_and_preprocessing(shared_data):
    dm = Adult(data_dir=str(shared_data))
    dm.setup()
    d = dm.describe()
    assert (d["train_rows"], d["val_rows"], d["test_rows"]) == (39073, 4884, 4885)
    assert dm.model_kwargs()["num_dense"] == 6 and len(dm.model_kwargs()["field_dims"]) == 8
    dense = dm.train_set.tensors[B.DENSE]
    assert torch.allclose(dense.mean(0), torch.zeros(6), atol=1e-4)
    assert torch.allclose(dense.std(0), torch.ones(6), atol=1e-3)
    labels = torch.cat([s.tensors[B.LABEL] for s in (dm.train_set, dm.val_set, dm.test_set)])
    assert int(labels.sum()) == 11687  # ">50K" rows in SOURCE.md
    again = Adult(data_dir=str(shared_data))
    again.setup()
    assert again.data_hash == dm.data_hash  # fixed split, cached preprocessing
