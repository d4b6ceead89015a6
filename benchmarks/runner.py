"""The board runner: one run = one board x model x seed.

`execute(spec)` trains and evaluates one run in the current process and returns its record: fit with early
stopping on the board's primary validation metric, then validation and test metrics of the best checkpoint.
`run_board(...)` runs many, each in a fresh subprocess (`python -m benchmarks.worker`), so that peak memory is
the run's own, DDP re-launches exactly one run, W&B state never leaks between runs, and a crash fails one
run (recorded as failed) without stopping the board. A run that is stopped or killed continues from its last
finished epoch the next time the board runs (`continue_interrupted`, `ResumeState`).
"""
from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import platform
import resource
import subprocess
import sys
import threading
import time
import traceback
import uuid
import warnings
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from benchmarks.boards import Board, ConfigError, load_board
from contracts.atomic import atomic_path
from contracts.run import CONTINUATION_ONLY, RunNeedsLLM, RunPruned

DEFAULT_MAX_EPOCHS = 200
LLM_ENV = "PAPERBOARD_LLM"  # the LLM spec (hf:PATH or an OpenAI-compatible URL) of rows that prompt one


@dataclass
class RunSpec:
    board: str  # a board name, or the path of a board YAML file
    model: str
    seed: int
    data_dir: str | None = None
    model_args: dict = field(default_factory=dict)
    data_args: dict = field(default_factory=dict)
    trainer_args: dict = field(default_factory=dict)
    tuning: dict | None = None  # where tuned model_args came from: {"study", "trial", "trials", "best_value"}
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    checkpoint_dir: str | None = None
    keep_checkpoint: bool = True
    sweep: dict | None = None  # set for a sweep trial (sweeps/study.py): {"storage", "study", "trial_id", "trial_number", "pruner"}
    # continue a run that hit a smaller epoch cap (`paperboard run --extend`):
    # {"run_id", "checkpoint", "epochs", "max_epochs", "train_seconds"} of that run's record
    resume_from: dict | None = None
    # the last.ckpt of this run's own attempt that was stopped or killed mid-training (its run_id is this one's):
    # the run continues from it as if never stopped (`continue_interrupted`)
    resume_interrupted: str | None = None
    # train through `torch.compile` (inductor): same model and loss, float rounding may differ; recorded, not part
    # of the config (like the thread count)
    compile: bool = False


# families where `--compile` (nn.Module.compile in place) measurably helps on CPU (benchmarks/results/ctr-perf.md);
# seqrec steps run through `self(...)` too but are 0.5-1.0x as fast compiled (perf-seqrec-compile.md), and the other
# families score through methods other than forward (encoders, policies) that it would leave eager
COMPILED_FAMILIES = ("ctr",)
WHY_NOT_COMPILED = {
    "seqrec": "its training step is slower compiled on CPU (0.5-1.0x of eager for every seqrec model, "
              "benchmarks/results/perf-seqrec-compile.md)",
}


def check_kwargs(cls, kwargs: dict, prefix: str, owner: str) -> None:
    """Reject a key the class's __init__ does not take, naming the valid ones."""
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    valid = [n for n in params if n != "self"]
    for key in kwargs:
        if key not in valid:
            raise ConfigError(f"unknown config key '{prefix}.{key}' for {owner}; valid keys: {', '.join(valid)}")


def config_hash(config: dict) -> str:
    return hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _versions() -> dict:
    import lightning
    import numpy
    import optuna
    import pandas
    import torchmetrics

    return {"python": platform.python_version(), "torch": torch.__version__, "lightning": lightning.__version__,
            "torchmetrics": torchmetrics.__version__, "optuna": optuna.__version__, "numpy": numpy.__version__,
            "pandas": pandas.__version__}


