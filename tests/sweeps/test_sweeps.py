"""Sweeps end to end on tiny synthetic boards: parallel workers on a journal file and on PostgreSQL finish exactly
N trials with no duplicates; a kill -9 of a worker mid-trial loses nothing and the killed trial is failed and
retried; a planted bad region is pruned early; --all-models gives every model the same budget; SQLite is refused
for parallel workers; an unreachable storage is one clear error.

PostgreSQL tests use PAPERBOARD_TEST_POSTGRES_URL (set by .ci/run) and skip without it.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from benchmarks.boards import ConfigError, load_board
from benchmarks.cli import main
from sweeps.study import DEFAULT_ATTR, RETRY_ATTR, SURPLUS_ATTR, create_study, make_plan, tuned_params

PG_URL = os.environ.get("PAPERBOARD_TEST_POSTGRES_URL")
needs_postgres = pytest.mark.skipif(not PG_URL, reason="PAPERBOARD_TEST_POSTGRES_URL not set (see .ci/run)")

TINY = {
    "name": "sweep-tiny", "family": "seqrec", "title": "tiny synthetic board for sweep tests",
    "dataset": "synthetic-seqrec", "dataset_args": {"num_users": 120, "num_items": 40, "max_len": 8, "seed": 0},
    "primary_metric": "ndcg@10", "metrics": ["hr@10", "ndcg@10"],
    "models": {"sasrec": {"embed_dim": 16}, "gru4rec": {"embed_dim": 16}, "pop": {}},
    "seeds": [0], "trainer": {"max_epochs": 2}, "early_stopping_patience": 2,
    "sweep": {"trials": 2, "max_epochs": 2},
}


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # trial processes share 2 cores


def write_board(tmp_path, name="sweep-tiny", **changes) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**TINY, "name": name, **changes}, sort_keys=False))
    return str(path)


def study_of(board_path, model, storage, **plan_kwargs) -> optuna.Study:
    plan = make_plan(load_board(board_path), model, storage=storage, **plan_kwargs)
    from sweeps.storage import open_storage

    return optuna.load_study(study_name=plan.study_name, storage=open_storage(storage))


def check_finished_exactly(study: optuna.Study, n: int) -> list:
    """N finished trials, none running, no trial run twice (run ids, parameter sets); failures only surplus ones."""
    trials = study.get_trials()
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == n, [(t.number, t.state) for t in trials]
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    retried = {(t.user_attrs.get(RETRY_ATTR) or {}).get("previous") for t in trials}
    for t in trials:  # a failed trial is a surplus one (two workers took the last slot) or was re-queued
        assert t.state != TrialState.FAIL or t.user_attrs.get(SURPLUS_ATTR) or t.number in retried, t
    run_ids = [t.user_attrs["run_id"] for t in finished]
    assert len(set(run_ids)) == n
    params = [tuple(sorted(t.params.items())) for t in finished]
    assert len(set(params)) == n, params
    assert len({t.number for t in trials}) == len(trials)
    return finished


# ----- fast checks: no training ---------------------------------------------------------------------------------
def test_lightning_only_no_pytorch_lightning_package():
    """optuna-integration's callback is the lightning.pytorch flavour; nothing imports pytorch_lightning (pitfall 1)."""
    import lightning.pytorch as pl
    from optuna_integration.pytorch_lightning import PyTorchLightningPruningCallback

    assert issubclass(PyTorchLightningPruningCallback, pl.Callback)
    root = Path(__file__).resolve().parents[2]
    bad = re.compile(r"^\s*(import|from)\s+pytorch_lightning\b", re.M)
    for path in [*root.glob("sweeps/*.py"), root / "benchmarks" / "runner.py", root / "benchmarks" / "worker.py"]:
        assert not bad.search(path.read_text()), path


