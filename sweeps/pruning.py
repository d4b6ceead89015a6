"""Pruning: a MedianPruner over the board's primary validation metric, reported once per epoch.

The parent (study loop) owns the trial; the trial's training runs in a fresh subprocess (sweeps/trial.py), which
passes `TrialPruning` to the runner (`execute(spec, callbacks=[...])`; the runner never imports sweeps). When
training starts, it re-opens the study from the same storage and drives optuna-integration's
`PyTorchLightningPruningCallback` (`lightning.pytorch` flavour), so each epoch's `val/<primary_metric>` is reported
to the study and the pruner can stop the trial. Its `optuna.TrialPruned` is raised on as `contracts.run.RunPruned`;
the runner records the run as status "pruned" and the parent tells the study PRUNED.

Trials that train on several processes (`--trainer.devices 2`, `num_nodes`, a ddp strategy) run without
pruning: the callback's DDP path needs RDBStorage and a private Lightning attribute, and has a history of not
pruning (optuna#1417, optuna-integration#223); we have no multi-device machine to test it on.
"""
from __future__ import annotations

import lightning.pytorch as pl
import optuna

from contracts.run import RunPruned

PRUNER_STARTUP_TRIALS = 5  # trials that finish unpruned before the pruner judges anyone


MEDIAN_KEYS = ("n_startup_trials", "n_warmup_steps", "interval_steps", "n_min_trials")


def pruner_config(max_epochs: int, enabled: bool = True, overrides: dict | None = None) -> dict | None:
    """The pruner's settings, stored on the study and part of its name. None = no pruning.

    Default: MedianPruner judging from the 6th trial on, after a warm-up of a tenth of the epoch cap (a trial
    is never pruned in its first epochs, when slow starters still look bad). A board may set any of
    MEDIAN_KEYS under `sweep: {pruner: {...}}`; the same pruner then applies to every model of the board.
    """
    if not enabled:
        return None
    unknown = set(overrides or {}) - set(MEDIAN_KEYS)
    if unknown:
        from benchmarks.boards import ConfigError

        raise ConfigError(f"unknown sweep.pruner key(s) {', '.join(sorted(unknown))}; valid: {', '.join(MEDIAN_KEYS)}")
    return {"name": "MedianPruner", "n_startup_trials": PRUNER_STARTUP_TRIALS,
            "n_warmup_steps": max(1, int(max_epochs) // 10), "interval_steps": 1, **(overrides or {})}


def make_pruner(config: dict | None) -> optuna.pruners.BasePruner:
    if not config:
        return optuna.pruners.NopPruner()
    if config["name"] != "MedianPruner":
        raise ValueError(f"unknown pruner {config['name']!r}")
    return optuna.pruners.MedianPruner(**{k: v for k, v in config.items() if k != "name"})


def multi_process(trainer_args: dict) -> bool:
    """Whether a trial with these Trainer args trains on several processes (then it is not pruned)."""
    devices = trainer_args.get("devices", 1)
    many_devices = (isinstance(devices, int) and devices > 1) or (isinstance(devices, (list, tuple)) and len(devices) > 1) \
        or (isinstance(devices, str) and devices not in ("1", "auto")) or devices == -1
    strategy = str(trainer_args.get("strategy", "")).lower()
    return bool(many_devices or int(trainer_args.get("num_nodes", 1)) > 1 or "ddp" in strategy or "fsdp" in strategy)


class TrialPruning(pl.Callback):
    """In a trial's subprocess: reports `monitor` after each validation to the parent's trial (by id) and stops the
    run as pruned when the pruner says so. The study is opened when training starts, inside the run, so a storage
    error there is recorded like any other run error."""

    def __init__(self, sweep: dict, monitor: str):
        self.sweep, self.monitor = sweep, monitor
        self.reporter = None

    def on_fit_start(self, trainer, pl_module) -> None:
        from optuna_integration.pytorch_lightning import PyTorchLightningPruningCallback

        from sweeps.storage import open_storage

        storage = open_storage(self.sweep["storage"])
        study = optuna.load_study(study_name=self.sweep["study"], storage=storage,
                                  pruner=make_pruner(self.sweep["pruner"]),
                                  sampler=optuna.samplers.RandomSampler())  # the parent samples; this one only reports
        trial = optuna.trial.Trial(study, self.sweep["trial_id"])
        self.reporter = PyTorchLightningPruningCallback(trial, monitor=self.monitor)
        self.reporter.on_fit_start(trainer, pl_module)

    def on_validation_end(self, trainer, pl_module) -> None:
        # only fit's per-epoch validations are the trial's intermediate values (one per epoch, never a re-scoring)
        if self.reporter is None or trainer.state.fn != "fit" or trainer.sanity_checking:
            return
        try:
            self.reporter.on_validation_end(trainer, pl_module)
        except optuna.TrialPruned as err:
            raise RunPruned(str(err)) from err