def _hardware() -> dict:
    info = {"platform": platform.platform(), "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
    return info


def git_sha() -> str | None:
    """The checkout's commit (+ "-dirty" with uncommitted changes); in a copied tree without git metadata (a
    cluster or GPU job's copy of a checkout), the commit that PAPERBOARD_GIT_SHA names, else None."""
    copied = os.environ.get("PAPERBOARD_GIT_SHA") or None
    try:
        root = Path(__file__).resolve().parent.parent
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return copied
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return copied


def resolve(board: Board, spec: RunSpec):
    """The datamodule class and the model's constructor (a registered variant's arguments applied), each with its
    keyword arguments, every key checked."""
    import datamodules  # noqa: F401  (fills the registry)
    import lightning_modules  # noqa: F401
    from contracts.registry import DATASETS, MODELS

    if spec.model not in board.models:
        raise ConfigError(f"model {spec.model!r} is not on board {board.name}; its models: {', '.join(board.models)}")
    # "name@variant" is a registered variant (its fixed arguments apply) or, when not registered, a board row of
    # registered model `name` with the board's arguments only (ablations, scaling grids)
    model_entry = MODELS.for_row(spec.model)
    data_entry = DATASETS.get(board.dataset)
    if model_entry.family != data_entry.family:
        raise ConfigError(f"model {spec.model} ({model_entry.family}) cannot run on {board.dataset} ({data_entry.family})")
    if spec.compile and model_entry.family not in COMPILED_FAMILIES:
        why = WHY_NOT_COMPILED.get(model_entry.family, "its training step does not call the module's forward, so "
                                                        "compiling it would change nothing")
        raise ConfigError(f"--compile: {spec.model} is a {model_entry.family} model: {why}; it applies to the "
                          f"{', '.join(COMPILED_FAMILIES)} family. Run without --compile.")
    data_kwargs = {**board.dataset_args, **spec.data_args}
    check_kwargs(data_entry.cls, data_kwargs, "data", board.dataset)
    model_kwargs = {**board.models[spec.model], **spec.model_args}
    check_kwargs(model_entry.cls, model_kwargs, "model", spec.model)
    # a row that prompts an LLM and names none takes $PAPERBOARD_LLM (`paperboard run --llm`), recorded in its config
    if os.environ.get(LLM_ENV) and model_kwargs.get("llm") is None and \
            "llm" in inspect.signature(model_entry.cls.__init__).parameters:
        model_kwargs["llm"] = os.environ[LLM_ENV]
    trainer_keys = {**board.trainer_for(spec.model), **spec.trainer_args}
    unknown = set(trainer_keys) - set(inspect.signature(pl.Trainer.__init__).parameters)
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join('trainer.' + k for k in sorted(unknown))}; "
                          f"these pass to lightning.pytorch.Trainer, which does not take them")
    # A registered variant's fixed arguments apply at construction and stay out of model_kwargs (the run's recorded
    # identity), so its records keep naming the variant and its board arguments only.
    return data_entry.cls, data_kwargs, model_entry.build, model_kwargs


def decide_epoch_cap(board: Board, trainer_args: dict | None = None, sweep: bool = False) -> int:
    """The one rule for a run's epoch cap: the run's own max_epochs (--max-epochs, --trainer.max_epochs), else for a
    sweep trial the board's sweep budget, else the board's trainer, else DEFAULT_MAX_EPOCHS."""
    return int((trainer_args or {}).get("max_epochs") or (board.sweep.get("max_epochs") if sweep else None)
               or board.trainer.get("max_epochs") or DEFAULT_MAX_EPOCHS)


def trainer_kwargs(board: Board, spec: RunSpec) -> dict:
    """The run's Trainer arguments: our defaults, then the board's, then the run's overrides."""
    return {"devices": 1, **board.trainer_for(spec.model), **spec.trainer_args,
            "max_epochs": decide_epoch_cap(board, spec.trainer_args)}


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children (data loader workers): unlike wall
    seconds, they stay comparable when other jobs share the machine."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the platform has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


class EpochTimer(pl.Callback):
    """Wall and CPU seconds of pure training per epoch (the validation run inside each epoch is subtracted)."""

    def __init__(self):
        self.train_seconds: list[float] = []
        self.train_cpu_seconds: list[float] = []
        self._val = self._val_cpu = 0.0
        self._batches = 0

    def on_train_epoch_start(self, trainer, module):
        self._start, self._val = time.perf_counter(), 0.0
        self._cpu_start, self._val_cpu = cpu_seconds(), 0.0
        self._batches = 0

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self._batches += 1

    def on_validation_start(self, trainer, module):
        self._val_start, self._val_cpu_start = time.perf_counter(), cpu_seconds()

    def on_validation_end(self, trainer, module):
        self._val += time.perf_counter() - self._val_start
        self._val_cpu += cpu_seconds() - self._val_cpu_start

    def on_train_epoch_end(self, trainer, module):
        if not self._batches:  # a continued run ends its checkpoint's epoch again without training it
            return
        self.train_seconds.append(time.perf_counter() - self._start - self._val)
        self.train_cpu_seconds.append(cpu_seconds() - self._cpu_start - self._val_cpu)


class ResumeState(pl.Callback):
    """What a run's last.ckpt carries, beside the weights, optimizer, loop and callback states, so that a stopped or
    killed run continues as if it had never stopped: the global random generators (torch, numpy, random: shuffling,
    dropout, sampled negatives) as they were when the checkpoint was written, and the wall and CPU seconds the fit
    had spent up to then. The generators are restored as the checkpoint is loaded, before the training data's first
    iterator draws its order. A datamodule's training-set generator is carried by the datamodule's own state
    (`PaperboardDataModule.state_dict`); generators a model keeps of its own are not.
    The commits that trained the earlier attempts are carried too: a record whose epochs came from other code says so.
    """

    def __init__(self, git_sha: str | None = None):
        self.git_sha = git_sha
        self.earlier_git_shas: list = []
        self.prior_wall = self.prior_cpu = 0.0
        self.restored = False
        self.resumed_at_epoch: int | None = None
        self._start, self._cpu_start = time.perf_counter(), cpu_seconds()

    def on_fit_start(self, trainer, module):
        self._start, self._cpu_start = time.perf_counter(), cpu_seconds()

    def on_train_start(self, trainer, module):
        if self.restored:
            self.resumed_at_epoch = trainer.current_epoch

    def fit_seconds(self) -> tuple[float, float]:
        """Wall and CPU seconds of this run's fit, its earlier attempts' included (up to their last checkpoint)."""
        return (self.prior_wall + time.perf_counter() - self._start,
                self.prior_cpu + cpu_seconds() - self._cpu_start)

    def state_dict(self) -> dict:
        import random

        import numpy as np

        name, keys, pos, has_gauss, gauss = np.random.get_state()
        version, words, python_gauss = random.getstate()
        wall, cpu = self.fit_seconds()
        # plain types only: checkpoints are loaded with weights_only=True
        return {"wall": wall, "cpu": cpu, "git_shas": [*self.earlier_git_shas, self.git_sha],
                "torch": torch.get_rng_state(), "numpy": [name, keys.tolist(), pos, has_gauss, gauss],
                "random": [version, list(words), python_gauss]}

    def load_state_dict(self, state: dict) -> None:
        import random

        import numpy as np

        self.prior_wall, self.prior_cpu, self.restored = state["wall"], state["cpu"], True
        self.earlier_git_shas = list(dict.fromkeys(state["git_shas"]))
        torch.set_rng_state(state["torch"])
        name, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
        version, words, python_gauss = state["random"]
        random.setstate((version, tuple(words), python_gauss))