def test_plan_budget_and_study_names(tmp_path):
    board = load_board(write_board(tmp_path))
    plans = {m: make_plan(board, m, trials=40, storage="sqlite:///x.db") for m in board.models}
    # the equal-budget rule: same target, epoch cap, pruner and sampler for every model with something to tune
    assert plans["sasrec"].target == plans["gru4rec"].target == 40
    assert plans["pop"].target == 1 and "empty" in plans["pop"].notes[0]
    assert len({p.max_epochs for p in plans.values()}) == 1 and plans["sasrec"].max_epochs == 2
    assert len({repr(p.pruner) for p in plans.values()}) == 1 and plans["sasrec"].pruner["name"] == "MedianPruner"
    assert len({repr(p.sampler) for p in plans.values()}) == 1 and plans["sasrec"].sampler["seed"] == 0
    # the name is found again by the same command; the trial count is a target, not part of the protocol
    assert plans["sasrec"].study_name.startswith("sweep-tiny/sasrec/")
    assert make_plan(board, "sasrec", trials=7, storage="sqlite:///x.db").study_name == plans["sasrec"].study_name
    for other in (dict(prune=False), dict(max_epochs=3), dict(seed=1), dict(overrides={"data": {"max_len": 6}})):
        assert make_plan(board, "sasrec", trials=40, **other).study_name != plans["sasrec"].study_name, other
    # several processes per trial -> no pruning (the DDP path is untested here), said in a note
    ddp = make_plan(board, "sasrec", overrides={"trainer": {"devices": 2, "strategy": "ddp_spawn"}})
    assert ddp.pruner is None and "pruning is off" in ddp.notes[0]


def test_label_row_sweeps_with_its_defining_arguments_fixed(tmp_path):
    """A "name@label" row (not a registered variant) is defined by its board arguments: its sweep holds the ones
    the search space would sample fixed and tunes the rest."""
    from lightning_modules.seqrec.sasrec import SASRec
    from sweeps.study import PinnedTrial, make_sampler

    board = load_board(write_board(tmp_path, models={"sasrec": {"embed_dim": 32},
                                                     "sasrec@wide": {"embed_dim": 128, "num_blocks": 1}}))
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    plain, wide = make_plan(board, "sasrec", storage=url), make_plan(board, "sasrec@wide", storage=url)
    assert plain.model_args == {}
    assert wide.model_args == {"embed_dim": 128, "num_blocks": 1} and "holds them fixed" in wide.notes[0]
    study = create_study(wide)
    for number in range(3):  # the worker's sampler draws the trials (no training)
        study.sampler = make_sampler(wide, 0, number)
        trial = study.ask()
        params = SASRec.search_space(PinnedTrial(trial, wide.pins))
        study.tell(trial, float(number))
        assert params["embed_dim"] == 128 and params["num_blocks"] == 1 and "embed_dim" not in trial.params
    params, _ = tuned_params(board, "sasrec@wide", url)
    assert params["embed_dim"] == 128 and params["num_blocks"] == 1 and params["lr"] == study.best_trial.params["lr"]


def test_tuned_params_reach_the_model_in_its_argument_types(tmp_path):
    """An MLP shape is stored in the study as "400-400"; `--tuned` must hand the model [400, 400]."""
    from lightning_modules.ctr.deepfm import DeepFM

    board = load_board(str(Path(__file__).parents[2] / "benchmarks" / "boards" / "ctr-synthetic.yaml"))
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    study = create_study(make_plan(board, "deepfm", storage=url))
    trial = study.ask()
    DeepFM.search_space(trial)
    study.tell(trial, 0.7)
    params, _ = tuned_params(board, "deepfm", url)
    assert isinstance(params["hidden_units"], list) and all(isinstance(u, int) for u in params["hidden_units"])
    assert "-".join(map(str, params["hidden_units"])) == study.best_trial.params["hidden_units"]


def test_refuses_sqlite_for_parallel_workers(tmp_path, capsys):
    board = write_board(tmp_path)
    for extra in (["--storage", f"sqlite:///{tmp_path / 's.db'}"], []):  # explicit, and the default SQLite file
        assert main(["sweep", board, "--model", "sasrec", "--trials", "2", "--workers", "2", *extra]) == 2
        err = capsys.readouterr().err
        assert "refusing SQLite" in err and "journal://" in err and "postgresql://" in err
        assert "Traceback" not in err
    assert not (tmp_path / "s.db").exists()


