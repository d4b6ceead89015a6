"""The seqrec data pipeline: leave-one-out splits, stable ordering, padding, and clear errors."""
import gzip

import numpy as np
import pytest

from contracts.batch import seqrec as B
from datamodules.base import DataError
from datamodules.seqrec.base import SeqRecDataModule, left_padded_windows
from datamodules.seqrec.movielens import MovieLens100K, MovieLens1M
from datamodules.seqrec.synthetic import SyntheticSeqRec


class InMemory(SeqRecDataModule):
    registry_name = "in-memory"

    def __init__(self, raw, **kwargs):
        super().__init__(**kwargs)
        self.raw = raw

    def _sequences(self):  # in memory: no source file, no cache
        return self.sequences_from_interactions(self.raw)


def test_left_padded_windows_by_hand():
    values = np.arange(10, 20)
    out = left_padded_windows(values, np.array([0, 5]), np.array([3, 10]), 4)
    assert out.tolist() == [[0, 10, 11, 12], [16, 17, 18, 19]]


def test_leave_one_out_split_by_hand():
    # user 7: items 100..104 in time order (given shuffled); user 9 too short for a split (2 items) is dropped
    raw = {"user": np.array([7, 7, 7, 9, 7, 7, 9]), "item": np.array([102, 100, 101, 50, 104, 103, 51]),
           "time": np.array([3, 1, 2, 1, 5, 4, 2])}
    dm = InMemory(raw, max_len=4)
    dm.setup()
    assert dm.num_users == 1 and dm.num_items == 5  # ids 100..104 -> 1..5
    train = dm.train_set.__getitems__([0])
    assert train[B.INPUT_IDS].tolist() == [[0, 0, 1, 2]]  # train part = 100,101,102
    assert train[B.TARGET_IDS].tolist() == [[0, 0, 2, 3]]
    assert train[B.NEXT_TIMESTAMPS].tolist() == [[0, 0, 2, 3]]
    val, test = dm.val_set.__getitems__([0]), dm.test_set.__getitems__([0])
    assert val[B.INPUT_IDS].tolist() == [[0, 1, 2, 3]] and val[B.TARGET].tolist() == [4]
    assert val[B.NEXT_TIMESTAMPS][0, -1].item() == 4  # the validation target's time
    assert test[B.INPUT_IDS].tolist() == [[1, 2, 3, 4]] and test[B.TARGET].tolist() == [5]


def test_same_timestamp_items_keep_source_order():
    raw = {"user": np.zeros(5, dtype=int), "item": np.array([5, 3, 9, 1, 7]), "time": np.array([1, 2, 2, 2, 3])}
    dm = InMemory(raw, max_len=8)
    dm.setup()
    # raw 5,3,9,1,7 -> ids (sorted raw: 1,3,5,7,9) 3,2,5,1,4; the three ties at t=2 stay 3,9,1
    assert dm.test_set.__getitems__([0])[B.INPUT_IDS][0, -4:].tolist() == [3, 2, 5, 1]


def test_all_windows_cover_every_training_target_once():
    raw = {"user": np.zeros(12, dtype=int), "item": np.arange(1, 13), "time": np.arange(12)}
    dm = InMemory(raw, max_len=3, train_windows="all")
    dm.setup()
    targets = dm.train_set.tensors[B.TARGET_IDS]
    got = sorted(t for t in targets.flatten().tolist() if t)
    assert got == list(range(2, 11))  # train part = items 1..10, targets 2..10, each exactly once


def test_users_too_short_for_a_split_give_a_clear_error():
    raw = {"user": np.array([1, 1, 2]), "item": np.array([1, 2, 3]), "time": np.array([1, 2, 3])}
    with pytest.raises(DataError, match="splits would be empty"):
        InMemory(raw).setup()


def test_missing_file_names_the_file_the_url_and_the_flag(tmp_path):
    with pytest.raises(DataError) as err:
        MovieLens100K(data_dir=str(tmp_path)).prepare_data()
    message = str(err.value)
    assert "ml-100k.inter" in message and "u.data" in message and "--data-dir" in message
    assert "grouplens.org" in message


def test_wrong_column_is_named(tmp_path):
    folder = tmp_path / "movielens-1m"
    folder.mkdir()
    (folder / "ml-1m_seq.csv").write_text("user_id,position,movie_id\n1,0,10\n")  # plain name: no pinned digest
    with pytest.raises(DataError, match="lacks column.*seq_idx"):
        MovieLens1M(data_dir=str(tmp_path)).prepare_data()


def test_a_corrupt_file_fails_its_checksum(tmp_path):
    folder = tmp_path / "movielens-1m"
    folder.mkdir()
    with gzip.open(folder / "ml-1m_seq.csv.gz", "wt") as f:
        f.write("user_id,seq_idx,movie_id\n1,0,10\n")
    with pytest.raises(DataError, match="checksum mismatch"):
        MovieLens1M(data_dir=str(tmp_path)).prepare_data()


def test_reads_grouplens_u_data(tmp_path):
    folder = tmp_path / "movielens-100k"
    folder.mkdir()
    rows = [(1, 10, 5, 100), (1, 11, 3, 99), (1, 12, 4, 101), (2, 10, 4, 50), (2, 12, 4, 51), (2, 13, 1, 52)]
    (folder / "u.data").write_text("".join("\t".join(map(str, r)) + "\n" for r in rows))
    dm = MovieLens100K(data_dir=str(tmp_path))
    dm.setup()
    assert dm.num_users == 2 and dm.num_items == 4
    # user 1 in time order: 11, 10, 12 -> test target is 12 (id 3)
    assert dm.test_set.__getitems__([0])[B.TARGET].tolist() == [3]


def test_real_movielens_100k(shared_data):
    dm = MovieLens100K(data_dir=str(shared_data), max_len=50)
    dm.prepare_data()
    dm.setup()
    assert (dm.num_users, dm.num_items, dm.num_interactions) == (943, 1682, 100_000)
    assert len(dm.test_set) == 943


def test_synthetic_is_deterministic_per_seed():
    a, b, c = SyntheticSeqRec(seed=1), SyntheticSeqRec(seed=1), SyntheticSeqRec(seed=2)
    for dm in (a, b, c):
        dm.setup()
    assert a.data_hash == b.data_hash != c.data_hash
