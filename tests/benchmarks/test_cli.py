"""The paperboard command end to end on a tiny synthetic board: run (one subprocess per run), board, list,
export/import; a failed run is recorded and the board goes on; bad input gives one clear message."""
import json
from pathlib import Path

import pytest
import yaml

from benchmarks.cli import main

TINY = {
    "name": "tiny-seqrec", "family": "seqrec", "title": "tiny synthetic board for tests",
    "dataset": "synthetic-seqrec",
    "dataset_args": {"num_users": 200, "num_items": 40, "max_len": 10, "seed": 1},
    "protocol": ["leave-one-out, full ranking"],
    "primary_metric": "ndcg@10", "metrics": ["hr@10", "ndcg@10"],
    "models": {"sasrec": {"embed_dim": 16, "loss": "ce"}, "pop": {}},
    "seeds": [0], "trainer": {"max_epochs": 2, "enable_progress_bar": False}, "early_stopping_patience": 2,
    "published": [{"model": "sasrec", "metric": "ndcg@10", "value": 0.5, "source": "a made-up test reference"}],
    "tolerance": {"ndcg@10": 0.01},
}


def write_board(tmp_path, **changes):
    path = tmp_path / "tiny-seqrec.yaml"
    path.write_text(yaml.safe_dump({**TINY, **changes}, sort_keys=False))
    return str(path)


@pytest.fixture
def storage(tmp_path):
    return f"sqlite:///{tmp_path / 'results.db'}"