class EarlyStoppingAfterMinEpochs(EarlyStopping):
    """Early stopping whose patience starts counting at the Trainer's `min_epochs` (a board's `row_trainer`).

    Lightning's own keeps a stop signal raised during the first min_epochs and acts on it at min_epochs, so a run
    that left a long plateau just before then still stops there while improving; here epochs before min_epochs
    never count against patience (the best score is still tracked from epoch 0)."""

    def _run_early_stopping_check(self, trainer: pl.Trainer) -> None:
        stop_before = trainer.should_stop
        super()._run_early_stopping_check(trainer)
        if trainer.current_epoch + 1 < (trainer.min_epochs or 0):
            self.wait_count = 0
            trainer.should_stop = stop_before


class Diverged(RuntimeError):
    """A run whose training loss or validation monitor became NaN or inf: recorded as failed, reason 'diverged'."""

    def __init__(self, what: str, value: float, epoch: int | None):
        self.what, self.epoch = what, epoch
        self.value = "nan" if math.isnan(value) else "inf"
        super().__init__(f"diverged: {what} is {self.value} at epoch {epoch}")


class DivergenceGuard(pl.Callback):
    """Fails a run whose logged training loss or validation monitor becomes NaN or inf.

    Lightning's EarlyStopping merely stops on a non-finite monitor (check_finite), which would leave a diverged run
    recorded ok with the metrics of its last finite checkpoint. The guard reads the values already logged
    (`trainer.callback_metrics`) after each validation and at each training epoch's end, so it adds no host sync per
    step. Epochs are counted from 0, as in `best_epoch`."""

    def __init__(self, monitor: str):
        self.monitor = monitor

    def check(self, trainer, with_monitor: bool) -> None:
        metrics = trainer.callback_metrics
        names = [k for k in metrics if k.startswith("train/") and "loss" in k]
        if with_monitor and self.monitor in metrics:
            names.append(self.monitor)  # after the losses: a diverged loss is the cause, a NaN monitor its effect
        for name in names:
            value = float(metrics[name])
            if not math.isfinite(value):
                raise Diverged(name, value, trainer.current_epoch)

    def on_validation_end(self, trainer, module):
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self.check(trainer, with_monitor=True)

    def on_train_epoch_end(self, trainer, module):
        self.check(trainer, with_monitor=False)


def wandb_mode() -> str:
    """W&B mode for every run and report: WANDB_MODE if set, else online with an API key, else offline."""
    return os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")


def wandb_dir() -> Path:
    """Where W&B writes its run folders: WANDB_DIR when set (W&B's own variable), else the paperboard home."""
    return Path(os.environ.get("WANDB_DIR") or paperboard_home() / "wandb").expanduser()


def _wandb_logger(board: Board, spec: RunSpec, config: dict, resume: bool = False):
    """One W&B run for this training run (a run continued after an interruption continues its W&B run).
    W&B's own variables win over our defaults: WANDB_DIR, WANDB_PROJECT,
    WANDB_ENTITY, WANDB_RUN_GROUP, WANDB_NAME, WANDB_TAGS, WANDB_JOB_TYPE, WANDB_MODE (an argument given to
    wandb.init would override its variable, so an argument is passed only where the variable is unset)."""
    mode = wandb_mode()
    if mode == "disabled":
        return None
    from lightning.pytorch.loggers import WandbLogger

    save_dir = wandb_dir()
    save_dir.mkdir(parents=True, exist_ok=True)
    name, job_type, tags = f"{spec.model}-seed{spec.seed}", "train", []
    if spec.sweep:  # one W&B run per sweep trial, all of a study's trials in one group
        name, job_type, tags = f"{spec.model}-trial{spec.sweep['trial_number']}", "sweep-trial", ["sweep"]
    ours = {"group": ("WANDB_RUN_GROUP", _wandb_group(board, spec)), "name": ("WANDB_NAME", name),
            "job_type": ("WANDB_JOB_TYPE", job_type),
            "tags": ("WANDB_TAGS", [board.name, spec.model, f"seed{spec.seed}", *board.papers, *tags])}
    chosen = {key: value for key, (variable, value) in ours.items() if not os.environ.get(variable)}
    return WandbLogger(project=os.environ.get("WANDB_PROJECT", "paperboard"), config=config, save_dir=str(save_dir),
                       mode=mode, id=spec.run_id, **({"resume": "allow"} if resume else {}), **chosen)


