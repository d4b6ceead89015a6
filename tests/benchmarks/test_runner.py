"""The runner's record: a diverged run is a failed run, and every run carries CPU seconds and the load average."""
from __future__ import annotations

import math
import os
import signal
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping

from benchmarks.runner import (Diverged, DivergenceGuard, EarlyStoppingAfterMinEpochs, RunSpec, execute,
                               run_in_subprocess)
from contracts.run import CONTINUATION_ONLY

FAST = {"enable_progress_bar": False}


def test_a_diverging_run_is_recorded_failed_with_reason_diverged():
    record = execute(RunSpec(board="quickstart", model="sasrec", seed=0, model_args={"lr": 1e6},
                             trainer_args={"max_epochs": 3, **FAST}))
    assert record["status"] == "failed" and record["failure_reason"] == "diverged"
    assert record["diverged_epoch"] == 0
    assert record["error"] == "diverged: train/loss is nan at epoch 0"
    assert "metrics" not in record  # no numbers of a diverged run reach a board


class ScriptedMonitor(pl.LightningModule):
    """Logs validation score `scores[epoch]`: a plateau, then a late rise, then a plateau again."""

    def __init__(self, scores: list[float]):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.scores = scores

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        self.log("val/score", self.scores[self.current_epoch])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 2)), batch_size=4)

    val_dataloader = train_dataloader


@pytest.mark.parametrize("stopper, epochs", [(EarlyStopping, 5), (EarlyStoppingAfterMinEpochs, 8)])
def test_patience_counts_from_min_epochs_so_a_run_rising_at_min_epochs_goes_on(stopper, epochs):
    # patience 2 runs out at epoch 2 on the plateau; the rise begins at epoch 4, min_epochs is 5.
    # Lightning's EarlyStopping acts on that old signal at min_epochs; ours follows the rise to its end
    scores = [1.0, 0.5, 0.5, 0.5, 2.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0]
    trainer = pl.Trainer(max_epochs=len(scores), min_epochs=5, logger=False, enable_checkpointing=False,
                         callbacks=[stopper("val/score", mode="max", patience=2)], enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(ScriptedMonitor(scores))
    assert trainer.current_epoch == epochs


class NaNMonitor(pl.LightningModule):
    """Trains normally (finite loss) while its validation metric turns NaN from epoch `bad_epoch` on."""

    def __init__(self, bad_epoch: int):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.bad_epoch = bad_epoch

    def training_step(self, batch, batch_idx):
        loss = self.layer(batch[0]).pow(2).mean()
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        value = float("nan") if self.current_epoch >= self.bad_epoch else float(self.current_epoch)
        self.log("val/score", value)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 2)), batch_size=4)

    val_dataloader = train_dataloader


def test_a_nan_monitor_fails_the_run_even_where_early_stopping_would_just_stop():
    # EarlyStopping(check_finite=True) alone ends fit quietly at the NaN epoch; the guard turns that into a failure
    trainer = pl.Trainer(max_epochs=5, callbacks=[EarlyStopping("val/score", mode="max"), DivergenceGuard("val/score")],
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0)
    with pytest.raises(Diverged, match=r"^diverged: val/score is nan at epoch 2$") as caught:
        trainer.fit(NaNMonitor(bad_epoch=2))
    assert caught.value.epoch == 2 and caught.value.value == "nan"


def test_a_checkpoint_that_scores_nan_at_final_evaluation_fails_the_run(monkeypatch):
    # the best checkpoint's final validation runs on a Trainer of its own (without the caller's callbacks): the
    # score it returns is made inf there; fit's per-epoch validations do not go through Trainer.validate
    validate = pl.Trainer.validate
    monkeypatch.setattr(pl.Trainer, "validate",
                        lambda self, *a, **k: [{**validate(self, *a, **k)[0], "val/ndcg@10": float("inf")}])
    record = execute(RunSpec(board="quickstart", model="sasrec", seed=0, trainer_args={"max_epochs": 1, **FAST}))
    assert record["status"] == "failed" and record["failure_reason"] == "diverged"
    assert record["error"] == "diverged: val/ndcg@10 of the best checkpoint is inf at epoch 0"


