"""Out-of-core ctr preprocessing (datamodules.ctr.stream): the same arrays as the in-memory build, a split that
does not depend on chunking, and a loader that serves each row of a split exactly once."""
import numpy as np
import pandas as pd
import pytest
import torch

from contracts.batch import ctr as B
from datamodules.ctr.base import CTRDataModule
from datamodules.ctr.criteo import CriteoX1
from datamodules.ctr.stream import StreamingSplit, build_streaming, row_split


class PreSplit(CTRDataModule):
    """Chunks that carry their split, as BARS' train/valid/test files do."""

    registry_name = "presplit-test"
    folder = "presplit-test"
    label_col = "y"
    dense_cols = ("x1", "x2")
    sparse_cols = ("c1", "c2")
    use_cache = False

    def source_key(self):
        return "presplit"

    def frames(self):
        rng = np.random.default_rng(1)
        for split, n in (("train", 700), ("train", 650), ("val", 300), ("test", 250)):
            yield pd.DataFrame({"y": rng.integers(0, 2, n), "x1": rng.normal(3, 2, n), "x2": rng.exponential(5, n),
                                "c1": rng.choice([f"v{i}" for i in range(400)], n),
                                "c2": rng.choice(["a", "b", "", "d"], n)}), split


@pytest.mark.parametrize("dense_transform", ["standardize", "log_standardize"])
def test_streaming_build_equals_the_in_memory_build(tmp_path, dense_transform):
    dm = PreSplit(min_count=3, dense_transform=dense_transform)
    memory = dm.build(dm.frames())
    build_streaming(dm, tmp_path, block_rows=333)  # blocks cut across the chunks
    for j in range(2):
        assert np.array_equal(np.load(tmp_path / f"vocab-{j}.npy"), memory[f"vocab/{j}"])
    for name in ("label", "split", "sparse", "field_dims"):
        assert np.array_equal(np.load(tmp_path / f"{name}.npy"), memory[name]), name
    assert np.allclose(np.load(tmp_path / "dense.npy"), memory["dense"], atol=1e-5)
    assert (memory["sparse"][:, 0] == 0).any()  # min_count 3 sent some values to OOV, in both


def test_row_split_is_chunking_free_and_near_the_ratios():
    whole = row_split(0, 100_000, (0.7, 0.2, 0.1), seed=5)
    pieces = np.concatenate([row_split(s, 7_000 if s + 7_000 <= 100_000 else 100_000 - s, (0.7, 0.2, 0.1), 5)
                             for s in range(0, 100_000, 7_000)])
    assert np.array_equal(whole, pieces)
    assert np.allclose(np.bincount(whole) / 100_000, (0.7, 0.2, 0.1), atol=0.005)
    assert not np.array_equal(whole, row_split(0, 100_000, (0.7, 0.2, 0.1), seed=6))


def test_streaming_split_serves_each_row_once_in_shuffled_batches(tmp_path):
    dm = PreSplit()
    build_streaming(dm, tmp_path)
    label = np.load(tmp_path / "label.npy")
    dense = np.load(tmp_path / "dense.npy")
    train = StreamingSplit(tmp_path, "train", batch_size=64, shuffle=True, block_rows=500, seed=0)
    batches = list(train)
    assert len(batches) == len(train) == -(-1350 // 64)
    assert all(len(b[B.LABEL]) == 64 for b in batches[:-1])
    seen = torch.cat([b[B.DENSE] for b in batches]).numpy()
    rows = dense[np.load(tmp_path / "split.npy") == 0]
    assert np.array_equal(np.sort(seen[:, 0]), np.sort(rows[:, 0]))  # every training row once
    assert not np.array_equal(seen[:, 0], rows[:, 0])  # in shuffled order
    again = torch.cat([b[B.DENSE] for b in train]).numpy()
    assert not np.array_equal(again[:, 0], seen[:, 0])  # a new order each epoch
    val = torch.cat([b[B.LABEL] for b in StreamingSplit(tmp_path, "val", 128, shuffle=False, block_rows=500)])
    assert np.array_equal(val.numpy(), label[1350:1650])  # evaluation: file order


def test_criteo_x1_streaming_runs_end_to_end(tmp_path):
    dm = CriteoX1(data_dir=str(tmp_path), standin_rows=2000, chunk_rows=600, streaming=True, batch_size=256)
    dm.prepare_data()
    dm.setup()
    d = dm.describe()
    assert d["streaming"] and d["train_rows"] + d["val_rows"] + d["test_rows"] == 2000
    assert abs(d["train_rows"] - 1400) < 100  # 7:2:1 by row hash
    batch = next(iter(dm.train_dataloader()))
    assert batch[B.SPARSE].shape == (256, 26) and batch[B.DENSE].shape == (256, 13)
    assert batch[B.SPARSE].dtype == torch.long
    kwargs = dm.model_kwargs()
    assert len(kwargs["field_dims"]) == 26 and kwargs["num_dense"] == 13
    assert (batch[B.SPARSE] < torch.tensor(kwargs["field_dims"])).all()