class EpochProgress(pl.Callback):
    """One line per epoch on stdout (the run's log under --quiet): epoch x/cap, the monitored value, the best so
    far and at which epoch, seconds per epoch and an ETA to the cap (an upper bound: early stopping may end the run
    sooner). Rank 0 only."""

    def __init__(self, monitor: str, mode: str, label: str, log=None):
        self.monitor, self.mode, self.label = monitor, mode, label
        self.emit = log or (lambda line: print(line, flush=True))
        self.best: float | None = None
        self.best_epoch: int | None = None

    def on_train_start(self, trainer, module):
        self._start, self._first_epoch = time.perf_counter(), trainer.current_epoch

    # in last.ckpt, so a continued run's lines go on from the best its earlier attempt had seen
    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]

    def on_train_epoch_end(self, trainer, module):
        if not trainer.is_global_zero:
            return
        epoch, cap = trainer.current_epoch, trainer.max_epochs
        value = trainer.callback_metrics.get(self.monitor)
        value = float(value) if value is not None else None
        if value is not None and math.isfinite(value) and (
                self.best is None or (value > self.best if self.mode == "max" else value < self.best)):
            self.best, self.best_epoch = value, epoch
        done = epoch + 1 - self._first_epoch
        per_epoch = (time.perf_counter() - self._start) / max(done, 1)
        shown = "-" if value is None else f"{value:.4f}"
        best = "-" if self.best is None else f"{self.best:.4f} (epoch {self.best_epoch})"
        left = max(0, (cap or 0) - epoch - 1) if cap and cap > 0 else 0
        self.emit(f"[progress] {self.label}: epoch {epoch + 1}/{cap if cap and cap > 0 else '?'} "
                 f"{self.monitor}={shown} best={best} {per_epoch:.1f}s/epoch ETA<={left * per_epoch:.0f}s")


def _wandb_group(board: Board, spec: RunSpec) -> str:
    return f"sweep/{board.name}/{spec.model}" if spec.sweep else f"{board.name}/{spec.model}"


def paperboard_home() -> Path:
    return Path(os.environ.get("PAPERBOARD_HOME", "~/.cache/paperboard")).expanduser()


