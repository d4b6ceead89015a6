"""Which runs of a board to train, and the board-level run around them.

A run's identity is its model, seed, tuned flag, and resolved data, Trainer (up to the epoch cap) and model
arguments: a run the store already finished is kept (`is_finished`), a run that stopped at a smaller cap with
early stopping's patience left continues from its checkpoint (`extend_capped`, `paperboard run --extend`).
`run_board_specs` is what `paperboard run` does between parsing and printing: skip, extend, check the store,
prepare the data once, train (benchmarks.runner.run_board), and log the board to W&B.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from benchmarks.boards import Board, ConfigError
from benchmarks.records import epoch_cap, recorded_arguments, stopped_by_cap, superseded_runs
from benchmarks.render import aggregate
from benchmarks.runner import (RunSpec, checkpoint_problem, resolve, run_board, stopped_attempt, trainer_kwargs,
                               wandb_dir, wandb_mode)


def same_runs(board: Board, spec: RunSpec, records: list[dict]):
    """Yield the records that are this run up to its epoch cap: the same model, seed, tuned flag, data and trainer
    arguments other than max_epochs, and model arguments (a record's model_args also hold what the datamodule filled
    in: num_items...). Callers decide what a different cap means."""
    def key(model, seed, tuned, data_args, trainer_args, model_args):
        trainer_args = {k: v for k, v in (trainer_args or {}).items() if k != "max_epochs"}
        return model, seed, tuned, json.dumps([data_args, trainer_args, model_args], sort_keys=True, default=str)

    _, data_kwargs, _, model_kwargs = resolve(board, spec)
    ours = key(spec.model, spec.seed, spec.tuning is not None, data_kwargs, trainer_kwargs(board, spec), model_kwargs)
    for record in records:
        config = record.get("config") or {}
        # a key the record lacks reads as the value the code documents for runs from before it existed
        recorded_model, recorded_data = recorded_arguments(record, (model_kwargs, data_kwargs))
        extra_data = set(config.get("dataset_args") or {}) - set(data_kwargs)  # a dataset argument since dropped
        if not extra_data and key(record["model"], record["seed"], bool(record.get("tuned")), recorded_data,
                                  config.get("trainer"), recorded_model) == ours:
            yield record


def is_finished(board: Board, spec: RunSpec, records: list[dict]) -> bool:
    """Whether one of the board's finished records is this run: the same identity and epoch cap, or a run that early
    stopping ended before its own cap and within this one (a larger cap would have trained it the same way)."""
    cap = trainer_kwargs(board, spec).get("max_epochs")
    for record in same_runs(board, spec, records):
        run_cap = epoch_cap(record)
        stopped_early = run_cap is not None and record.get("best_epoch") is not None and not stopped_by_cap(record)
        if run_cap == cap or (stopped_early and (cap is None or record["epochs"] <= cap)):
            return True
    return False


def unfinished(board: Board, specs: list[RunSpec], store) -> list[RunSpec]:
    """Drop specs whose run already has an ok record in the store, so re-running a board resumes it."""
    finished = store.records(board=board.name, status="ok")
    return [spec for spec in specs if not is_finished(board, spec, finished)]


def continuable_run(board: Board, spec: RunSpec, finished: list[dict], superseded: set | None = None) -> dict | None:
    """The run `--extend` would continue for this spec: its newest finished run (the end of any earlier --extend
    chain) when that run stopped at a smaller epoch cap than the spec's with early stopping's patience not yet spent,
    whether or not its checkpoint is on this machine; else None."""
    superseded = superseded_runs(finished) if superseded is None else superseded
    runs = [r for r in same_runs(board, spec, finished)
            if r["run_id"] not in superseded and r.get("best_epoch") is not None]
    if not runs:
        return None
    run = max(runs, key=lambda r: (r.get("epochs", 0), r["created_at"]))
    cap = trainer_kwargs(board, spec)["max_epochs"]
    patience = board.early_stopping_patience
    patience_left = patience is None or run["epochs"] - 1 - run["best_epoch"] < patience
    return run if stopped_by_cap(run) and (epoch_cap(run) or cap) < cap and patience_left else None


def extend_capped(board: Board, specs: list[RunSpec], store, log=print) -> int:
    """Point each spec whose `continuable_run` has its checkpoint here at that run, so it continues instead of
    starting at epoch 0 (a missing checkpoint is said, and the run trains from epoch 0). Returns how many specs
    will continue a run. A run whose checkpoint lies outside this home's checkpoint folder or is not the file the
    run recorded (an imported record can name any file) is refused before anything trains."""
    finished = store.records(board=board.name, status="ok")
    superseded = superseded_runs(finished)
    extended = 0
    for spec in specs:
        run = continuable_run(board, spec, finished, superseded)
        if run is None:
            continue
        if not (run.get("checkpoint") and Path(run["checkpoint"]).is_file()):
            log(f"paperboard: {board.name}: {spec.model} seed={spec.seed}: the checkpoint of capped run "
                f"{run['run_id'][:8]} is not on this machine; it trains from epoch 0")
            continue
        problem = checkpoint_problem(run["checkpoint"], run.get("checkpoint_sha256"))
        if problem:
            raise ConfigError(f"--extend refuses run {run['run_id'][:8]} ({run['model']} seed {run['seed']}): "
                              f"{problem}. Continue only runs trained with this store's home, or drop --extend "
                              f"to train it from epoch 0.")
        spec.resume_from = {"run_id": run["run_id"], "checkpoint": run["checkpoint"], "epochs": run["epochs"],
                            "max_epochs": epoch_cap(run) or trainer_kwargs(board, spec)["max_epochs"],
                            "train_seconds": run.get("train_seconds") or 0.0,
                            "train_cpu_seconds": run.get("train_cpu_seconds") or 0.0}
        extended += 1
    return extended


def plan_runs(board: Board, specs: list[RunSpec], store, *, rerun: bool = False,
              extend: bool = False) -> list[tuple[RunSpec, str]]:
    """What `paperboard run` would do with each spec, without training or touching the data: kept, continued from
    a checkpoint (a capped run with --extend, or a stopped attempt), or trained from epoch 0 (and why, where
    --extend cannot continue)."""
    finished = store.records(board=board.name, status="ok")
    superseded = superseded_runs(finished)
    plan = []
    for spec in specs:
        done = is_finished(board, spec, finished)
        if done and not rerun:
            plan.append((spec, "kept: finished in the store"))
            continue
        run = continuable_run(board, spec, finished, superseded) if extend else None
        stopped = stopped_attempt(board, spec) if run is None and not rerun else None
        if stopped is not None:
            plan.append((spec, f"continue its stopped attempt {stopped[0][:8]} after epoch {stopped[2]}"))
        elif run is None:
            plan.append((spec, "train again (--rerun)" if done else "train"))
        elif run.get("checkpoint") and Path(run["checkpoint"]).is_file():
            plan.append((spec, f"continue run {run['run_id'][:8]} from epoch {run['epochs']}"))
        else:
            plan.append((spec, f"train from epoch 0: the checkpoint of capped run {run['run_id'][:8]} is not here"))
    return plan


def prepare_data(board: Board, data_dir: str | None, data_args: dict) -> None:
    """Load (and cache) the board's data once up front: a missing file is one message, not N failed runs."""
    data_cls, data_kwargs, _, _ = resolve(board, RunSpec(board.name, next(iter(board.models)), 0, data_args=data_args))
    data_cls(data_dir=data_dir, **data_kwargs).prepare_data()