def test_unreachable_storage_is_one_clear_error(tmp_path, capsys):
    board = write_board(tmp_path)
    cases = {"postgresql://paperboard:secret@127.0.0.1:1/nowhere": "cannot reach the study storage",
             "journal:///proc/no-such-dir/sweep.journal": "cannot open the journal storage file",
             "nosuchdb://x/y": "bad study storage URL"}
    for url, message in cases.items():
        assert main(["sweep", board, "--model", "sasrec", "--trials", "2", "--storage", url]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert "secret" not in err  # passwords are redacted


# ----- parallel workers -----------------------------------------------------------------------------------------
@pytest.mark.timeout(1800)
def test_two_workers_on_journal_file_finish_exactly_n(tmp_path, capfd):
    board, url = write_board(tmp_path), f"journal://{tmp_path / 'sweeps.journal'}"
    args = ["sweep", board, "--model", "gru4rec", "--storage", url, "--workers", "2"]
    assert main([*args, "--trials", "3"]) == 0
    study = study_of(board, "gru4rec", url)
    finished = check_finished_exactly(study, 3)
    assert len({t.user_attrs["worker"] for t in finished}) == 2  # both worker processes ran trials
    assert all(t.user_attrs["run"]["status"] == "ok" for t in finished)
    assert "[gru4rec w0]" in capfd.readouterr().out  # the workers' progress lines
    # idempotent: the same command trains nothing; raising N extends the same study
    assert main([*args, "--trials", "3"]) == 0
    assert "nothing to train" in capfd.readouterr().out
    assert len(study.get_trials()) == len(study_of(board, "gru4rec", url).get_trials())
    assert main([*args, "--trials", "4"]) == 0
    check_finished_exactly(study_of(board, "gru4rec", url), 4)


@needs_postgres
@pytest.mark.timeout(1800)
def test_two_workers_on_postgresql_finish_exactly_n(tmp_path):
    name = f"sweep-pg-{uuid.uuid4().hex[:8]}"  # the database outlives the test: a fresh study each run
    board = write_board(tmp_path, name=name)
    assert main(["sweep", board, "--model", "sasrec", "--trials", "3", "--storage", PG_URL, "--workers", "2"]) == 0
    study = study_of(board, "sasrec", PG_URL)
    finished = check_finished_exactly(study, 3)
    assert len({t.user_attrs["worker"] for t in finished}) == 2
    optuna.delete_study(study_name=study.study_name, storage=study._storage)


# ----- kill -9 and resume ---------------------------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("kind", ["journal", "rdb"])
def test_kill9_mid_trial_then_resume(tmp_path, kind):
    """kind=journal: our heartbeat on a journal file; rdb: Optuna's RDB heartbeat (PostgreSQL when given, else SQLite)."""
    board = write_board(tmp_path)
    url = f"journal://{tmp_path / 'sweeps.journal'}" if kind == "journal" else (PG_URL or f"sqlite:///{tmp_path / 's.db'}")
    if kind == "rdb" and PG_URL:
        board = write_board(tmp_path, name=f"sweep-kill-{uuid.uuid4().hex[:8]}")
    cmd = ["sweep", board, "--model", "sasrec", "--trials", "2", "--storage", url, "--heartbeat", "5"]
    plan = make_plan(load_board(board), "sasrec", storage=url, heartbeat=5)
    create_study(plan)
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.cli", *cmd], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=dict(os.environ))
    study = study_of(board, "sasrec", url)
    deadline = time.time() + 1200
    try:
        while time.time() < deadline:  # wait until trial 0 is complete and trial 1 is training
            trials = study.get_trials()
            if [t.state for t in trials] == [TrialState.COMPLETE, TrialState.RUNNING] and _children(proc.pid):
                break
            assert proc.poll() is None, "the sweep ended before it could be killed"
            time.sleep(0.2)
        else:
            pytest.fail("trial 1 never started")
        time.sleep(1.0)
        trial_procs = _children(proc.pid)
        before = study.get_trials()[0]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(1.0)
    assert trial_procs and not any(_alive(p) for p in trial_procs)  # the trial died with its worker
    assert study.get_trials()[1].state == TrialState.RUNNING  # nobody has noticed yet

    assert main(cmd) == 0  # resume: waits out the heartbeat grace, fails trial 1, re-runs its parameters
    trials = study_of(board, "sasrec", url).get_trials()
    killed, retry = trials[1], trials[2]
    assert killed.state == TrialState.FAIL
    assert retry.state == TrialState.COMPLETE and retry.params == killed.params
    assert retry.user_attrs[RETRY_ATTR]["origin"] == 1
    after = trials[0]  # nothing finished is lost or re-run
    assert (after.state, after.value, after.datetime_complete, after.user_attrs["run_id"]) == \
        (before.state, before.value, before.datetime_complete, before.user_attrs["run_id"])
    assert len(trials) == 3
    check_finished_exactly(study_of(board, "sasrec", url), 2)


# ----- pruning --------------------------------------------------------------------------------------------------
@pytest.mark.timeout(1800)
def test_planted_bad_region_is_pruned_early(tmp_path):
    """Two good SASRec configurations run first (the pruner's start-up), then two from a hopeless corner of the
    space (lowest lr, highest dropout and weight decay): the median pruner stops both at their first judged epoch."""
    board = write_board(tmp_path, dataset_args={"num_users": 200, "num_items": 50, "max_len": 10, "seed": 0},
                        early_stopping_patience=6,
                        sweep={"trials": 4, "max_epochs": 6, "pruner": {"n_startup_trials": 2, "n_warmup_steps": 1}})
    url = f"journal://{tmp_path / 'sweeps.journal'}"
    study = create_study(make_plan(load_board(board), "sasrec", storage=url))
    good = dict(lr=3e-3, dropout=0.1, num_blocks=1, num_heads=1, embed_dim=64, weight_decay=1e-8)
    bad = dict(lr=3e-4, dropout=0.5, num_blocks=1, num_heads=1, embed_dim=32, weight_decay=1e-2)
    for params in (good, {**good, "embed_dim": 50}, bad, {**bad, "num_heads": 2}):
        study.enqueue_trial(params)
    assert main(["sweep", board, "--model", "sasrec", "--storage", url, "--trials", "4", "--report",
                 "--report-dir", str(tmp_path / "report")]) == 0
    trials = study_of(board, "sasrec", url).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED, TrialState.PRUNED]
    for t in trials[2:]:
        last = max(t.intermediate_values)
        assert last <= 2, t.intermediate_values  # pruned early: by its 3rd epoch of 6
        good_at_step = sorted(g.intermediate_values[last] for g in trials[:2])
        assert t.intermediate_values[last] < good_at_step[0]
        assert t.user_attrs["run"]["status"] == "pruned"
    assert all(len(t.intermediate_values) >= 2 for t in trials[:2])
    assert (tmp_path / "report" / "optimization_history.png").stat().st_size > 1000