def execute(spec: RunSpec, callbacks: list | None = None) -> dict:
    """Train and evaluate one run here; return its record (status 'ok' or 'failed', never raises for a run error)."""
    started, cpu_started, load_start = time.perf_counter(), cpu_seconds(), load_average()
    board = load_board(spec.board)
    record: dict = {
        "run_id": spec.run_id, "board": board.name, "model": spec.model, "seed": spec.seed,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "papers": board.papers,
        "tuned": spec.tuning is not None, "tuning": spec.tuning, "primary_metric": board.primary_metric,
        "config_hash": "unresolved", "status": "running",
    }
    sha = None
    try:
        data_cls, data_kwargs, model_cls, model_kwargs = resolve(board, spec)
        pl.seed_everything(spec.seed, workers=True, verbose=False)
        datamodule = data_cls(data_dir=spec.data_dir, **data_kwargs)
        datamodule.prepare_data()
        datamodule.setup("fit")
        model_kwargs = {**datamodule.model_kwargs(), **model_kwargs}
        model = model_cls(**model_kwargs)
        trainer_args = trainer_kwargs(board, spec)
        config = {"board": board.name, "dataset": board.dataset, "dataset_args": data_kwargs, "model": spec.model,
                  "model_args": {k: v for k, v in model_kwargs.items()}, "trainer": trainer_args,
                  "early_stopping_patience": board.early_stopping_patience}
        record.update(config_hash=config_hash(config), config=config)
        sha = git_sha()
        # W&B's config is the run's identity: the resolved config plus what makes runs comparable
        wandb_config = {**config, "seed": spec.seed, "config_hash": record["config_hash"], "run_id": spec.run_id,
                        "data_hash": getattr(datamodule, "data_hash", None), "git_sha": sha, "papers": board.papers,
                        "tuned": spec.tuning is not None}
        checkpoint_dir = run_checkpoint_dir(board, spec)
        monitor = f"val/{board.primary_metric}"
        checkpoint = ModelCheckpoint(dirpath=checkpoint_dir, filename="best", monitor=monitor, mode=board.mode,
                                     save_top_k=1, enable_version_counter=False)
        timer, resume_state = EpochTimer(), ResumeState(sha)
        # the guard precedes the caller's callbacks, so a sweep's pruner never records a diverged trial as pruned
        run_callbacks = [checkpoint, timer, resume_state, DivergenceGuard(monitor), *(callbacks or [])]
        if not spec.sweep:
            # A board run keeps its latest epoch as last.ckpt, from which a stopped or killed run continues (deleted
            # once its record is stored: settle_attempt; a sweep trial that stops is a failed trial). Its own
            # callback: Lightning's save_last writes only at epochs that improved the best. Listed after the best
            # one, so the file carries the best checkpoint's state of the same epoch.
            run_callbacks.insert(1, ModelCheckpoint(dirpath=checkpoint_dir, filename="last", monitor=None,
                                                    save_top_k=1, enable_version_counter=False))
        if board.early_stopping_patience:
            run_callbacks.append(EarlyStoppingAfterMinEpochs(monitor=monitor, mode=board.mode,
                                                              patience=board.early_stopping_patience))
        label = f"{board.name} {spec.model} seed={spec.seed}" + (f" trial {spec.sweep['trial_number']}" if spec.sweep else "")
        run_callbacks.append(EpochProgress(monitor, board.mode, label))
        logger = _wandb_logger(board, spec, wandb_config, resume=spec.resume_interrupted is not None)
        trainer = pl.Trainer(callbacks=run_callbacks, logger=logger if logger is not None else False,
                             default_root_dir=str(checkpoint_dir), num_sanity_val_steps=0,
                             enable_model_summary=False, **trainer_args)
        if spec.resume_interrupted:
            problem = checkpoint_problem(spec.resume_interrupted)
            if problem:
                raise ConfigError(f"refusing to continue the interrupted run: {problem}")
            resume_path = spec.resume_interrupted
        else:
            resume_path = (adopt_checkpoint(spec.resume_from["checkpoint"], checkpoint.dirpath)
                           if spec.resume_from else None)
        if spec.compile:
            # in place (nn.Module.compile): every `model(...)` call of the steps, here and in the scoring below, runs
            # compiled, while the steps themselves (logging, metrics) stay eager; parameter names are unchanged
            model.compile()
        with warnings.catch_warnings():  # a continued run writes into the folder of the attempt it continues
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
            trainer.fit(model, datamodule=datamodule, ckpt_path=resume_path)
        fit_wall, fit_cpu = resume_state.fit_seconds()
        # the last validation's scores, beside the selected epoch's: on a board whose validation set is its test
        # set (no validation item) the selected epoch is read off the test curve, and the last epoch is the
        # reading that involves no selection
        last_val = _strip(trainer.callback_metrics, "val/")
        train_seconds = fit_wall + (spec.resume_from or {}).get("train_seconds", 0.0)
        train_cpu = fit_cpu + ((spec.resume_from or {}).get("train_cpu_seconds") or 0.0)
        best = checkpoint.best_model_path or None
        # The best checkpoint is scored by a Trainer of its own, without the caller's callbacks (a sweep's pruner
        # would take the best score again as one more epoch's value) and without the logger (W&B would get a
        # spurious last epoch); the scores reach W&B as its run's summary below.
        evaluator = pl.Trainer(callbacks=[], logger=False, enable_checkpointing=False, enable_model_summary=False,
                               default_root_dir=str(checkpoint_dir),
                               **{k: v for k, v in trainer_args.items() if k not in ("callbacks", "logger")})
        with warnings.catch_warnings():  # only the weights are wanted from the checkpoint, not its callbacks' state
            warnings.filterwarnings("ignore", message=r".*callbacks used to create the checkpoint")
            val = evaluator.validate(model, datamodule=datamodule, ckpt_path=best, verbose=False)[0]
            eval_start = time.perf_counter()
            # a sweep trial is selected on validation only: its test split stays unseen
            test = {} if spec.sweep else evaluator.test(model, datamodule=datamodule, ckpt_path=best, verbose=False)[0]
        eval_seconds = time.perf_counter() - eval_start
        if best and spec.keep_checkpoint and trainer.is_global_zero:
            drop_continuation_state(best)
        best_epoch = _best_epoch(best)
        for stage, values in (("val", val), ("test", test)):  # the selected checkpoint itself may score NaN
            value = values.get(f"{stage}/{board.primary_metric}")
            if value is not None and not math.isfinite(float(value)):
                epoch = best_epoch if best_epoch is not None else max(trainer.current_epoch - 1, 0)
                raise Diverged(f"{stage}/{board.primary_metric} of the best checkpoint", float(value), epoch)
        record.update(
            status="ok",
            data=datamodule.describe(), data_hash=datamodule.data_hash,
            metrics={"val": _strip(val, "val/"), "test": _strip(test, "test/"), "last_val": last_val},
            best_epoch=best_epoch, epochs=trainer.current_epoch,
            params=sum(p.numel() for p in model.parameters() if p.requires_grad),
            train_seconds=round(train_seconds, 3),
            train_epoch_seconds=round(sum(timer.train_seconds) / max(1, len(timer.train_seconds)), 4),
            train_cpu_seconds=round(train_cpu, 3),
            train_epoch_cpu_seconds=round(sum(timer.train_cpu_seconds) / max(1, len(timer.train_cpu_seconds)), 4),
            eval_seconds=round(eval_seconds, 3),
            world_size=trainer.world_size, strategy=type(trainer.strategy).__name__,
            precision=str(trainer.precision), accelerator=type(trainer.accelerator).__name__, compiled=spec.compile,
            checkpoint=best if spec.keep_checkpoint else None,
        )
        if spec.resume_from:
            record["resumed_from"] = spec.resume_from
        if resume_state.resumed_at_epoch is not None:  # this run was stopped once and continued at this epoch
            record["resumed_interrupted_at_epoch"] = resume_state.resumed_at_epoch
            if set(resume_state.earlier_git_shas) - {sha}:  # some epochs were trained by other code
                record["earlier_attempt_git_shas"] = resume_state.earlier_git_shas
        if torch.cuda.is_available():
            record["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        if logger is not None and trainer.is_global_zero:
            record["wandb"] = {"run_id": logger.experiment.id, "project": logger.experiment.project,
                               "group": _wandb_group(board, spec), "mode": wandb_mode()}
            logger.experiment.summary.update({**{f"test/{k}": v for k, v in record["metrics"]["test"].items()},
                                              **{f"best/val/{k}": v for k, v in record["metrics"]["val"].items()},
                                              "best_epoch": best_epoch})
        record["is_global_zero"] = trainer.is_global_zero
    # a failed run is a record, never the end of the board; SIGTERMException is a SystemExit, not an Exception
    except (Exception, SIGTERMException) as err:
        if isinstance(err, SIGTERMException):  # a scheduler, `timeout` or a lease end stopped it (raised in fit)
            record.update(status="failed", failure_reason="stopped", stopped_epoch=trainer.current_epoch,
                          error=f"stopped by SIGTERM in epoch {trainer.current_epoch} (counting from 0) before the "
                                f"run finished; `paperboard run` continues it from its last finished epoch")
        elif isinstance(err, Diverged):
            record.update(status="failed", failure_reason="diverged", diverged_epoch=err.epoch, error=str(err))
        elif isinstance(err, RunPruned):  # stopped on purpose by a caller's callback (a sweep's pruner)
            record.update(status="pruned", error=str(err))
        elif isinstance(err, RunNeedsLLM):  # no language model configured or reachable: not a failure of the row
            record.update(status="needs_llm", error=str(err))
        else:
            record.update(status="failed", failure_reason="error", error=f"{type(err).__name__}: {err}",
                          traceback=traceback.format_exc())
        record["is_global_zero"] = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0))) == 0
    finally:
        _finish_wandb()
    record.update(wall_seconds=round(time.perf_counter() - started, 3),
                  cpu_seconds=round(cpu_seconds() - cpu_started, 3),
                  load_avg={"start": load_start, "end": load_average()},
                  peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  versions=_versions(), hardware=_hardware(), git_sha=sha or git_sha())
    return record