@pytest.mark.timeout(300)
def test_run_board_list_export_import(tmp_path, storage, capsys):
    board = write_board(tmp_path)
    assert main(["run", board, "--storage", storage, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "[1/2] tiny-seqrec: sasrec seed=0" in out and "[2/2] tiny-seqrec: pop seed=0" in out
    table = out.replace("**", "")  # the leading row is bold
    assert "## Protocol" in out and "| sasrec |" in table and "| pop |" in table

    from benchmarks.store import ResultStore

    records = ResultStore(storage).records(board="tiny-seqrec")
    assert [r["status"] for r in records] == ["ok", "ok"]
    sasrec = next(r for r in records if r["model"] == "sasrec")
    for key in ("config_hash", "data_hash", "params", "train_seconds", "eval_seconds", "peak_rss_mb", "versions",
                "hardware", "world_size", "git_sha", "best_epoch"):
        assert key in sasrec, key
    assert set(sasrec["metrics"]) == {"val", "test", "last_val"} and "ndcg@10" in sasrec["metrics"]["test"]

    # export -> import into a fresh store -> the same board renders from either
    out_dir = tmp_path / "runs"
    assert main(["export", "tiny-seqrec", "--out", str(out_dir), "--storage", storage]) == 0
    files = sorted(out_dir.rglob("*.json"))
    assert len(files) == 2 and json.loads(files[0].read_text())["board"] == "tiny-seqrec"
    other = f"sqlite:///{tmp_path / 'other.db'}"
    assert main(["import", str(out_dir), "--storage", other]) == 0
    capsys.readouterr()
    assert main(["board", board, "--storage", other]) == 0
    from_store = capsys.readouterr().out
    assert main(["board", board, "--records", str(out_dir)]) == 0
    assert capsys.readouterr().out == from_store
    assert "Published numbers beside ours" in from_store and "a made-up test reference" in from_store

    for fmt, marker in (("csv", "model,tuned,config"), ("html", "<table")):
        assert main(["board", board, "--storage", storage, "--format", fmt]) == 0
        assert marker in capsys.readouterr().out

    # running the same board again resumes it: finished runs are kept, only a new seed or new arguments train
    assert main(["run", board, "--storage", storage, "--quiet", "--seeds", "0,1"]) == 0
    out = capsys.readouterr().out
    assert "2 run(s) already finished in the store are kept" in out
    assert "sasrec seed=1" in out and "pop seed=1" in out and "seed=0 ..." not in out
    assert main(["run", board, "--storage", storage, "--quiet", "--models", "pop", "--seeds", "1", "--rerun"]) == 0
    assert "pop seed=0 ..." in capsys.readouterr().out
    assert len(ResultStore(storage).records(board="tiny-seqrec")) == 5

    assert main(["list", "models"]) == 0
    listed = capsys.readouterr().out
    assert "sasrec" in listed and "gru4rec" in listed and "pop" in listed
    assert main(["list", "boards"]) == 0
    assert "quickstart" in capsys.readouterr().out


@pytest.mark.timeout(300)
def test_extend_continues_a_capped_run_from_its_checkpoint(tmp_path, storage, capsys):
    import lightning.pytorch as pl

    from benchmarks.runner import RunSpec, execute
    from benchmarks.store import ResultStore

    board = write_board(tmp_path, models={"sasrec": {"embed_dim": 16, "loss": "ce", "lr": 0.01}},
                        early_stopping_patience=5)
    assert main(["run", board, "--storage", storage, "--quiet"]) == 0
    (capped,) = ResultStore(storage).records(board="tiny-seqrec")
    assert capped["best_epoch"] == capped["epochs"] - 1 == 1  # still improving at the board's cap of 2

    # in process: the continued fit starts at epoch 2 with the capped run's best score and patience counter
    seen = []

    class Epochs(pl.Callback):
        def on_train_epoch_start(self, trainer, module):
            seen.append(trainer.current_epoch)

        def on_train_end(self, trainer, module):
            seen.append(float(trainer.checkpoint_callback.best_model_score))

    resume = {"run_id": capped["run_id"], "checkpoint": capped["checkpoint"], "epochs": 2, "max_epochs": 2,
              "train_seconds": capped["train_seconds"]}
    direct = execute(RunSpec(board=board, model="sasrec", seed=0, trainer_args={"max_epochs": 3},
                             checkpoint_dir=str(tmp_path / "direct"), resume_from=resume), callbacks=[Epochs()])
    assert direct["status"] == "ok", direct.get("traceback")
    assert seen[:-1] == [2] and direct["epochs"] == 3
    assert seen[-1] >= capped["metrics"]["val"]["ndcg@10"] - 1e-6  # the capped run's best score was kept
    assert direct["checkpoint"].startswith(str(tmp_path / "direct"))  # the capped run's checkpoint is untouched

    # --dry-run says what --extend would do and trains nothing; without the checkpoint the run would start over
    dry = ["run", board, "--storage", storage, "--max-epochs", "4", "--extend", "--dry-run"]
    assert main(dry) == 0
    assert f"sasrec seed=0: continue run {capped['run_id'][:8]} from epoch 2" in capsys.readouterr().out
    moved = Path(capped["checkpoint"]).rename(tmp_path / "elsewhere.ckpt")
    assert main(dry) == 0
    assert "sasrec seed=0: train from epoch 0: the checkpoint of capped run" in capsys.readouterr().out
    moved.rename(capped["checkpoint"])
    assert main(dry[:4] + ["--dry-run"]) == 0 and "sasrec seed=0: kept" in capsys.readouterr().out
    assert len(ResultStore(storage).records(board="tiny-seqrec")) == 1

    # from the command line: --extend finds the capped run by itself; the board shows the continued run only
    assert main(["run", board, "--storage", storage, "--quiet", "--max-epochs", "4", "--extend"]) == 0
    assert "1 run(s) continue a capped run from its checkpoint" in capsys.readouterr().out
    extended = next(r for r in ResultStore(storage).records(board="tiny-seqrec") if r.get("resumed_from"))
    assert extended["resumed_from"]["run_id"] == capped["run_id"] and extended["epochs"] == 4
    assert extended["train_seconds"] > capped["train_seconds"]
    assert main(["board", board, "--storage", storage]) == 0
    table = capsys.readouterr().out
    assert extended["run_id"][:8] in table and capped["run_id"][:8] not in table

    # a second --extend continues the end of the chain (4 epochs, patience left), not the first capped run again
    assert main(["run", board, "--storage", storage, "--quiet", "--max-epochs", "5", "--extend"]) == 0
    longest = max(ResultStore(storage).records(board="tiny-seqrec"), key=lambda r: r["epochs"])
    assert longest["epochs"] == 5 and longest["resumed_from"]["run_id"] == extended["run_id"]
    assert longest["train_seconds"] > extended["train_seconds"]
    # the latest-epoch checkpoint of a continued run never takes a kept best checkpoint with it
    assert all(Path(r["checkpoint"]).is_file() for r in ResultStore(storage).records(board="tiny-seqrec"))

    # a run that early stopping ended before its own cap is finished under any larger cap: no fresh run starts
    from benchmarks.boards import load_board
    from benchmarks.schedule import is_finished

    spec = RunSpec(board=board, model="sasrec", seed=0, trainer_args={"max_epochs": 10})
    stopped_early = dict(longest, config=dict(longest["config"], trainer=dict(longest["config"]["trainer"], max_epochs=8)))
    assert is_finished(load_board(board), spec, [stopped_early])
    assert not is_finished(load_board(board), spec, [longest])  # stopped by its cap of 5: 10 epochs may do better


def test_a_continued_run_and_its_shorter_sibling_continuations_leave_the_board():
    from benchmarks.records import latest_per_seed

    def record(run_id, epochs, created_at, parent=None):
        return {"run_id": run_id, "model": "sasrec", "config_hash": run_id, "data_hash": "d", "seed": 0,
                "epochs": epochs, "created_at": created_at, "resumed_from": parent and {"run_id": parent}}

    capped, to40, to101 = record("a", 15, "1"), record("b", 40, "2", "a"), record("c", 101, "3", "a")
    other_seed = dict(record("d", 15, "4"), seed=1)
    assert {r["run_id"] for r in latest_per_seed([capped, to40, to101, other_seed])} == {"c", "d"}
    assert {r["run_id"] for r in latest_per_seed([capped, to40])} == {"b"}


def test_the_cap_note_names_only_runs_their_cap_stopped():
    from benchmarks.boards import load_board
    from benchmarks.render import render_markdown

    def record(model, epochs, cap):
        return {"run_id": model, "board": "seqrec-beauty", "model": model, "seed": 0, "config_hash": model,
                "data_hash": "d", "status": "ok", "created_at": "1", "epochs": epochs, "best_epoch": epochs - 5, "params": 1,
                "config": {"trainer": {"max_epochs": cap}},
                "metrics": {"test": {"ndcg@10": 0.03}, "val": {"ndcg@10": 0.04}}}

    board = load_board("seqrec-beauty")  # its cap is 200 epochs
    text = render_markdown(board, [record("hstu", 20, 60), record("gru4rec", 15, 15), record("sasrec", 77, 200)])
    (note,) = [line for line in text.splitlines() if line.startswith("Note: stopped by a smaller epoch cap")]
    assert "gru4rec (15 of 200)" in note and "hstu" not in note and "sasrec" not in note


@pytest.mark.timeout(300)
def test_a_failed_run_is_recorded_and_the_board_goes_on(tmp_path, storage, capsys):
    board = write_board(tmp_path, models={"sasrec": {"embed_dim": 16, "lr": -1.0}, "pop": {}})
    assert main(["run", board, "--storage", storage, "--quiet"]) == 1
    captured = capsys.readouterr()
    assert "1 of 2 run(s) failed" in captured.err
    assert "## Failed runs" in captured.out and "Invalid learning rate" in captured.out
    from benchmarks.store import ResultStore

    by_model = {r["model"]: r for r in ResultStore(storage).records(board="tiny-seqrec")}
    assert by_model["sasrec"]["status"] == "failed" and "Traceback" in by_model["sasrec"]["traceback"]
    assert by_model["pop"]["status"] == "ok"
    # the failed run is retried (resume keeps pop); once seed 0 of sasrec finished, its failure leaves the board
    board = write_board(tmp_path, models={"sasrec": {"embed_dim": 16, "lr": 0.001}, "pop": {}})
    assert main(["run", board, "--storage", storage, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "1 run(s) already finished in the store are kept" in out and "## Failed runs" not in out


@pytest.mark.parametrize("argv, message", [
    (["run", "seqrec-ml100k", "--data-dir", "/nonexistent/paperboard-data"], "missing dataset file"),
    (["run", "quickstart", "--models", "sasrecc"], "model 'sasrecc' is not on board quickstart"),
    (["run", "quickstart", "--model.dropoutt", "0.3", "--models", "sasrec"], "unknown config key 'model.dropoutt'"),
    (["run", "quickstart", "--trainer.max_epoch", "3"], "unknown config key(s) trainer.max_epoch"),
    (["run", "quickstart", "--data.max_lenn", "3"], "unknown config key 'data.max_lenn'"),
    (["run", "no-such-board"], "unknown board 'no-such-board'"),
    (["run", "quickstart", "--storage", "nosuchdb://x"], "bad storage URL"),
    (["run", "quickstart", "--seeds", "two"], "--seeds 'two': give a count"),
    (["run", "quickstart", "--frobnicate", "1"], "unrecognised argument '--frobnicate'"),
])
def test_bad_input_gives_one_clear_message(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert err.count("\n") == 1  # one line, no traceback


def test_unknown_board_key_is_rejected(tmp_path):
    from benchmarks.boards import ConfigError, load_board

    with pytest.raises(ConfigError, match="unknown key 'seed'.*did you mean 'seeds'"):
        load_board(write_board(tmp_path, seed=[0]))


def test_every_committed_board_and_paper_loads():
    from benchmarks.boards import board_names, load_board, load_paper, paper_names
    from contracts.registry import DATASETS, MODELS

    import datamodules  # noqa: F401
    import lightning_modules  # noqa: F401

    for name in board_names():
        board = load_board(name)
        assert board.dataset in DATASETS, (name, board.dataset)
        for model in board.models:  # a row "name@variant" is registered model "name" with its own arguments
            assert model.split("@", 1)[0] in MODELS, (name, model)
    for name in paper_names():
        paper = load_paper(name)
        for board in paper.boards:
            assert board in board_names(), (name, board)


@pytest.mark.timeout(600)
def test_trainer_options_pass_through_to_lightning_ddp(tmp_path, storage, capsys):
    """`--trainer.devices 2 --trainer.strategy ddp` reaches Lightning unchanged: DDP re-launches the worker once
    per extra rank and rank 0 alone writes the record."""
    board = write_board(tmp_path, models={"sasrec": {"embed_dim": 16, "loss": "ce"}})
    argv = ["run", board, "--storage", storage, "--quiet", "--trainer.devices", "2", "--trainer.strategy", "ddp",
            "--trainer.accelerator", "cpu"]
    assert main(argv) == 0
    from benchmarks.store import ResultStore

    (record,) = ResultStore(storage).records(board="tiny-seqrec")
    assert record["status"] == "ok" and record["world_size"] == 2 and record["strategy"] == "DDPStrategy"
    assert record["config"]["trainer"]["devices"] == 2


def test_a_custom_board_file_may_not_borrow_a_built_in_name(tmp_path, capsys):
    path = write_board(tmp_path, name="quickstart")
    assert main(["run", path, "--quiet"]) == 2
    assert "keeps the name 'quickstart' of the built-in board" in capsys.readouterr().err


@pytest.mark.timeout(300)
def test_parallel_runs_give_the_sequential_metrics(tmp_path, capsys):
    from benchmarks.store import ResultStore

    board = write_board(tmp_path, models={"sasrec": {"embed_dim": 8, "loss": "ce"}, "pop": {}}, seeds=[0],
                        trainer={"max_epochs": 1, "enable_progress_bar": False})
    one, two = f"sqlite:///{tmp_path / 'one.db'}", f"sqlite:///{tmp_path / 'two.db'}"
    assert main(["run", board, "--storage", one, "--quiet"]) == 0
    assert main(["run", board, "--storage", two, "--quiet", "--jobs", "2"]) == 0
    out = capsys.readouterr().out
    assert "2/2 runs done" in out and "ETA" in out

    def metrics(url):
        return {(r["model"], r["seed"]): r["metrics"]["test"] for r in ResultStore(url).records(board="tiny-seqrec")}

    assert metrics(one) == metrics(two) and len(metrics(one)) == 2
    threads = {r["hardware"]["torch_threads"] for r in ResultStore(two).records(board="tiny-seqrec")}
    assert threads == {max(1, (__import__("os").cpu_count() or 1) // 2)}
