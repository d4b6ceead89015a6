"""Studies: names derived from the protocol, the study loop each worker runs, and `tuned_params` for `run --tuned`.

One study = one board x model x protocol. Its name is `<board>/<model>/<hash>`, the hash covering everything
that makes trials comparable (dataset and its args, metric and direction, early stopping, epoch cap, Trainer
and fixed model overrides, pruner, sampler seed), so the same command finds the same study again, and a
changed protocol starts a new one instead of mixing incomparable trials. The number of trials is NOT in the
name: `--trials N` is the study's target of finished (complete + pruned) trials, so the command is idempotent
(a complete study trains nothing) and raising N extends the study.

Each worker (a process; `--workers K` starts K) runs `run_worker`: fail stale trials (a dead worker's), stop when
the study holds N finished trials, wait while the missing ones are running elsewhere, else run one more trial
in a fresh subprocess (`sweeps/trial.py`). A trial whose process is killed, or whose worker stops beating
(heartbeat), is failed and its parameters are re-queued (at most MAX_RETRIES times), so nothing is lost and no
finished trial runs again. Two workers that ask for the last missing trial at the same moment are resolved by
trial number: the later one is marked failed with user attr `paperboard:surplus` and trains nothing.

Trial runs are NOT written to the results store (so they never reach a board table): the study holds each
trial's parameters, per-epoch validation values, state and a summary of its run record (user attr `run`);
the W&B group `sweep/<board>/<model>` holds one run per trial.
"""
from __future__ import annotations

import math
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import optuna
from optuna.trial import TrialState

from benchmarks.boards import Board, ConfigError
from benchmarks.process import Heartbeat
from benchmarks.store import redact
from sweeps import storage as storages
from sweeps.pruning import make_pruner, multi_process, pruner_config

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
HEARTBEAT_ATTR = "paperboard:heartbeat"  # journal storages: our own heartbeat (seconds since the epoch)
RETRY_ATTR = "paperboard:retry"          # on a re-queued trial: {"origin", "previous", "retries", "reason"}
SURPLUS_ATTR = "paperboard:surplus"
DEFAULT_ATTR = "paperboard:default"     # on the trial that runs the model's default configuration
MAX_RETRIES = 2                          # a trial killed / gone stale is re-queued at most this often
MAX_CONSECUTIVE_FAILURES = 5             # a worker whose trials keep failing stops with the last error
DEFAULT_HEARTBEAT = 10                   # seconds between beats; a trial is stale after 3 missed intervals
SWEEP_KEYS = ("trials", "max_epochs", "pruner")  # a board's `sweep:` budget
SAMPLER = {"name": "TPESampler", "n_startup_trials": 10, "multivariate": True, "constant_liar": True}


class TrialFailed(Exception):
    """A trial that ended without a value (its run failed, its process died, or it was surplus)."""


@dataclass
class SweepPlan:
    """Everything a worker needs to run one model's study (JSON-serialisable; sent to worker processes)."""

    board: str          # a board name or the path of a board YAML, as the trial process loads it
    board_name: str
    model: str
    study_name: str
    storage: str
    target: int          # finished (complete + pruned) trials wanted
    max_epochs: int
    direction: str
    primary_metric: str
    pruner: dict | None
    sampler: dict
    protocol: dict
    space: list[str]     # the names of the model's search-space parameters (empty: nothing to tune)
    seed: int = 0        # the training seed of every trial, and the sampler's base seed
    data_dir: str | None = None
    model_args: dict = field(default_factory=dict)    # fixed by --model.X and the row's pins (see `pins`)
    data_args: dict = field(default_factory=dict)
    trainer_args: dict = field(default_factory=dict)  # includes max_epochs = the cap
    heartbeat: int = DEFAULT_HEARTBEAT
    workers: int = 1
    threads: int | None = None  # CPU threads per trial; None: the cores divided by the workers (when above 1)
    notes: list[str] = field(default_factory=list)
    storage_given: bool = False
    verbose: bool = False

    @property
    def pins(self) -> dict:
        """The searched parameters this study holds fixed (the row's defining arguments and --model.X)."""
        return {k: v for k, v in self.model_args.items() if k in self.space}

    @property
    def log_dir(self) -> Path:
        from benchmarks.runner import paperboard_home

        import hashlib

        where = hashlib.sha1(self.storage.encode()).hexdigest()[:6]  # same study name in two storages: two folders
        return paperboard_home() / "sweeps" / f"{self.study_name.replace('/', '__')}__{where}"

    def command(self) -> str:
        """The sweep command that fills (or resumes) this study."""
        parts = ["paperboard sweep", self.board, "--model", self.model, "--trials", str(self.target)]
        if self.storage_given:
            parts += ["--storage", self.storage]
        return redact(" ".join(parts))  # printed in hints and stored in the study: never a password