def adopt_checkpoint(source: str, dirpath: str) -> str:
    """Copy a capped run's best checkpoint into this run's checkpoint folder as its `best.ckpt`, repointing the
    saved ModelCheckpoint state at the copy, so that Lightning restores the best score and the early-stopping
    counter along with the weights, optimizer and epoch (with a foreign dirpath it would forget the best score).
    Only a checkpoint under this home's checkpoint folder is adopted, and it is loaded as weights only."""
    from lightning_modules.safe_load import safe_load

    problem = checkpoint_problem(source)
    if problem:
        raise ConfigError(f"refusing to continue from {source}: {problem}")
    target = os.path.join(dirpath, "best.ckpt")
    state = safe_load(source, map_location="cpu")
    # the capped run's clock is counted through the record's train_seconds instead
    state.get("callbacks", {}).pop(ResumeState.__qualname__, None)
    for key, callback_state in state.get("callbacks", {}).items():
        if key.startswith("ModelCheckpoint"):
            score = callback_state.get("best_model_score")
            callback_state.update(dirpath=dirpath, best_model_path=target, kth_best_model_path=target,
                                  best_k_models={target: score} if score is not None else {}, last_model_path="")
    os.makedirs(dirpath, exist_ok=True)
    tmp = target + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, target)
    return target


def drop_continuation_state(path: str) -> None:
    """A finished run keeps its best checkpoint to evaluate and to extend, without the state its modules kept only
    to continue a stopped fit (contracts.run.CONTINUATION_ONLY). The run wrote the file itself moments ago; memory
    mapping reads only what is rewritten, so a checkpoint without such state costs next to nothing."""
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    if state.pop(CONTINUATION_ONLY, None) is not None:
        with atomic_path(Path(path)) as tmp:
            torch.save(state, tmp)


def run_checkpoint_dir(board: Board, spec: RunSpec) -> Path:
    return Path(spec.checkpoint_dir or checkpoints_root() / board.name / spec.model / spec.run_id)


def _attempt_file(board: Board, spec: RunSpec) -> Path:
    """Where the run_id of a board run's latest attempt is kept while the run is unfinished (by run identity)."""
    return checkpoints_root() / board.name / "attempts" / f"{run_identity(board, spec)}.json"


