"""Every bad input a new user tried is one clear message: the exit code, a single line naming what is wrong and
how to fix it, no traceback, and the store and the cache exactly as they were."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from benchmarks.cli import main, parse_passthrough
from benchmarks.store import ResultStore

TINY = {
    "name": "tiny-bad", "family": "seqrec", "title": "tiny board for bad inputs", "dataset": "synthetic-seqrec",
    "dataset_args": {"num_users": 60, "num_items": 20, "max_len": 6, "seed": 1}, "protocol": ["leave-one-out"],
    "primary_metric": "ndcg@10", "metrics": ["ndcg@10"], "models": {"sasrec": {"embed_dim": 8}, "pop": {}},
    "seeds": [0], "trainer": {"max_epochs": 1, "enable_progress_bar": False}, "early_stopping_patience": 1,
}
RECORD = {"run_id": "0" * 32, "board": "tiny-bad", "model": "pop", "seed": 0, "config_hash": "c", "status": "ok",
          "created_at": "2026-01-01T00:00:00+00:00", "metrics": {"test": {"ndcg@10": 0.1}, "val": {}}}


@pytest.fixture
def world(tmp_path):
    """A store holding one record, a tiny board file, an export folder and a cache folder to keep unchanged."""
    import yaml

    storage = f"sqlite:///{tmp_path / 'results.db'}"
    ResultStore(storage).add(RECORD)
    board = tmp_path / "tiny-bad.yaml"
    board.write_text(yaml.safe_dump(TINY))
    (tmp_path / "runs" / "tiny-bad").mkdir(parents=True)
    (tmp_path / "runs" / "tiny-bad" / "good.json").write_text(json.dumps({**RECORD, "run_id": "1" * 32}))
    (tmp_path / "malformed" / "tiny-bad").mkdir(parents=True)  # a good record beside a broken one
    (tmp_path / "malformed" / "tiny-bad" / "a-good.json").write_text(json.dumps({**RECORD, "run_id": "2" * 32}))
    (tmp_path / "malformed" / "tiny-bad" / "b-broken.json").write_text('{"run_id": "3", "board": ')
    (tmp_path / "notarecord" / "x").mkdir(parents=True)
    (tmp_path / "notarecord" / "x" / "config.json").write_text('{"lr": 0.1}')
    (tmp_path / "empty").mkdir()
    (tmp_path / "a-file").write_text("")
    (tmp_path / "broken.yaml").write_text("name: broken\nmodels:\n  sasrec: {embed_dim: 8\n  pop: {}\n")
    for folder, content in (("three-columns", "1\t10\t5\n1\t11\t4\n"), ("text-time", "1\t10\t5\t9\n1\t11\t4\tsoon\n"),
                            ("infinite-time", "1\t10\t5\t9\n1\t11\t4\tinf\n")):
        (tmp_path / folder / "movielens-100k").mkdir(parents=True)
        (tmp_path / folder / "movielens-100k" / "u.data").write_text(content)
    return {"tmp": tmp_path, "storage": storage, "board": str(board)}


def snapshot(world) -> tuple:
    cache = Path(os.environ["PAPERBOARD_CACHE"])
    files = sorted((str(p.relative_to(cache)), p.stat().st_size) for p in cache.rglob("*") if p.is_file()) \
        if cache.exists() else []
    return [r["run_id"] for r in ResultStore(world["storage"]).records()], files


# (case, argv with {board} {storage} {tmp} filled in, exit code, the message's first words)
CASES = [
    ("model value not a number", ["run", "{board}", "--model.embed_dim", "notanumber"], 2,
     "--model.embed_dim notanumber: sasrec's embed_dim takes an integer"),
    ("negative model size", ["run", "{board}", "--model.embed_dim", "-5"], 2,
     "--model.embed_dim -5: sasrec's embed_dim takes an integer >= 0"),
    ("model value of the wrong kind", ["run", "{board}", "--model.lr", "fast"], 2,
     "--model.lr fast: sasrec's lr takes a number"),
    ("negative data size", ["run", "{board}", "--data.num_users", "-5"], 2,
     "--data.num_users -5: synthetic-seqrec's num_users takes an integer >= 0"),
    ("zero seeds", ["run", "{board}", "--seeds", "0"], 2, "--seeds '0': give a count >= 1"),
    ("negative seeds", ["run", "{board}", "--seeds", "-2"], 2, "--seeds '-2': give a count >= 1"),
    ("zero epoch cap", ["run", "{board}", "--max-epochs", "0"], 2, "--max-epochs 0: give an epoch cap >= 1"),
    ("zero parallel runs", ["run", "{board}", "--jobs", "0"], 2, "--jobs 0: give a number >= 1"),
    ("negative epoch cap", ["run", "{board}", "--max-epochs", "-3"], 2, "--max-epochs -3: give an epoch cap >= 1"),
    ("trainer epoch cap -1", ["run", "{board}", "--trainer.max_epochs", "-1"], 2,
     "--trainer.max_epochs -1: a board run takes an integer >= 1"),
    ("trainer value of the wrong kind", ["run", "{board}", "--trainer.max_epochs", "ten"], 2,
     "--trainer.max_epochs ten: lightning.pytorch.Trainer's max_epochs takes an integer"),
    ("sweep: zero epoch cap", ["sweep", "{board}", "--model", "sasrec", "--max-epochs", "0"], 2,
     "--max-epochs 0: give an epoch cap >= 1"),
    ("sweep: model value not a number", ["sweep", "{board}", "--model", "sasrec", "--model.dropout", "x"], 2,
     "--model.dropout x: sasrec's dropout takes a number"),
    # bad data: the file, the line and the fix
    ("u.data without timestamps", ["run", "seqrec-ml100k", "--data-dir", "{tmp}/three-columns"], 2,
     "{tmp}/three-columns/movielens-100k/u.data line 1: column 'timestamp' is empty, not a finite number"),
    ("non-numeric timestamp", ["run", "seqrec-ml100k", "--data-dir", "{tmp}/text-time"], 2,
     "{tmp}/text-time/movielens-100k/u.data line 2: column 'timestamp' is 'soon', not a finite number"),
    ("infinite timestamp", ["run", "seqrec-ml100k", "--data-dir", "{tmp}/infinite-time"], 2,
     "{tmp}/infinite-time/movielens-100k/u.data line 2: column 'timestamp' is 'inf', not a finite number"),
    ("board file that is not YAML", ["run", "{tmp}/broken.yaml"], 2, "{tmp}/broken.yaml line 4 column 6: not valid YAML"),
    # bad stores and folders
    ("read-only SQLite store", ["run", "{board}", "--storage", "sqlite:///file:{tmp}/results.db?mode=ro&uri=true"], 2,
     "cannot write results to sqlite:///file:{tmp}/results.db?mode=ro&uri=true: attempt to write a readonly database"),
    ("SQLite store in a missing folder", ["run", "{board}", "--storage", "sqlite:///{tmp}/missing/results.db"], 2,
     "the SQLite store's folder {tmp}/missing does not exist"),
    ("unknown storage scheme", ["run", "{board}", "--storage", "nosuchdb://u:pw@host/db"], 2,
     "bad storage URL 'nosuchdb://u:***@host/db'"),
    ("board from a missing records folder", ["board", "{board}", "--records", "{tmp}/nonexistent"], 2,
     "no records folder at {tmp}/nonexistent"),
    ("import of a missing folder", ["import", "{tmp}/nonexistent"], 2, "no records folder at {tmp}/nonexistent"),
    ("import of an empty folder", ["import", "{tmp}/empty"], 2, "{tmp}/empty holds no *.json run records"),
    ("import of a malformed JSON", ["import", "{tmp}/malformed"], 2,
     "{tmp}/malformed/tiny-bad/b-broken.json is not valid JSON"),
    ("import of a JSON that is no record", ["import", "{tmp}/notarecord"], 2,
     "{tmp}/notarecord/x/config.json is not a paperboard run record: run_id, board, model"),
    ("export to an unwritable path", ["export", "--out", "{tmp}/a-file/runs"], 2, "cannot write to {tmp}/a-file/runs"),
]


@pytest.mark.parametrize("case, argv, code, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_message(world, capsys, case, argv, code, message):
    argv = [a.format(**world) for a in argv]
    if "--storage" not in argv:
        argv += ["--storage", world["storage"]]
    before = snapshot(world)
    assert main(argv) == code
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err + captured.out, captured.err
    assert lines[0].startswith(f"paperboard: error: {message.format(**world)}"), lines[0]
    assert snapshot(world) == before


@pytest.mark.parametrize("text, value", [("1e6", 1e6), ("1e-3", 1e-3), ("1.0e6", 1e6), ("-2.5E-2", -0.025),
                                         ("3", 3), ("true", True), ("bf16-mixed", "bf16-mixed"), ("[8,16]", [8, 16])])
def test_numbers_are_numbers_whatever_their_spelling(text, value):
    parsed = parse_passthrough(["--model.x", text])["model"]["x"]
    assert parsed == value and type(parsed) is type(value)


def test_values_take_the_constructor_types():
    from benchmarks.boards import load_board
    from benchmarks.values import check_overrides

    checked = check_overrides(load_board("quickstart"), ["sasrec"], parse_passthrough(
        ["--model.embed_dim", "1.6e1", "--model.lr", "1e-3", "--data.num_users", "1e3", "--trainer.max_epochs", "2e0",
         "--trainer.limit_train_batches", "1.0"]))
    assert checked["model"]["sasrec"] == {"embed_dim": 16, "lr": 0.001}
    assert checked["data"] == {"num_users": 1000} and type(checked["data"]["num_users"]) is int
    # an int | float annotation keeps a float a float: limit_train_batches 1.0 (all batches) is not 1 (one batch)
    assert checked["trainer"] == {"max_epochs": 2, "limit_train_batches": 1.0}
    assert type(checked["trainer"]["limit_train_batches"]) is float


@pytest.mark.parametrize("dataset", ["criteo-x1", "criteo-x4"])
def test_an_infinite_ctr_value_names_the_file_and_line(tmp_path, dataset):
    from contracts.registry import DATASETS
    from datamodules.base import DataError
    from datamodules.ctr.criteo import C_COLS, I_COLS, read_csv_chunks

    rows = [["1", *["1"] * len(I_COLS), *["a"] * len(C_COLS)] for _ in range(4)]
    rows[2][2] = "inf"  # I2 on the file's line 4 (line 1 is the header)
    path = tmp_path / "train.csv"
    path.write_text("\n".join(",".join(r) for r in [["label", *I_COLS, *C_COLS], *rows]) + "\n")
    datamodule = DATASETS.get(dataset).cls(data_dir=str(tmp_path))
    (chunk,) = read_csv_chunks(path, 100, I_COLS, C_COLS)
    with pytest.raises(DataError, match=f"{path} line 4: numeric column 'I2' is inf, not a finite number"):
        datamodule.parse_chunk(chunk)


def test_a_garbled_cache_is_deleted_and_rebuilt(tmp_path, capsys, monkeypatch):
    import numpy as np

    from datamodules.seqrec.movielens import MovieLens100K

    monkeypatch.setenv("PAPERBOARD_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "movielens-100k"
    folder.mkdir()
    (folder / "u.data").write_text("".join(f"{u}\t{i}\t5\t{t}\n" for u in range(1, 6) for t, i in enumerate(range(1, 6))))
    first = MovieLens100K(data_dir=str(tmp_path))._sequences()
    (cache,) = (tmp_path / "cache").rglob("*.npz")
    data = bytearray(cache.read_bytes())
    data[len(data) // 3] ^= 0xFF  # one flipped byte inside an array: zip's CRC catches it
    cache.write_bytes(bytes(data))
    capsys.readouterr()
    again = MovieLens100K(data_dir=str(tmp_path))._sequences()
    (notice,) = capsys.readouterr().out.splitlines()
    assert notice.startswith(f"paperboard: notice: the cache {cache} is unreadable") and "rebuilding" in notice
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert MovieLens100K(data_dir=str(tmp_path))._sequences().keys() == first.keys()  # the rebuilt cache reads
    assert capsys.readouterr().out == ""