def trial_threads(plan: SweepPlan) -> int | None:
    """CPU threads of each trial: `--threads` when given, else the cores split between the workers (cores / K for
    K > 1 workers, at least 1), else None (a single worker leaves torch's default, or OMP_NUM_THREADS, alone)."""
    if plan.threads is not None:
        return plan.threads
    return max(1, (os.cpu_count() or 1) // plan.workers) if plan.workers > 1 else None


def probe_space(model_cls) -> dict:
    """The distributions the model's `search_space(trial)` suggests (asked on a throw-away in-memory trial)."""
    space = getattr(model_cls, "search_space", None)
    if space is None:
        raise ConfigError(f"{model_cls.__name__} declares no search_space(trial) staticmethod; add one beside the model")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trial = optuna.create_study().ask()
    space(trial)
    return trial.distributions


def space_names(model_cls) -> list[str]:
    """The parameter names of the model's search space."""
    return list(probe_space(model_cls))


def make_plan(board: Board, model: str, trials: int | None = None, storage: str | None = None,
              overrides: dict | None = None, max_epochs: int | None = None, prune: bool = True, seed: int = 0,
              data_dir: str | None = None, heartbeat: int = DEFAULT_HEARTBEAT, workers: int = 1,
              board_arg: str | None = None, verbose: bool = False, threads: int | None = None) -> SweepPlan:
    """One model's study under the board's sweep budget (the same for every model of the board)."""
    import lightning_modules  # noqa: F401  (fills the registry)
    from benchmarks.runner import RunSpec, config_hash, decide_epoch_cap, resolve
    from contracts.registry import MODELS

    overrides = overrides or {}
    unknown = set(board.sweep) - set(SWEEP_KEYS)
    if unknown:
        raise ConfigError(f"board {board.name}: unknown sweep key(s) {', '.join(sorted(unknown))}; valid: "
                          f"{', '.join(SWEEP_KEYS)}")
    model_over, data_over, trainer_over = (dict(overrides.get(k) or {}) for k in ("model", "data", "trainer"))
    resolve(board, RunSpec(board=board.name, model=model, seed=seed, model_args=model_over, data_args=data_over,
                           trainer_args=trainer_over))  # unknown model / config keys fail here, before any study
    space = space_names(MODELS.for_row(model).cls)
    pinned = row_pins(board, model, space)
    model_over = {**pinned, **model_over}
    cap = decide_epoch_cap(board, {"max_epochs": max_epochs or trainer_over.get("max_epochs")}, sweep=True)
    trainer_args = {**trainer_over, "max_epochs": cap}
    notes = []
    can_prune = prune and not multi_process({**board.trainer_for(model), **trainer_args})
    if prune and not can_prune:
        notes.append("pruning is off: trials train on several processes (DDP pruning is untested here)")
    target = int(trials if trials is not None else board.sweep.get("trials", 40))
    if pinned:
        notes.append(f"{model} is defined by the arguments {pinned}: its sweep holds them fixed")
    if not space:
        notes.append(f"{model}'s search space is empty: its one configuration runs as a single trial "
                     f"(instead of {target})")
        target = min(target, 1)
    pruner = pruner_config(cap, can_prune, board.sweep.get("pruner"))
    sampler = {**SAMPLER, "seed": seed}
    protocol = {
        "dataset": board.dataset, "dataset_args": {**board.dataset_args, **data_over},
        "primary_metric": board.primary_metric, "direction": board.direction,
        "early_stopping_patience": board.early_stopping_patience,
        "trainer": {**board.trainer_for(model), **trainer_args}, "model_args": {**board.models[model], **model_over},
        "pruner": pruner, "sampler": sampler, "training_seed": seed,
    }
    storage_url = storages.resolve_url(storage)
    return SweepPlan(
        board=board_arg or board.name, board_name=board.name, model=model,
        study_name=f"{board.name}/{model}/{config_hash(protocol)}", storage=storage_url, target=target,
        max_epochs=cap, direction=board.direction, primary_metric=board.primary_metric, pruner=pruner,
        sampler=sampler, protocol=protocol, space=space, seed=seed, data_dir=data_dir, model_args=model_over,
        data_args=data_over, trainer_args=trainer_args, heartbeat=heartbeat, workers=workers, threads=threads,
        notes=notes,
        storage_given=storage is not None, verbose=verbose)


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for dist in ("optuna", "optuna-integration", "lightning", "torch", "sqlalchemy"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = None
    return out


def open_plan_storage(plan: SweepPlan):
    return storages.open_storage(plan.storage, heartbeat_interval=plan.heartbeat, stale_callback=_stale_callback)


def create_study(plan: SweepPlan, storage=None) -> optuna.Study:
    """Create the plan's study, or load it if it exists; record sampler, pruner, budget and versions on it."""
    storage = storage or open_plan_storage(plan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(study_name=plan.study_name, storage=storage, direction=plan.direction,
                                    pruner=make_pruner(plan.pruner), load_if_exists=True)
    if "paperboard" not in study.user_attrs:
        study.set_user_attr("paperboard", {
            "board": plan.board_name, "model": plan.model, "protocol": plan.protocol, "sampler": plan.sampler,
            "sampler_seeding": "TPESampler(seed = seed*1000003 + worker*10007 + trials so far), re-made per trial",
            "pruner": plan.pruner, "max_epochs": plan.max_epochs, "space": plan.space, "versions": versions(),
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "notes": plan.notes})
    study.set_user_attr("target_trials", plan.target)
    study.set_user_attr("last_command", {"command": plan.command(), "workers": plan.workers, "versions": versions(),
                                         "at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    return study


def row_pins(board: Board, model: str, space: list[str]) -> dict:
    """The searched parameters that define a row, held fixed by its sweep so that it tunes the rest only: a
    registered variant's fixed arguments (an ablation such as `cord_no_rc`'s influence_weight = 0 stays an
    ablation) and the board arguments of an unregistered "name@label" row (`xcrossnet@paper`'s embedding size,
    `hstu@d128`'s width). MLP shapes are given in the search space's string form ("400-400")."""
    from contracts.registry import MODELS

    entry = MODELS.for_row(model)
    pins = {k: as_stored(v) for k, v in entry.arguments.items() if k in space}
    if "@" in model and not MODELS.has(model):
        pins.update({k: as_stored(v) for k, v in board.models[model].items() if k in space})
    return pins


def as_stored(value):
    """A parameter value in the form a study stores it: MLP shapes as "400-400" (every storage persists it)."""
    return "-".join(map(str, value)) if isinstance(value, (list, tuple)) else value


def default_params(plan: SweepPlan) -> dict:
    """The board's configuration of the model (board args over constructor defaults) for each searched parameter
    whose value lies inside its search distribution; the others are left to the sampler, the pinned ones to
    `PinnedTrial`."""
    import inspect

    import lightning_modules  # noqa: F401  (fills the registry)
    from contracts.registry import MODELS

    entry = MODELS.for_row(plan.model)
    cls = entry.cls
    signature = inspect.signature(cls.__init__).parameters
    configured = plan.protocol["model_args"]  # the board's arguments and the fixed --model.X overrides
    # a registered variant's fixed arguments stand in for the constructor's defaults
    defaults = {**{k: p.default for k, p in signature.items()}, **entry.arguments}
    out = {}
    for name, dist in probe_space(cls).items():
        value = configured.get(name, defaults.get(name, inspect.Parameter.empty))
        if value is inspect.Parameter.empty or name in plan.pins:
            continue
        value = as_stored(value)
        try:
            if dist._contains(dist.to_internal_repr(value)):
                out[name] = value
        except (ValueError, TypeError):
            continue
    return out


def enqueue_default(study: optuna.Study, plan: SweepPlan) -> dict | None:
    """Make a new study's first trial the default configuration, so every study measures the default under the
    same budget and the tuned result is never worse than it. Returns the enqueued parameters (None: not new)."""
    if study.get_trials(deepcopy=False):
        return None
    params = default_params(plan)
    study.enqueue_trial(params, user_attrs={DEFAULT_ATTR: True}, skip_if_exists=True)
    return params


def load_study(plan: SweepPlan, storage=None) -> optuna.Study | None:
    storage = storage or open_plan_storage(plan)
    try:
        return optuna.load_study(study_name=plan.study_name, storage=storage, pruner=make_pruner(plan.pruner))
    except KeyError:
        return None


# ----- counting, stale trials, retries --------------------------------------------------------------------------
@dataclass
class Counts:
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    waiting: int = 0

    @property
    def finished(self) -> int:
        return self.complete + self.pruned


def counts(study: optuna.Study) -> Counts:
    c = Counter(t.state for t in study.get_trials(deepcopy=False))
    return Counts(complete=c[TrialState.COMPLETE], pruned=c[TrialState.PRUNED], failed=c[TrialState.FAIL],
                  running=c[TrialState.RUNNING], waiting=c[TrialState.WAITING])


def requeue(study: optuna.Study, number: int, params: dict, user_attrs: dict, reason: str) -> bool:
    """Queue a trial's parameters again (a WAITING trial, run next by any worker). False when out of retries."""
    previous = user_attrs.get(RETRY_ATTR) or {}
    retries = int(previous.get("retries", 0))
    if retries >= MAX_RETRIES:
        print(f"paperboard: trial {number} {reason}; already retried {retries} times, not re-queued", flush=True)
        return False
    keep = {DEFAULT_ATTR: True} if user_attrs.get(DEFAULT_ATTR) else {}
    study.enqueue_trial(dict(params), user_attrs={**keep, RETRY_ATTR: {
        "origin": previous.get("origin", number), "previous": number, "retries": retries + 1, "reason": reason}})
    return True


def _stale_callback(study: optuna.Study, trial) -> None:
    """RDBStorage's heartbeat_stale_trial_callback: the stale trial is already FAIL; queue its parameters again."""
    requeue(study, trial.number, trial.params, trial.user_attrs, "lost its worker (heartbeat stale)")


def reap_stale(study: optuna.Study, storage, plan: SweepPlan) -> None:
    """Fail the running trials whose worker stopped beating, and re-queue them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if isinstance(storage, optuna.storages.RDBStorage):
            optuna.storages.fail_stale_trials(study)  # Optuna's heartbeat; calls _stale_callback per trial
            return
    if not isinstance(storage, optuna.storages.JournalStorage):
        return
    grace, now = 3 * plan.heartbeat, time.time()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        beat = t.system_attrs.get(HEARTBEAT_ATTR) or (t.datetime_start.timestamp() if t.datetime_start else now)
        if now - beat <= grace:
            continue
        try:
            if not storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker failed it first (and re-queued it)
        requeue(study, t.number, t.params, t.user_attrs, "lost its worker (heartbeat stale)")


def journal_heartbeat(storage, trial_id: int, interval: int) -> Heartbeat:
    """Stamps the trial every `interval` seconds (JournalStorage has no heartbeat of its own); stops once the trial
    was failed by another worker or the file went away."""
    def beat() -> bool:
        try:
            storage.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())
        except Exception:
            return False
        return True

    return Heartbeat(beat, interval, immediately=True)


# ----- one trial ------------------------------------------------------------------------------------------------
def make_sampler(plan: SweepPlan, worker: int, trials_so_far: int) -> optuna.samplers.BaseSampler:
    """A seeded TPE sampler, re-made per trial with a seed from (seed, worker, trials so far): a resumed or parallel
    study never replays the random start-up draws of an earlier trial, and one worker's sweep is reproducible."""
    seed = plan.seed * 1_000_003 + worker * 10_007 + trials_so_far
    settings = {k: v for k, v in plan.sampler.items() if k not in ("name", "seed")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, **settings)


class PinnedTrial:
    """A trial that answers the pinned parameters itself and asks the wrapped trial for the others. Pinned values
    never reach the sampler or the study, so a pin outside the searched range stays legal (an ablation's weight 0
    where the full model searches a log scale) and the study's importances cover what was searched only."""

    def __init__(self, trial, pins: dict):
        self._trial, self._pins = trial, pins

    def _ask(self, kind: str, name: str, *args, **kwargs):
        return self._pins[name] if name in self._pins else getattr(self._trial, kind)(name, *args, **kwargs)

    def suggest_float(self, name, *args, **kwargs):
        return self._ask("suggest_float", name, *args, **kwargs)

    def suggest_int(self, name, *args, **kwargs):
        return self._ask("suggest_int", name, *args, **kwargs)

    def suggest_categorical(self, name, *args, **kwargs):
        return self._ask("suggest_categorical", name, *args, **kwargs)

    def __getattr__(self, attribute):
        return getattr(self._trial, attribute)


def run_summary(record: dict, primary: str) -> dict:
    """What the study keeps of a trial's run record (user attr `run`)."""
    keep = ("run_id", "status", "best_epoch", "epochs", "params", "train_seconds", "train_epoch_seconds",
            "wall_seconds", "peak_rss_mb", "peak_gpu_mb", "config_hash", "data_hash", "error", "wandb", "git_sha")
    out = {k: record[k] for k in keep if k in record}
    out["val"] = (record.get("metrics") or {}).get("val", {})
    return out


class Objective:
    def __init__(self, plan: SweepPlan, study: optuna.Study, storage, worker: int):
        import lightning_modules  # noqa: F401  (fills the registry)
        from contracts.registry import MODELS

        self.plan, self.study, self.storage, self.worker = plan, study, storage, worker
        self.space = MODELS.for_row(plan.model).cls.search_space
        self.trial_id: int | None = None
        self.number: int | None = None
        self.record: dict | None = None
        self.surplus = False

    def __call__(self, trial: optuna.Trial) -> float:
        from benchmarks.runner import RunSpec, paperboard_home
        from sweeps.trial import launch

        plan = self.plan
        self.trial_id, self.number = trial._trial_id, trial.number
        ahead = [t for t in self.study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
                 if t.number < trial.number]
        if len(ahead) >= plan.target:  # another worker took the last missing trial first
            self.surplus = True
            trial.set_user_attr(SURPLUS_ATTR, True)
            if RETRY_ATTR in trial.user_attrs:  # keep a re-queued configuration queued
                self.study.enqueue_trial(trial.params, user_attrs={RETRY_ATTR: trial.user_attrs[RETRY_ATTR]})
            raise TrialFailed(f"surplus: {len(ahead)} trials ahead of trial {trial.number} already make the target")
        params = self.space(PinnedTrial(trial, plan.pins))
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        spec = RunSpec(board=plan.board, model=plan.model, seed=plan.seed, data_dir=plan.data_dir,
                       model_args={**plan.model_args, **params}, data_args=plan.data_args,
                       trainer_args={**plan.trainer_args, **({} if plan.verbose else {"enable_progress_bar": False})},
                       keep_checkpoint=False,
                       sweep={"storage": plan.storage, "study": plan.study_name, "trial_id": trial._trial_id,
                              "trial_number": trial.number, "pruner": plan.pruner})
        spec.checkpoint_dir = str(paperboard_home() / "sweeps" / "checkpoints" / spec.run_id)
        trial.set_user_attr("run_id", spec.run_id)
        plan.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = plan.log_dir / f"trial-{trial.number:04d}.log"
        journal = isinstance(self.storage, optuna.storages.JournalStorage)
        beat = journal_heartbeat(self.storage, trial._trial_id, plan.heartbeat) if journal else None
        try:
            if beat:
                beat.__enter__()
            record, code = launch(spec, None if plan.verbose else log_path, threads=trial_threads(plan),
                                  override=plan.threads is not None)
        except KeyboardInterrupt:
            requeue(self.study, trial.number, trial.params, trial.user_attrs, "was interrupted")
            raise
        finally:
            if beat:
                beat.__exit__()
            shutil.rmtree(spec.checkpoint_dir, ignore_errors=True)
        self.record = record
        if record is None:
            if code < 0:  # killed by a signal (kill -9, OOM killer): the configuration deserves another go
                requeue(self.study, trial.number, trial.params, trial.user_attrs, f"was killed (signal {-code})")
            raise TrialFailed(f"trial process exited with code {code} before writing a record; log: {log_path}")
        trial.set_user_attr("run", run_summary(record, plan.primary_metric))
        if record["status"] == "pruned":
            raise optuna.TrialPruned(record.get("error") or "pruned")
        if record["status"] != "ok":
            raise TrialFailed(f"{record.get('error')} (log: {log_path})")
        value = record["metrics"]["val"].get(plan.primary_metric)
        if value is None or math.isnan(value):
            raise TrialFailed(f"the run reported no val/{plan.primary_metric} (log: {log_path})")
        return float(value)


# ----- the study loop -------------------------------------------------------------------------------------------
def best_line(study: optuna.Study, plan: SweepPlan) -> str:
    try:
        best = study.best_trial
    except ValueError:
        return "no complete trial yet"
    return f"best val {plan.primary_metric} {best.value:.4f} (trial {best.number})"


def run_worker(plan: SweepPlan, worker: int = 0, log=print, poll_seconds: float = 2.0) -> int:
    """Run trials until the study holds `plan.target` finished ones; 0 when it does, 1 if trials keep failing."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = open_plan_storage(plan)
    study = load_study(plan, storage)
    if study is None:
        raise ConfigError(f"study {plan.study_name} does not exist in {redact(plan.storage)}")
    tag = f"[{plan.model}{f' w{worker}' if plan.workers > 1 else ''}]"
    failures, waiting_said = 0, False
    while True:
        reap_stale(study, storage, plan)
        c = counts(study)
        if c.finished >= plan.target:
            return 0
        if c.finished + c.running >= plan.target:  # the missing trials are running in other workers
            if not waiting_said:
                log(f"{tag} {c.finished}/{plan.target} finished; waiting for {c.running} trial(s) running elsewhere",
                    flush=True)
                waiting_said = True
            time.sleep(poll_seconds)
            continue
        waiting_said = False
        study.sampler = make_sampler(plan, worker, c.finished + c.failed + c.running + c.waiting)
        objective = Objective(plan, study, storage, worker)
        started = time.perf_counter()
        try:
            study.optimize(objective, n_trials=1, catch=(TrialFailed,))
        except optuna.exceptions.UpdateFinishedTrialError:
            log(f"{tag} trial {objective.number} was failed by another worker (its heartbeat looked stale); "
                f"carrying on", flush=True)
            continue
        seconds = time.perf_counter() - started
        trial = study._storage.get_trial(objective.trial_id)
        if objective.surplus:
            continue
        c = counts(study)
        if trial.state == TrialState.COMPLETE:
            what, failures = f"complete: val {plan.primary_metric} {trial.value:.4f}", 0
        elif trial.state == TrialState.PRUNED:
            epochs = max(trial.intermediate_values) + 1 if trial.intermediate_values else "?"
            what, failures = f"pruned after {epochs} epoch(s)", 0
        else:
            failures += 1
            what = f"FAILED: {(objective.record or {}).get('error') or 'see the trial log'}"
        log(f"{tag} trial {trial.number} {what} ({seconds:.0f}s) | {c.finished}/{plan.target} finished "
            f"({c.pruned} pruned, {c.failed} failed) | {best_line(study, plan)}", flush=True)
        if failures >= MAX_CONSECUTIVE_FAILURES:
            log(f"{tag} stopping: {failures} trials in a row failed; last: {what}", flush=True)
            return 1


def run_study(plan: SweepPlan, log=print) -> int:
    """Run the plan's workers: in this process for one worker, else `plan.workers` separate processes."""
    if plan.workers == 1:
        return run_worker(plan, 0, log)
    import json
    import tempfile

    with tempfile.TemporaryDirectory(prefix="paperboard-sweep-") as tmp:
        plan_path = Path(tmp) / "plan.json"
        plan_path.write_text(json.dumps(asdict(plan)))
        procs = [subprocess.Popen([sys.executable, "-m", "sweeps.worker", str(plan_path), str(i)], cwd=os.getcwd())
                 for i in range(plan.workers)]
        try:
            codes = [p.wait() for p in procs]
        except BaseException:
            for p in procs:  # Ctrl-C reached them too; let them re-queue their trials, then make sure they stop
                try:
                    p.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    p.kill()
            raise
    return max(codes)


# ----- the tuned configuration ----------------------------------------------------------------------------------
def tuned_params(board: Board, model: str, storage_url: str | None) -> tuple[dict, dict]:
    """The best trial's parameters of `model`'s sweep on `board` and where they came from.

    The study of the board's default sweep protocol is used when it has a complete trial; otherwise the only
    study of this board and model on the same data in the storage (e.g. one run with a smaller --max-epochs).
    Several candidates and no default is an error that lists them.
    """
    plan = make_plan(board, model, storage=storage_url)
    storage = open_plan_storage(plan)
    study = load_study(plan, storage)
    if study is None or not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        candidates = [s for s in optuna.get_all_study_summaries(storage, include_best_trial=True)
                      if s.study_name.startswith(f"{board.name}/{model}/") and s.best_trial is not None
                      and (s.user_attrs.get("paperboard") or {}).get("protocol", {}).get("dataset_args")
                      == plan.protocol["dataset_args"]]
        if len(candidates) != 1:
            listed = "; ".join(f"{c.study_name} (max_epochs {c.user_attrs['paperboard'].get('max_epochs')}, "
                               f"pruner {c.user_attrs['paperboard'].get('pruner')})" for c in candidates)
            state = f"there are {len(candidates)} other sweeps of it: {listed}. " if candidates else ""
            raise ConfigError(f"--tuned: no finished sweep of {model} on {board.name} under the board's sweep "
                              f"protocol (study {plan.study_name} in {redact(plan.storage)}); {state}Run: "
                              f"{plan.command()}")
        study = optuna.load_study(study_name=candidates[0].study_name, storage=storage)
    best = study.best_trial
    tuning = {"study": study.study_name, "trials": counts(study).finished, "best_value": best.value,
              "trial": best.number, "max_epochs": study.user_attrs.get("paperboard", {}).get("max_epochs")}
    from contracts.registry import MODELS

    # replayed through the search space, so the parameters reach the model in the form it takes (an MLP shape
    # stored as "400-400" comes back as [400, 400])
    trial = PinnedTrial(optuna.trial.FixedTrial(best.params), plan.pins)
    return MODELS.for_row(model).cls.search_space(trial), tuning