def stopped_attempt(board: Board, spec: RunSpec) -> tuple[str, Path, int] | None:
    """(run_id, last.ckpt, epochs it finished) of this run's earlier attempt when it was stopped or killed after
    finishing an epoch; None when there is none. Reads only."""
    from lightning_modules.safe_load import UnsafeFileError, safe_load

    attempt = _attempt_file(board, spec)
    if not attempt.is_file():
        return None
    run_id = json.loads(attempt.read_text())["run_id"]
    last = run_checkpoint_dir(board, RunSpec(**{**asdict(spec), "run_id": run_id})) / "last.ckpt"
    if not last.is_file():
        return None
    try:
        return run_id, last, int(safe_load(last).get("epoch", 0)) + 1
    except UnsafeFileError as err:  # killed while writing it: that attempt starts over
        print(f"paperboard: notice: {err}; the run starts over", flush=True)
        return None


def continue_interrupted(board: Board, spec: RunSpec, allowed: bool = True) -> int | None:
    """Make `spec` continue this run's earlier attempt when that attempt was stopped or killed after finishing an
    epoch (it takes the attempt's run_id and last.ckpt) and return the epochs it had finished; otherwise (or when
    not `allowed`) note this attempt as the run's latest and return None."""
    stopped = stopped_attempt(board, spec) if allowed else None
    if stopped is not None:
        spec.run_id, last, epochs = stopped
        spec.resume_interrupted = str(last)
        return epochs
    attempt = _attempt_file(board, spec)
    attempt.parent.mkdir(parents=True, exist_ok=True)
    tmp = attempt.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"run_id": spec.run_id}))
    os.replace(tmp, attempt)
    return None


def settle_attempt(board: Board, spec: RunSpec, record: dict) -> None:
    """Once the attempt's record is stored, forget the attempt and delete its last.ckpt (a finished run keeps its
    best checkpoint only); keep both when it was stopped or killed, so that the next `paperboard run` continues it.
    A run that failed otherwise (an error, divergence) starts over."""
    if record.get("status") == "failed" and record.get("failure_reason") in ("stopped", "killed"):
        return
    _attempt_file(board, spec).unlink(missing_ok=True)
    (run_checkpoint_dir(board, spec) / "last.ckpt").unlink(missing_ok=True)


def checkpoints_root() -> Path:
    """The store's own artefact folder: the only place --extend continues a checkpoint from."""
    return paperboard_home() / "checkpoints"


def checkpoint_problem(path: str, sha256: str | None = None) -> str | None:
    """Why the checkpoint a record names must not be loaded (None: it may): outside this home's checkpoint folder,
    missing, or not the file whose sha256 was recorded when the run wrote it (a record can be imported from
    anywhere, so its path and file are not trusted by themselves)."""
    from lightning_modules.safe_load import file_sha256

    root, resolved = checkpoints_root().resolve(), Path(path).expanduser().resolve()
    if not resolved.is_relative_to(root):
        return f"its checkpoint {path} lies outside this store's checkpoint folder {root}"
    if not resolved.is_file():
        return f"its checkpoint {path} does not exist"
    if sha256 and file_sha256(resolved) != sha256:
        return f"its checkpoint {path} is not the file the run wrote (its sha256 differs from the recorded one)"
    return None


def _finish_wandb() -> None:
    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish()


def _strip(metrics: dict, prefix: str) -> dict:
    return {k[len(prefix):]: float(v) for k, v in metrics.items() if k.startswith(prefix)}


def _best_epoch(path: str | None) -> int | None:
    if not path:
        return None
    from lightning_modules.safe_load import safe_load

    return int(safe_load(path, map_location="cpu")["epoch"])


# ----- orchestration: one fresh subprocess per run ------------------------------------------------------------
def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_in_subprocess(spec: RunSpec, quiet: bool = False, threads: int | None = None) -> dict:
    """Run `spec` in `python -m benchmarks.worker`; a worker that dies yields a failed record.

    With `quiet` the worker's output goes to a log file under the paperboard home (named in the record).
    The worker dies with this process, even by kill -9 (benchmarks.process), and so does its temp folder's use.
    `threads` caps the worker's CPU threads (torch, OpenMP, MKL), so that parallel runs share the cores.
    """
    from benchmarks.process import launcher_tempdir

    log_path = paperboard_home() / "logs" / f"{spec.run_id}.log"
    with launcher_tempdir("run") as tmp:
        spec_path, result_path = Path(tmp) / "spec.json", Path(tmp) / "record.json"
        spec_path.write_text(json.dumps(asdict(spec)))
        cmd = [sys.executable, "-m", "benchmarks.worker", str(spec_path), str(result_path), str(os.getpid())]
        # what a worker that dies without a record still leaves: its CPU (as a finished child) and the load
        started, children_cpu, load_start = time.perf_counter(), _children_cpu_seconds(), load_average()
        env = None if threads is None else {**os.environ, "OMP_NUM_THREADS": str(threads),
                                            "MKL_NUM_THREADS": str(threads)}
        if quiet:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(log_path, "wb") as log:
                proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        else:
            proc = subprocess.run(cmd, env=env)
        if result_path.exists():
            record = json.loads(result_path.read_text())
        else:
            record = {"run_id": spec.run_id, "board": spec.board, "model": spec.model, "seed": spec.seed,
                      "status": "failed", "config_hash": "unresolved", "tuned": spec.tuning is not None,
                      "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                      "error": f"worker process exited with code {proc.returncode} before writing a record"
                               f"{' (killed)' if proc.returncode < 0 else ''}",
                      "failure_reason": "killed" if proc.returncode < 0 else "error",
                      "wall_seconds": round(time.perf_counter() - started, 3),
                      "cpu_seconds": round(_children_cpu_seconds() - children_cpu, 3),
                      "load_avg": {"start": load_start, "end": load_average()}}
        if quiet:
            record["log"] = str(log_path)
        return record