def test_other_failures_keep_reason_error():
    record = execute(RunSpec(board="quickstart", model="sasrec", seed=0, model_args={"no_such_arg": 1}))
    assert record["status"] == "failed" and record["failure_reason"] == "error"
    assert "diverged_epoch" not in record


class SigtermAt(pl.Callback):
    """Sends this process SIGTERM as epoch `epoch` starts, as a scheduler or `timeout` does."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, module):
        if trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGTERM)


def test_a_run_stopped_by_sigterm_is_recorded_as_stopped_not_as_a_silent_exit():
    record = execute(RunSpec(board="quickstart", model="sasrec", seed=0, trainer_args={"max_epochs": 3, **FAST}),
                     callbacks=[SigtermAt(1)])
    assert record["status"] == "failed" and record["failure_reason"] == "stopped"
    assert record["stopped_epoch"] == 1 and "SIGTERM" in record["error"]
    assert "metrics" not in record and record["cpu_seconds"] > 0


def test_a_stopped_run_continues_from_its_last_epoch_to_the_result_of_an_unstopped_run():
    # sasrec draws dropout masks and the shuffle from the global generators, which the checkpoint carries
    args = dict(board="quickstart", model="sasrec", seed=0, trainer_args={"max_epochs": 4, **FAST},
                model_args={"dropout": 0.3})
    whole = execute(RunSpec(**args))
    stopped = execute(RunSpec(**args, run_id="stopped-once"), callbacks=[SigtermAt(2)])
    assert stopped["failure_reason"] == "stopped" and "continues it" in stopped["error"]
    from benchmarks.boards import load_board
    from benchmarks.runner import run_checkpoint_dir
    last = run_checkpoint_dir(load_board("quickstart"), RunSpec(**args, run_id="stopped-once")) / "last.ckpt"
    assert last.is_file()

    continued = execute(RunSpec(**args, run_id="stopped-once", resume_interrupted=str(last)))
    assert continued["status"] == "ok", continued.get("error")
    assert continued["resumed_interrupted_at_epoch"] == 2 and continued["epochs"] == whole["epochs"] == 4
    assert continued["best_epoch"] == whole["best_epoch"]
    assert continued["metrics"] == whole["metrics"]  # the same numbers, not just close ones
    assert "earlier_attempt_git_shas" not in continued  # both attempts ran this code
    from benchmarks.runner import settle_attempt
    settle_attempt(load_board("quickstart"), RunSpec(**args, run_id="stopped-once"), continued)
    assert not last.exists() and Path(continued["checkpoint"]).exists()  # once stored, only the best is kept
    # the clock counts the first attempt's epochs too (up to its last checkpoint)
    assert continued["train_cpu_seconds"] > 0.4 * whole["train_cpu_seconds"]


@pytest.mark.parametrize("model, model_args", [("ippo", {}), ("qmix", {"batch_size": 2, "target_update_interval": 6})])
def test_a_stopped_rollout_run_continues_as_an_unstopped_run(model, model_args):
    # the training episodes' seeds come from the training set's own numpy generator (carried by the datamodule's
    # state); QMIX also needs its replay buffer and target network back, and every run its learning curve
    scenario = {"N": 3, "local_ratio": 0.5, "max_cycles": 5}
    args = dict(board="marl-simple-spread", model=model, seed=0, model_args=model_args,
                trainer_args={"max_epochs": 3, **FAST},
                data_args={"scenario_args": scenario, "num_envs": 2, "rollouts_per_epoch": 2, "eval_episodes": 4})
    whole = execute(RunSpec(**args))
    stopped = execute(RunSpec(**args, run_id=f"{model}-stopped"), callbacks=[SigtermAt(2)])
    assert stopped["failure_reason"] == "stopped"
    from benchmarks.boards import load_board
    from benchmarks.runner import run_checkpoint_dir
    last = run_checkpoint_dir(load_board("marl-simple-spread"), RunSpec(**args, run_id=f"{model}-stopped")) / "last.ckpt"
    if model == "qmix":  # the replay buffer travels in last.ckpt only, not in the finished run's kept checkpoint
        assert torch.load(last, weights_only=True)[CONTINUATION_ONLY]["replay_buffer"]["size"] == 8
        assert CONTINUATION_ONLY not in torch.load(whole["checkpoint"], weights_only=True)
    continued = execute(RunSpec(**args, run_id=f"{model}-stopped", resume_interrupted=str(last)))
    assert continued["status"] == "ok", continued.get("error")
    assert continued["resumed_interrupted_at_epoch"] == 2  # the last finished epoch, though not an improving one

    def scores(record):  # every metric but the speed ones
        return {split: {k: v for k, v in values.items() if not k.endswith("per_s")}
                for split, values in record["metrics"].items()}
    assert scores(continued) == scores(whole)


def test_a_learning_curve_travels_in_checkpoints_and_testing_after_fit_keeps_the_whole_one(tmp_path):
    from lightning_modules.curves import KeepsLearningCurve

    class Curved(KeepsLearningCurve, pl.LightningModule):
        def __init__(self, curve):
            super().__init__()
            self.learning_curve = list(curve)

    checkpoint = {}
    Curved([(10, 0.5), (20, {"mrr": 0.7})]).on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "curve.ckpt")
    checkpoint = torch.load(tmp_path / "curve.ckpt", weights_only=True)
    continued = Curved([])  # a fresh process continuing the run
    continued.on_load_checkpoint(checkpoint)
    assert continued.learning_curve == [(10, 0.5), (20, {"mrr": 0.7})]
    after_fit = Curved([(10, 0.5), (20, {"mrr": 0.7}), (30, 0.9)])  # testing the best (an earlier) checkpoint
    after_fit.on_load_checkpoint(checkpoint)
    assert len(after_fit.learning_curve) == 3


def test_a_datamodule_carries_its_training_generator_through_a_weights_only_checkpoint(tmp_path):
    from datamodules.imitation.microgrid import SyntheticMicrogrid

    def prepared():
        dm = SyntheticMicrogrid(episodes_per_operator=2)
        dm.setup("fit")
        return dm

    first = prepared()
    first.train_set.rng.permutation(50)  # an epoch's draws
    torch.save(first.state_dict(), tmp_path / "dm.pt")
    expected = first.train_set.rng.permutation(50)
    second = prepared()
    assert not np.array_equal(second.train_set.rng.permutation(50), expected)  # a fresh set replays epoch 0
    second = prepared()
    second.load_state_dict(torch.load(tmp_path / "dm.pt", weights_only=True))
    assert np.array_equal(second.train_set.rng.permutation(50), expected)


def test_a_run_continued_by_other_code_names_the_commit_of_its_earlier_epochs(monkeypatch):
    import benchmarks.runner as runner
    args = dict(board="quickstart", model="gru4rec", seed=0, trainer_args={"max_epochs": 3, **FAST})
    monkeypatch.setattr(runner, "git_sha", lambda: "old-commit")
    execute(RunSpec(**args, run_id="two-commits"), callbacks=[SigtermAt(1)])
    monkeypatch.setattr(runner, "git_sha", lambda: "new-commit")
    from benchmarks.boards import load_board
    last = runner.run_checkpoint_dir(load_board("quickstart"), RunSpec(**args, run_id="two-commits")) / "last.ckpt"
    continued = execute(RunSpec(**args, run_id="two-commits", resume_interrupted=str(last)))
    assert continued["status"] == "ok" and continued["git_sha"] == "new-commit", continued.get("error")
    assert continued["earlier_attempt_git_shas"] == ["old-commit"]


def test_a_run_stopped_while_early_stopping_counts_keeps_its_count_when_continued(tmp_path):
    # stopped so that only the last epoch is left: the continued run must check the epoch before it against patience
    # once (a second check of the same score would count as a non-improving epoch and end the run an epoch early)
    board = _quickstart_variant(tmp_path, "qs-patience", early_stopping_patience=1, trainer={"max_epochs": 30})
    args = dict(board=board, model="sasrec", seed=0, trainer_args=FAST)
    whole = execute(RunSpec(**args))
    assert whole["status"] == "ok" and whole["epochs"] < 30, whole.get("error")
    # a quickstart epoch is one batch: SIGTERM then takes effect once the epoch (and its checkpoint) is done
    stopped = execute(RunSpec(**args, run_id="stopped-late"), callbacks=[SigtermAt(whole["epochs"] - 2)])
    assert stopped["failure_reason"] == "stopped"
    from benchmarks.boards import load_board
    from benchmarks.runner import run_checkpoint_dir
    last = run_checkpoint_dir(load_board(board), RunSpec(**args, run_id="stopped-late")) / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == whole["epochs"] - 2
    continued = execute(RunSpec(**args, run_id="stopped-late", resume_interrupted=str(last)))
    assert continued["status"] == "ok", continued.get("error")
    assert continued["resumed_interrupted_at_epoch"] == whole["epochs"] - 1
    assert continued["epochs"] == whole["epochs"] and continued["metrics"] == whole["metrics"]


def test_a_board_run_notes_its_attempt_and_the_next_attempt_continues_a_stopped_one(tmp_path):
    from benchmarks.boards import load_board
    from benchmarks.runner import continue_interrupted, run_checkpoint_dir, settle_attempt
    board = load_board("quickstart")
    first = RunSpec(board="quickstart", model="gru4rec", seed=7)
    assert continue_interrupted(board, first) is None  # nothing to continue: this attempt is noted
    second = RunSpec(board="quickstart", model="gru4rec", seed=7)
    assert continue_interrupted(board, second) is None  # noted, but it had not finished an epoch
    last = run_checkpoint_dir(board, second) / "last.ckpt"
    last.parent.mkdir(parents=True)
    torch.save({"epoch": 4}, last)
    settle_attempt(board, second, {"status": "failed", "failure_reason": "killed"})
    third = RunSpec(board="quickstart", model="gru4rec", seed=7)
    assert continue_interrupted(board, third) == 5
    assert third.run_id == second.run_id and third.resume_interrupted == str(last)
    # --rerun starts over; another seed is another run
    assert continue_interrupted(board, RunSpec(board="quickstart", model="gru4rec", seed=7), allowed=False) is None
    assert continue_interrupted(board, RunSpec(board="quickstart", model="gru4rec", seed=8)) is None

    fourth = RunSpec(board="quickstart", model="gru4rec", seed=7)
    assert continue_interrupted(board, fourth, allowed=False) is None
    run_checkpoint_dir(board, fourth).mkdir(parents=True)
    torch.save({"epoch": 4}, run_checkpoint_dir(board, fourth) / "last.ckpt")
    settle_attempt(board, fourth, {"status": "failed", "failure_reason": "error"})  # a bug is not continued
    assert not (run_checkpoint_dir(board, fourth) / "last.ckpt").exists()
    assert continue_interrupted(board, RunSpec(board="quickstart", model="gru4rec", seed=7)) is None


def test_paperboard_run_continues_the_attempt_it_stopped_and_rerun_starts_over(monkeypatch, tmp_path):
    import benchmarks.runner as runner
    from benchmarks.boards import load_board
    from benchmarks.schedule import plan_runs
    from benchmarks.store import ResultStore
    board, store = load_board("quickstart"), ResultStore(f"sqlite:///{tmp_path / 'r.db'}")
    trained = []

    def train(board, spec, store, quiet, threads):  # the first attempt is stopped after two epochs
        trained.append((spec.run_id, spec.resume_interrupted))
        record = {"run_id": spec.run_id, "model": spec.model, "seed": spec.seed, "status": "ok",
                  "metrics": {"test": {"ndcg@10": 0.5}}}
        if len(trained) == 1:
            last = runner.run_checkpoint_dir(board, spec) / "last.ckpt"
            last.parent.mkdir(parents=True)
            torch.save({"epoch": 1}, last)
            record.update(status="failed", failure_reason="stopped", error="stopped by SIGTERM")
        return record

    monkeypatch.setattr(runner, "_run_and_store", train)
    lines = []
    for attempt in range(3):
        if attempt == 1:  # --dry-run says so before the next attempt continues it
            (_, plan), = plan_runs(board, [RunSpec(board="quickstart", model="pop", seed=3)], store)
            assert plan == f"continue its stopped attempt {trained[0][0][:8]} after epoch 2"
        runner.run_board(board, [RunSpec(board="quickstart", model="pop", seed=3)], store, log=lines.append)
    runner.run_board(board, [RunSpec(board="quickstart", model="pop", seed=3)], store, continue_stopped=False)
    (first, none), (again, last), (third, after_ok), (rerun, fresh) = trained
    assert none is None and again == first and last.endswith(f"{first}/last.ckpt")
    assert any("continues its stopped attempt" in line and "after epoch 2" in line for line in lines)
    assert third != first and after_ok is None  # once finished, the attempt is forgotten
    assert rerun != third and fresh is None


def test_a_worker_killed_by_a_signal_is_recorded_as_killed(monkeypatch, tmp_path):
    killer = tmp_path / "python"
    killer.write_text("#!/bin/sh\nkill -9 $$\n")
    killer.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(killer))
    record = run_in_subprocess(RunSpec(board="quickstart", model="sasrec", seed=0))
    assert record["status"] == "failed" and record["failure_reason"] == "killed" and "(killed)" in record["error"]


def _assert_timing(record):
    assert record["cpu_seconds"] > 0 and record["wall_seconds"] > 0
    for when in ("start", "end"):
        load = record["load_avg"][when]
        assert len(load) == 3 and all(x >= 0 for x in load)


def test_a_run_records_cpu_seconds_and_the_load_average():
    record = execute(RunSpec(board="quickstart", model="sasrec", seed=0, trainer_args={"max_epochs": 2, **FAST}))
    assert record["status"] == "ok", record.get("error")
    _assert_timing(record)
    assert 0 < record["train_cpu_seconds"] <= record["cpu_seconds"]
    assert 0 < record["train_epoch_cpu_seconds"] <= record["train_cpu_seconds"]
    assert record["train_seconds"] > 0 and record["train_epoch_seconds"] > 0

    # a continued run counts the CPU seconds of the part it continues
    resumed = execute(RunSpec(board="quickstart", model="sasrec", seed=0, trainer_args={"max_epochs": 3, **FAST},
                              resume_from={"run_id": record["run_id"], "checkpoint": record["checkpoint"],
                                           "epochs": record["epochs"], "max_epochs": 2,
                                           "train_seconds": record["train_seconds"],
                                           "train_cpu_seconds": record["train_cpu_seconds"]}))
    assert resumed["status"] == "ok", resumed.get("error")
    assert resumed["train_cpu_seconds"] > record["train_cpu_seconds"]


class ValCurve(pl.Callback):
    def __init__(self):
        self.values = []

    def on_validation_end(self, trainer, module):
        if not trainer.sanity_checking:
            self.values.append(float(trainer.callback_metrics["val/ndcg@10"]))


def test_a_continued_run_records_its_last_validation_and_its_progress_keeps_the_earlier_best(capsys):
    from benchmarks.boards import load_board
    from benchmarks.runner import run_checkpoint_dir
    # at this learning rate the 7th epoch (6 from 0) scores below the 6th; the run stops before it and continues
    args = dict(board="quickstart", model="gru4rec", seed=0, model_args={"lr": 0.2},
                trainer_args={"max_epochs": 7, **FAST}, run_id="curve-peak")
    curve = ValCurve()
    execute(RunSpec(**args), callbacks=[curve, SigtermAt(6)])
    last = run_checkpoint_dir(load_board("quickstart"), RunSpec(**args)) / "last.ckpt"
    capsys.readouterr()
    record = execute(RunSpec(**args, resume_interrupted=str(last)), callbacks=[curve])
    assert record["status"] == "ok" and record["resumed_interrupted_at_epoch"] == 6, record.get("error")
    assert len(curve.values) == 7 and curve.values[-1] < curve.values[record["best_epoch"]]
    assert record["metrics"]["last_val"]["ndcg@10"] == curve.values[-1]
    assert record["metrics"]["val"]["ndcg@10"] == pytest.approx(curve.values[record["best_epoch"]])
    assert set(record["metrics"]["last_val"]) == set(record["metrics"]["val"])
    (line,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[progress]")]
    assert f"best={curve.values[5]:.4f} (epoch 5)" in line  # the earlier attempt's best, not this epoch's score


def test_a_worker_that_dies_leaves_a_failed_record_with_its_timing(monkeypatch):
    monkeypatch.setattr(sys, "executable", "/bin/false")  # a "worker" that exits 1 without writing a record
    record = run_in_subprocess(RunSpec(board="quickstart", model="sasrec", seed=0))
    assert record["status"] == "failed" and record["failure_reason"] == "error"
    assert record["cpu_seconds"] >= 0 and math.isfinite(record["cpu_seconds"]) and record["wall_seconds"] > 0
    assert len(record["load_avg"]["start"]) == 3 and len(record["load_avg"]["end"]) == 3


def _quickstart_variant(tmp_path, name: str, **changes) -> str:
    import yaml
    from benchmarks.boards import BOARDS_DIR
    board = yaml.safe_load((BOARDS_DIR / "quickstart.yaml").read_text())
    board.update(name=name, dataset_args={"num_users": 120, "num_items": 40, "max_len": 10, "seed": 0}, **changes)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(board))
    return str(path)


def test_row_trainer_keeps_its_row_training_past_early_stopping_and_leaves_other_rows_alone(tmp_path):
    from benchmarks.boards import load_board
    from benchmarks.runner import trainer_kwargs
    plain = load_board(_quickstart_variant(tmp_path, "qs-plain", early_stopping_patience=1,
                                           trainer={"max_epochs": 12}))
    board = _quickstart_variant(tmp_path, "qs-rows", early_stopping_patience=1, trainer={"max_epochs": 12},
                                row_trainer={"pop": {"min_epochs": 5}})
    rows = load_board(board)
    # the other rows' Trainer arguments (part of their config hash) are those of the board without row_trainer
    for row in ("sasrec", "gru4rec"):
        assert trainer_kwargs(rows, RunSpec(board=board, model=row, seed=0)) == \
               trainer_kwargs(plain, RunSpec(board=board, model=row, seed=0))
    assert trainer_kwargs(rows, RunSpec(board=board, model="pop", seed=0))["min_epochs"] == 5
    # pop's validation never improves after its first epoch: patience 1 would stop it at epoch 2
    record = execute(RunSpec(board=board, model="pop", seed=0, trainer_args=FAST))
    assert record["status"] == "ok", record.get("error")
    assert record["epochs"] >= 5 and record["config"]["trainer"]["min_epochs"] == 5


@pytest.mark.parametrize("row_trainer, problem", [({"nope": {"min_epochs": 3}}, "not among the board's models"),
                                                  ({"pop": {"max_epochs": 3}}, "may not set max_epochs")])
def test_a_bad_row_trainer_is_one_clear_error(tmp_path, row_trainer, problem):
    from benchmarks.boards import ConfigError, load_board
    with pytest.raises(ConfigError, match=problem):
        load_board(_quickstart_variant(tmp_path, "qs-bad", row_trainer=row_trainer))


def test_a_record_from_before_an_argument_existed_is_the_same_run_when_the_code_documents_its_value():
    from benchmarks.boards import load_board
    from benchmarks.runner import RunSpec, resolve, trainer_kwargs
    from benchmarks.schedule import same_runs

    board = load_board("distill-ml100k")  # pins train_windows: last, which records before the argument trained on
    spec = RunSpec(board="distill-ml100k", model="random_subset", seed=0)
    _, data_kwargs, _, model_kwargs = resolve(board, spec)
    assert data_kwargs["train_windows"] == "last"
    older = {"model": "random_subset", "seed": 0, "config": {
        "dataset": board.dataset, "model_args": dict(model_kwargs), "trainer": trainer_kwargs(board, spec),
        "dataset_args": {k: v for k, v in data_kwargs.items() if k != "train_windows"}}}
    assert list(same_runs(board, spec, [older])) == [older]
    other = {**older, "config": {**older["config"], "dataset_args": {**data_kwargs, "train_windows": "all"}}}
    assert list(same_runs(board, spec, [other])) == []