# ----- the equal-budget rule and --tuned ------------------------------------------------------------------------
@pytest.mark.timeout(1800)
def test_all_models_same_budget_and_tuned_params(tmp_path, capsys):
    board_path = write_board(tmp_path)
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    assert main(["sweep", board_path, "--all-models", "--trials", "1", "--storage", url]) == 0
    assert "pop's search space is empty" in capsys.readouterr().out
    board = load_board(board_path)
    studies = {m: study_of(board_path, m, url) for m in board.models}
    budgets = set()
    for model, study in studies.items():
        meta = study.user_attrs["paperboard"]
        budgets.add((meta["max_epochs"], repr(meta["pruner"]), repr(meta["sampler"]), study.user_attrs["target_trials"]))
        check_finished_exactly(study, 1)
        assert meta["versions"]["optuna"] == optuna.__version__
    assert len(budgets) == 1  # the same trials, epoch cap, pruner and sampler for every model

    # a new study's first trial is the default configuration: constructor defaults under the board's arguments,
    # except what lies outside the search space (the board's embed_dim 16 is not a choice: the sampler picks it)
    import inspect

    from contracts.registry import MODELS

    first = studies["sasrec"].trials[0]
    defaults = inspect.signature(MODELS.get("sasrec").cls.__init__).parameters
    assert first.user_attrs[DEFAULT_ATTR] is True
    for name in ("lr", "dropout", "num_blocks", "num_heads"):
        assert first.params[name] == defaults[name].default, name
    assert first.params["embed_dim"] != 16
    assert main(["sweep", board_path, "--model", "sasrec", "--storage", url, "--report", "--report-dir",
                 str(tmp_path / "report")]) == 0  # report only: trains nothing
    assert f"default configuration (trial 0): val ndcg@10 {first.value:.4f}" in capsys.readouterr().out
    assert main(["sweep", board_path, "--all-models", "--storage", url, "--report", "--report-dir",
                 str(tmp_path / "all")]) == 0  # several models: one folder each, no plot overwritten
    assert all((tmp_path / "all" / m / "optimization_history.png").exists() for m in ("sasrec", "gru4rec"))

    params, tuning = tuned_params(board, "sasrec", url)
    best = studies["sasrec"].best_trial
    assert params == best.params and set(params) >= {"lr", "dropout", "embed_dim"}  # numbers pass as stored
    assert tuning == {"study": studies["sasrec"].study_name, "trials": 1, "best_value": best.value,
                      "trial": best.number, "max_epochs": 2}
    assert tuned_params(board, "pop", url)[0] == {}

    # `paperboard run --tuned` builds its specs from the best trial; a model with no sweep names the command
    from benchmarks.cli import build_specs, make_parser

    args, _ = make_parser().parse_known_args(["run", board_path, "--tuned", "--study-storage", url, "--models", "sasrec"])
    spec = build_specs(board, args, {"trainer": {}, "model": {}, "data": {}})[0]
    assert spec.model_args == params and spec.tuning == tuning
    with pytest.raises(ConfigError, match=r"paperboard sweep .* --model sasrec --trials 2"):
        tuned_params(board, "sasrec", f"sqlite:///{tmp_path / 'empty.db'}")