def run_identity(board: Board, spec: RunSpec) -> str:
    """What makes a run this run (board, model, seed, tuned or not, resolved data, Trainer and model arguments), as
    a hash: the key under which a process claims the run in the store before it trains it."""
    _, data_kwargs, _, model_kwargs = resolve(board, spec)
    key = [board.name, spec.model, spec.seed, spec.tuning is not None, data_kwargs, trainer_kwargs(board, spec),
           model_kwargs]
    return hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def run_board(board: Board, specs: list[RunSpec], store, quiet: bool = False, log=print, is_done=None,
              jobs: int = 1, threads: int | None = None, continue_stopped: bool = True) -> list[dict]:
    """Run every spec of a board, `jobs` at a time (each in its own process with its own record; with several
    jobs each gets `threads` CPU threads, by default the cores split between them), storing each record as soon
    as it exists. A run whose earlier attempt was stopped or killed continues from that attempt's last finished
    epoch (`continue_interrupted`) unless `continue_stopped` is off.

    Each run is claimed in the store before it trains (`store.claim`, released once its record is stored): a run
    that another live process holds is skipped (that process stores it), and so is one that `is_done(spec)` says
    another process finished meanwhile, so two `paperboard run` on one store never train the same run."""
    from concurrent.futures import ThreadPoolExecutor

    from benchmarks.process import remove_stale_tempdirs
    from benchmarks.store import ClaimHeartbeat

    remove_stale_tempdirs("run")  # those of killed runners
    jobs = max(1, min(jobs, len(specs) or 1))
    if jobs > 1 and threads is None:
        threads = max(1, (os.cpu_count() or 1) // jobs)
    started, finished = time.perf_counter(), [0]
    lock = threading.Lock()

    def progress() -> str:
        with lock:
            finished[0] += 1
            done, elapsed = finished[0], time.perf_counter() - started
        eta = elapsed / done * (len(specs) - done)
        return f"{done}/{len(specs)} runs done, {elapsed:.0f}s elapsed, ETA {eta:.0f}s"

    def one(i: int, spec: RunSpec, heartbeat) -> dict | None:
        what = f"{spec.model} seed={spec.seed}{' (tuned)' if spec.tuning else ''}"
        token, holder = store.claim(run_identity(board, spec), board.name, what)
        if token is None:
            log(f"[{i}/{len(specs)}] {board.name}: {what}: skipped, another paperboard process "
                f"({holder['host']}:{holder['pid']}) is training it on this store")
            return None
        heartbeat.tokens.append(token)
        try:
            if is_done is not None and is_done(spec):
                log(f"[{i}/{len(specs)}] {board.name}: {what}: skipped, another process finished it meanwhile")
                return None
            done_epochs = continue_interrupted(board, spec, allowed=continue_stopped)
            log(f"[{i}/{len(specs)}] {board.name}: {what} ..." + (
                f" (continues its stopped attempt {spec.run_id[:8]} after epoch {done_epochs})" if done_epochs else ""))
            record = _run_and_store(board, spec, store, quiet, threads)
            settle_attempt(board, spec, record)
        finally:
            heartbeat.tokens.remove(token)
            store.release(token)
        if record["status"] == "ok":
            test = record["metrics"]["test"]
            log(f"[{i}/{len(specs)}] {what} done in {record.get('wall_seconds', 0):.1f}s: test "
                f"{board.primary_metric}={test.get(board.primary_metric, float('nan')):.4f} "
                f"(best epoch {record.get('best_epoch')} of {record.get('epochs')} trained); {progress()}")
        elif record["status"] == "needs_llm":
            log(f"[{i}/{len(specs)}] {what} needs an LLM: {record.get('error')}; {progress()}")
        else:
            log(f"[{i}/{len(specs)}] {what} FAILED: {record.get('error')}; {progress()}")
        return record

    with ClaimHeartbeat(store) as heartbeat:
        if jobs == 1:
            records = [one(i, spec, heartbeat) for i, spec in enumerate(specs, 1)]
        else:
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                records = list(pool.map(lambda args: one(*args, heartbeat), enumerate(specs, 1)))
    return [r for r in records if r is not None]


def _run_and_store(board: Board, spec: RunSpec, store, quiet: bool, threads: int | None = None) -> dict:
    record = run_in_subprocess(spec, quiet=quiet, threads=threads)
    record["board"] = board.name  # spec.board may be a file path
    if record.get("checkpoint") and Path(record["checkpoint"]).is_file():  # --extend checks it before loading
        from lightning_modules.safe_load import file_sha256

        record["checkpoint_sha256"] = file_sha256(record["checkpoint"])
    store.add(record)
    return record