def log_board_to_wandb(board: Board, records: list[dict]) -> None:
    mode = wandb_mode()
    if mode == "disabled":
        return
    import wandb

    table = aggregate(board, records)
    if table.empty:
        return
    from benchmarks.store import redacted_argv

    with redacted_argv():  # W&B keeps the command line, which may hold --storage with a password
        run = wandb.init(project=os.environ.get("WANDB_PROJECT", "paperboard"), group=board.name,
                         job_type="leaderboard", name=f"board-{board.name}", mode=mode,
                         dir=str(wandb_dir()), reinit="finish_previous")
    run.log({"leaderboard": wandb.Table(dataframe=table)})
    run.finish()


def run_board_specs(board: Board, specs: list[RunSpec], store, *, rerun: bool = False, extend: bool = False,
                    data_dir: str | None = None, data_args: dict | None = None, quiet: bool = False,
                    log=print, jobs: int = 1, threads: int | None = None) -> list[dict]:
    """Train the specs the store has not finished (all with `rerun`), continuing capped runs with `extend`; returns
    the records of the runs trained now. Progress and decisions go to `log`."""
    from benchmarks.store import redact

    if not rerun:
        todo = unfinished(board, specs, store)
        if len(todo) < len(specs):
            log(f"paperboard: {board.name}: {len(specs) - len(todo)} run(s) already finished in the store are "
                f"kept (--rerun trains them again)")
        specs = todo
    if extend:
        log(f"paperboard: {board.name}: {extend_capped(board, specs, store, log)} run(s) continue a capped run from its "
            f"checkpoint (--extend)")
    if specs:
        store.check_writable()  # a result that cannot be stored must fail before the training, not after it
    prepare_data(board, data_dir, data_args or {})
    log(f"paperboard: {board.name}: {len(specs)} run(s) ({len({s.model for s in specs})} models x "
        f"{len({s.seed for s in specs})} seeds); results -> {redact(store.url)}")
    # another `paperboard run` on this store may finish one of these runs while this one works through the list
    is_done = None if rerun else \
        lambda spec: is_finished(board, spec, store.records(board=board.name, status="ok"))
    records = run_board(board, specs, store, quiet=quiet, is_done=is_done, log=log, jobs=jobs, threads=threads,
                        continue_stopped=not rerun)
    log_board_to_wandb(board, store.records(board=board.name))
    return records