def test_sweep_objective_launches_each_trial_with_the_pins_and_samples_only_the_rest(tmp_path, monkeypatch):
    """The objective builds the trial's run from the plan's pins plus what Optuna sampled: a pinned argument reaches
    the run and never becomes a study parameter."""
    import sweeps.trial
    from sweeps.study import Objective, TrialFailed

    board = load_board(write_board(tmp_path, family="marl", dataset="mpe-simple-spread",
                                   dataset_args={"backend": "numpy", "num_envs": 2, "rollouts_per_epoch": 1,
                                                 "eval_episodes": 2},
                                   primary_metric="return", metrics=["return"], models={"cord_no_rc": {}}))
    plan = make_plan(board, "cord_no_rc", storage=f"sqlite:///{tmp_path / 'sweeps.db'}")
    monkeypatch.setenv("PAPERBOARD_HOME", str(tmp_path / "home"))
    study = create_study(plan)
    launched = []
    monkeypatch.setattr(sweeps.trial, "launch", lambda spec, *a, **k: (launched.append(spec), (None, 1))[1])
    trial = study.ask()
    with pytest.raises(TrialFailed):
        Objective(plan, study, study._storage, 0)(trial)
    (spec,) = launched
    assert spec.model_args["influence_weight"] == 0.0 and spec.model_args["heterogeneity_weight"] > 0
    assert "influence_weight" not in trial.params and "heterogeneity_weight" in trial.params


def test_registered_ablation_sweeps_with_its_defining_argument_fixed(tmp_path):
    """A registered variant such as `cord_no_rc` (influence_weight = 0) is an ablation only while that argument
    stays fixed: its sweep must not sample the term back in, and `--tuned` replays it at 0."""
    from lightning_modules.marl.cord import CORD
    from sweeps.study import PinnedTrial, make_sampler

    board = load_board(write_board(tmp_path, family="marl", dataset="mpe-simple-spread",
                                   dataset_args={"backend": "numpy", "num_envs": 2, "rollouts_per_epoch": 1,
                                                 "eval_episodes": 2},
                                   primary_metric="return", metrics=["return"],
                                   models={"cord": {}, "cord_no_rc": {}}))
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    full, ablation = make_plan(board, "cord", storage=url), make_plan(board, "cord_no_rc", storage=url)
    assert full.model_args == {} and ablation.model_args == {"influence_weight": 0.0}
    study = create_study(ablation)
    for number in range(3):  # 0 lies outside the log-scale range the full model searches: it never reaches Optuna
        study.sampler = make_sampler(ablation, 0, number)
        trial = study.ask()
        params = CORD.search_space(PinnedTrial(trial, ablation.pins))
        study.tell(trial, float(number))
        assert params["influence_weight"] == 0.0 and params["heterogeneity_weight"] > 0
    params, _ = tuned_params(board, "cord_no_rc", url)
    assert params["influence_weight"] == 0.0 and params["lr"] == study.best_trial.params["lr"]
