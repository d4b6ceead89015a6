"""`paperboard sweep BOARD (--model M | --all-models) [--trials N] [--storage URL] [--workers K] [--report]`."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from benchmarks.boards import ConfigError, load_board


def add_sweep_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "sweep", help="tune a board's models with Optuna (same budget for each; resumable; parallel workers)",
        description="Run (or resume, or extend) an Optuna study per model: seeded TPE over the model's "
                    "search_space, median pruning on the board's primary validation metric, one fresh process per "
                    "trial. --trials N is the study's target of finished trials: the same command trains only what "
                    "is missing. Pass-through: --trainer.KEY V, --model.KEY V (fixes that parameter), --data.KEY V.")
    p.add_argument("board", help="board name or path of a board YAML")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="the board model to tune")
    which.add_argument("--all-models", action="store_true",
                       help="tune every model of the board with the same trials, epoch cap and pruner")
    p.add_argument("--trials", type=int, help="target number of finished (complete + pruned) trials per model "
                   "(default: the board's sweep.trials); with --report and no --trials: report only, train nothing")
    p.add_argument("--max-epochs", type=int, help="epoch cap per trial (default: the board's sweep.max_epochs)")
    p.add_argument("--storage", help="study storage: sqlite:///f.db (one worker), journal:///path/f.journal or "
                   "postgresql://user:pass@host/db (default: env PAPERBOARD_STORAGE or the SQLite results file)")
    p.add_argument("--workers", type=int, default=1, help="parallel worker processes on this machine (default 1); "
                   "each trial then gets the cores divided by the workers as CPU threads unless --threads is given")
    p.add_argument("--threads", type=int, help="CPU threads per trial (torch, OpenMP, MKL); default: cores / workers "
                   "for several workers, else OMP_NUM_THREADS or torch's default")
    p.add_argument("--no-prune", action="store_true", help="run every trial to the end (no pruner)")
    p.add_argument("--seed", type=int, default=0, help="sampler base seed and the training seed of every trial")
    p.add_argument("--heartbeat", type=int, default=None,
                   help="seconds between trial heartbeats; a trial is failed and re-queued after 3 missed (default 10)")
    p.add_argument("--report", action="store_true",
                   help="print best trials and parameter importances, and write the optimisation-history PNG")
    p.add_argument("--report-dir", help="folder for the report's plot (default: the study's folder under PAPERBOARD_HOME)")
    p.add_argument("--data-dir", help="data folder (default: env PAPERBOARD_DATA or ~/.cache/paperboard)")
    p.add_argument("--verbose", action="store_true", help="show each trial's training output instead of logging it")


def cmd_sweep(args: argparse.Namespace, overrides: dict) -> int:
    from benchmarks.schedule import prepare_data
    from benchmarks.values import check_overrides
    from sweeps.storage import check_workers, open_storage, resolve_url
    from sweeps.study import (DEFAULT_HEARTBEAT, counts, create_study, enqueue_default, load_study, make_plan,
                              run_study)

    board = load_board(args.board)
    models = list(board.models) if args.all_models else [args.model]
    report_only = args.report and args.trials is None
    url = resolve_url(args.storage)
    if args.trials is not None and args.trials < 1:
        raise ConfigError("--trials must be at least 1")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {args.threads}")
    if args.model and args.model not in board.models:
        raise ConfigError(f"model {args.model!r} is not on board {board.name}; its models: {', '.join(board.models)}")
    if not report_only:
        check_workers(url, args.workers, command_hint=_hint(args))
    checked = check_overrides(board, models, overrides)  # wrong values fail here, before any trial starts
    storage = open_storage(url)  # one clear error for an unreachable / bad storage, before any training
    plans = [make_plan(board, m, trials=args.trials, storage=args.storage,
                       overrides={"model": checked["model"][m], "data": checked["data"], "trainer": checked["trainer"]},
                       max_epochs=args.max_epochs, prune=not args.no_prune, seed=args.seed, data_dir=args.data_dir,
                       heartbeat=args.heartbeat or DEFAULT_HEARTBEAT, workers=args.workers, board_arg=args.board,
                       verbose=args.verbose, threads=args.threads) for m in models]
    if not report_only:
        prepare_data(board, args.data_dir, checked["data"])
        budget = plans[0]
        print(f"paperboard sweep: {board.name}: {len(plans)} model(s) x {max(p.target for p in plans)} finished "
              f"trials, <= {budget.max_epochs} epochs per trial, pruner {budget.pruner or 'none'}, "
              f"TPE seed {args.seed}, {args.workers} worker(s) x {_threads_note(budget)}; studies -> "
              f"{_redacted(url)}", flush=True)
    status = 0
    for plan in plans:
        for note in plan.notes:
            print(f"paperboard sweep: note: {note}", flush=True)
        if report_only:
            study = load_study(plan, storage)
            if study is None:
                raise ConfigError(f"no study {plan.study_name} in {_redacted(url)}; run: {plan.command()}")
        else:
            study = create_study(plan)
            default = enqueue_default(study, plan) if plan.space else None
            if default is not None:
                print(f"[{plan.model}] trial 0 is the default configuration: {default}", flush=True)
            before = counts(study)
            if before.finished >= plan.target:
                print(f"[{plan.model}] study {plan.study_name} already holds {before.finished} finished trials "
                      f"(target {plan.target}): nothing to train", flush=True)
            else:
                print(f"[{plan.model}] study {plan.study_name}: {before.finished}/{plan.target} finished; running "
                      f"{plan.target - before.finished} more (trial logs: {plan.log_dir})", flush=True)
                started = time.perf_counter()
                try:
                    code = run_study(plan)
                except KeyboardInterrupt:
                    print(f"\npaperboard sweep: interrupted; the running trial(s) are re-queued. Resume with the same "
                          f"command: {_command(args)}", file=sys.stderr, flush=True)
                    return 130
                after = counts(study)
                print(f"[{plan.model}] {after.finished}/{plan.target} finished ({after.pruned} pruned) in "
                      f"{time.perf_counter() - started:.1f} s wall", flush=True)
                if code or after.finished < plan.target:
                    status = 1
                    print(f"[{plan.model}] the study is short of its target; rerun the same command to resume",
                          file=sys.stderr, flush=True)
        if args.report:
            from sweeps.report import report

            # one folder per model when several share --report-dir, so no plot overwrites another
            where = Path(args.report_dir) / plan.model if args.report_dir and len(plans) > 1 else args.report_dir
            report(study, plan, where)
    return status


def _threads_note(plan) -> str:
    from sweeps.study import trial_threads

    threads = trial_threads(plan)
    return f"{threads} thread(s) per trial" if threads else "default threads per trial"


def _command(args) -> str:
    from benchmarks.store import redact

    return redact(" ".join(["paperboard", *sys.argv[1:]]) if sys.argv[1:2] == ["sweep"] else
                  f"paperboard sweep {args.board} {'--all-models' if args.all_models else '--model ' + args.model}")


def _hint(args) -> str:
    which = "--all-models" if args.all_models else f"--model {args.model}"
    trials = f" --trials {args.trials}" if args.trials else ""
    return f"paperboard sweep {args.board} {which}{trials} --workers {args.workers}"


def _redacted(url: str) -> str:
    from benchmarks.store import redact

    return redact(url)
