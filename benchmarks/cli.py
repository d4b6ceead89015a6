"""The `paperboard` command: list, run, board, reproduce, sweep, export, import.

Options of the form `--trainer.KEY VALUE`, `--model.KEY VALUE` and `--data.KEY VALUE` pass straight through to
lightning.pytorch.Trainer, the model's constructor and the datamodule's constructor (values parsed as YAML,
so `2`, `0.3`, `1e-3`, `true`, `bf16-mixed` and `[10,20]` mean what they look like, and checked against the
constructor's annotations before anything trains).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from benchmarks.boards import ConfigError, board_names, load_board, load_paper, paper_names
from benchmarks.values import check_overrides, parse_value

PASSTHROUGH = ("trainer", "model", "data")


def parse_passthrough(tokens: list[str]) -> dict[str, dict]:
    """`--trainer.devices 2 --model.dropout=0.3` -> {"trainer": {"devices": 2}, "model": {"dropout": 0.3}, ...}."""
    out: dict[str, dict] = {k: {} for k in PASSTHROUGH}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--") or "." not in token:
            raise ConfigError(f"unrecognised argument {token!r}; pass-through options look like "
                              f"--trainer.KEY VALUE, --model.KEY VALUE or --data.KEY VALUE")
        key, _, value = token[2:].partition("=")
        if not _:
            if i + 1 >= len(tokens):
                raise ConfigError(f"{token} needs a value")
            value, i = tokens[i + 1], i + 1
        group, _, name = key.partition(".")
        if group not in PASSTHROUGH or not name:
            raise ConfigError(f"unknown option {token!r}; pass-through groups are {', '.join(PASSTHROUGH)}")
        out[group][name] = parse_value(value)
        i += 1
    return out


def _store(url):
    from benchmarks.store import ResultStore

    return ResultStore(url)


def cmd_list(args) -> int:
    from contracts.registry import load_index  # the generated index: listing imports no family and no torch

    index = load_index()
    what = args.what
    if what in ("boards", "all"):
        print("boards:")
        for name in board_names():
            b = load_board(name)
            print(f"  {name:28s} {b.family:9s} dataset={b.dataset:18s} models={','.join(b.models)}")
    if what in ("models", "all"):
        print("models (name, family, import path: `from lightning_modules.seqrec import SASRec`):")
        for e in index["models"]:
            print(f"  {e['name']:17s} {e['family']:8s} {public_path(e['import_path']):46s} {e['doc'][:80]}")
    if what in ("datasets", "all"):
        print("datasets (name, family, import path: `from datamodules.seqrec import MovieLens100K`):")
        for e in index["datasets"]:
            print(f"  {e['name']:20s} {e['family']:8s} {public_path(e['import_path']):40s} folder={e['folder']}")
    if what in ("papers", "all"):
        print("papers:")
        for name in paper_names():
            p = load_paper(name)
            print(f"  {name:18s} {p.title[:70]} ({p.venue}) boards={','.join(p.boards)}")
    return 0


def public_path(import_path: str) -> str:
    """`lightning_modules.seqrec.sasrec.SASRec` -> `lightning_modules.seqrec.SASRec`: every family package exports
    its registered classes (tests/test_exports.py keeps it so)."""
    parts = import_path.split(".")
    return ".".join([*parts[:2], parts[-1]]) if len(parts) > 3 else import_path


def build_specs(board, args, overrides) -> list:
    from benchmarks.runner import RunSpec, resolve

    models = args.models.split(",") if args.models else list(board.models)
    seeds = parse_seeds(args.seeds) if args.seeds else list(board.seeds)
    checked = check_overrides(board, models, overrides)  # wrong values fail here, before any process trains
    overrides.update(data=checked["data"], trainer=checked["trainer"])
    specs = []
    for model in models:
        model_args, tuning = dict(checked["model"][model]), None
        if args.tuned:
            from sweeps.study import tuned_params

            params, tuning = tuned_params(board, model, getattr(args, "study_storage", None) or args.storage)
            model_args = {**params, **model_args}
        trainer_args = dict(overrides["trainer"])
        if args.max_epochs:
            trainer_args["max_epochs"] = args.max_epochs
        for seed in seeds:
            spec = RunSpec(board=args.board, model=model, seed=seed, data_dir=args.data_dir, model_args=model_args,
                           data_args=overrides["data"], trainer_args=trainer_args, tuning=tuning,
                           compile=args.compile)
            resolve(board, spec)  # fail fast on an unknown model or config key, before any training
            specs.append(spec)
    return specs


def parse_seeds(text: str) -> list[int]:
    """`--seeds 3` means seeds 0, 1, 2; `--seeds 1,2` means exactly seeds 1 and 2."""
    hint = "give a count >= 1 (3 means seeds 0,1,2) or a list of seeds >= 0 (1,2)"
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()] if "," in text else list(range(int(text)))
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: {hint}") from None
    if not seeds or min(seeds) < 0:  # `--seeds 0` or `-2` would run nothing and exit 0
        raise ConfigError(f"--seeds {text!r}: {hint}")
    return seeds


def cmd_run(args, overrides) -> int:
    from benchmarks.render import render_markdown
    from benchmarks.schedule import run_board_specs

    board = load_board(args.board)
    specs = build_specs(board, args, overrides)
    store = _store(args.storage)
    for flag, value in (("--jobs", args.jobs), ("--threads", args.threads)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} {value}: give a number >= 1")
    if args.dry_run:
        from benchmarks.schedule import plan_runs

        plan = plan_runs(board, specs, store, rerun=args.rerun, extend=args.extend)
        for spec, action in plan:
            print(f"{board.name}: {spec.model} seed={spec.seed}: {action}")
        print(f"paperboard: {board.name}: {sum(not a.startswith('kept') for _, a in plan)} of {len(plan)} run(s) "
              f"would train (--dry-run: nothing trained)")
        return 0
    records = run_board_specs(board, specs, store, rerun=args.rerun, extend=args.extend, data_dir=args.data_dir,
                              data_args=overrides["data"], quiet=args.quiet, log=lambda m: print(m, flush=True),
                              jobs=args.jobs, threads=args.threads)
    all_records = store.records(board=board.name)
    print(render_markdown(board, all_records))
    if board.name.endswith("-scaling"):  # scaling boards also draw their plot (benchmarks/scaling.py)
        from benchmarks.scaling import plot_board

        print(f"paperboard: scaling plot -> {plot_board(board, all_records, data_dir=args.data_dir)}")
    waiting = sum(r["status"] == "needs_llm" for r in records)
    if waiting:
        print(f"paperboard: {waiting} run(s) need an LLM (--llm or PAPERBOARD_LLM); their rows read 'needs an LLM'.",
              file=sys.stderr)
    failed = sum(r["status"] not in ("ok", "needs_llm") for r in records)
    if failed:
        print(f"paperboard: {failed} of {len(records)} run(s) failed; see 'Failed runs' above.", file=sys.stderr)
    return 1 if failed else 0


def cmd_board(args) -> int:
    from benchmarks.render import render
    from benchmarks.store import load_records_dir

    board = load_board(args.board)
    records = load_records_dir(args.records, board.name) if args.records else _store(args.storage).records(board=board.name)
    text = render(board, records, args.format)
    if args.out:
        from contracts.atomic import atomic_write_bytes

        atomic_write_bytes(Path(args.out), text.encode())
        print(f"wrote {args.out}")
    else:
        print(text)
    return 0


def cmd_reproduce(args, overrides) -> int:
    """Run a paper's boards (or, with --records, read the exported records without training), then print each of
    its claims with the evidence and the verdict."""
    from benchmarks.claims import format_verdict, paper_verdicts
    from benchmarks.render import aggregate, published_comparison

    names = paper_names() if args.all else [args.paper] if args.paper else []
    if not names:
        raise ConfigError("name a paper (`paperboard reproduce PAPER`, see `paperboard list papers`) or give --all")
    status = 0
    for name in names:
        paper = load_paper(name)
        print(f"paperboard: {paper.name}: {paper.title} ({paper.venue}, {paper.link})")
        if args.records:
            from benchmarks.store import load_records_dir

            records = load_records_dir(args.records)
        else:
            print(f"paperboard: running its boards: {', '.join(paper.boards)}", flush=True)
            for board_name in paper.boards:
                status |= cmd_run(argparse.Namespace(**{**vars(args), "board": board_name}), overrides)
            records = _store(args.storage).records()
        for board_name in paper.boards:
            board = load_board(board_name)
            comparison = published_comparison(board, aggregate(board, [r for r in records if r.get("board") == board_name]))
            if not comparison.empty:
                print(f"\n== {board_name}: ours vs published ==")
                print(comparison.drop(columns=["source", "paper protocol"]).to_string(index=False))
        verdicts = paper_verdicts(paper, records)
        print(f"\n== {paper.name}: {len(verdicts)} claim(s) ==")
        for verdict in verdicts:
            print(format_verdict(verdict))
        if not verdicts:
            print("(this paper lists no claims)")
        print()
    return status


def cmd_claims(args) -> int:
    """Write the claims page (every paper's claims and verdicts) from the records."""
    from benchmarks.claims import render_claims_markdown
    from benchmarks.store import load_records_dir
    from contracts.atomic import atomic_write_bytes

    records = load_records_dir(args.records) if args.records else _store(args.storage).records()
    text = render_claims_markdown([load_paper(n) for n in paper_names()], records)
    atomic_write_bytes(Path(args.out), text.encode())
    print(f"wrote {args.out}")
    return 0


def cmd_site(args) -> int:
    """Write the static leaderboard site (every board, the claims page, the plots) from exported records."""
    from benchmarks.site import build_site

    built = build_site(Path(args.out), records_dir=Path(args.records) if args.records else None)
    print(f"wrote {built['pages']} page(s) from {built['records']} record(s) with {built['plots']} plot(s) to "
          f"{args.out} in {built['seconds']:.1f}s; open {Path(args.out) / 'index.html'}")
    return 0


def cmd_export(args) -> int:
    from benchmarks.store import StorageError

    try:
        paths = _store(args.storage).export(Path(args.out), board=args.board)
    except OSError as err:
        raise StorageError(f"cannot write to {args.out}: {err.strerror or err}; give --out a folder you may "
                           f"write") from err
    print(f"exported {len(paths)} record(s) to {args.out}")
    return 0


def cmd_import(args) -> int:
    from benchmarks.store import redact

    store = _store(args.storage)
    store.check_writable()
    count = store.import_dir(Path(args.path), board=args.board)
    print(f"imported {count} record(s) into {redact(store.url)}")
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paperboard", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list boards, models, datasets or papers")
    p.add_argument("what", nargs="?", default="all", choices=["boards", "models", "datasets", "papers", "all"])

    def run_options(p):
        p.add_argument("--models", help="comma-separated subset of the board's models")
        p.add_argument("--seeds", help="a count N (seeds 0..N-1) or a list such as 1,2; default: the board's seeds")
        p.add_argument("--rerun", action="store_true",
                       help="train runs again even when the store already holds a finished record of them")
        p.add_argument("--tuned", action="store_true", help="use each model's best configuration from its sweep")
        p.add_argument("--data-dir", help="data folder (default: env PAPERBOARD_DATA or ~/.cache/paperboard)")
        p.add_argument("--storage", help="results database URL (default: env PAPERBOARD_STORAGE or a SQLite file)")
        p.add_argument("--max-epochs", type=int, help="override the board's epoch cap")
        p.add_argument("--extend", action="store_true",
                       help="continue runs that stopped at a smaller epoch cap before early stopping's patience "
                            "ran out from their checkpoints, instead of training them again from epoch 0")
        p.add_argument("--study-storage", help="where --tuned finds the sweeps' studies (default: --storage)")
        p.add_argument("--quiet", action="store_true", help="hide the per-run training output")
        p.add_argument("--jobs", type=int, default=1,
                       help="runs at once, each in its own process (default 1); with --jobs N each run gets the "
                            "cores divided by N as threads unless --threads says otherwise")
        p.add_argument("--threads", type=int, help="CPU threads per run (torch, OpenMP, MKL)")
        p.add_argument("--compile", action="store_true",
                       help="train through torch.compile (recorded in each record as 'compiled'); the first epoch "
                            "pays the compilation. CTR models only (benchmarks/results/ctr-perf.md)")
        p.add_argument("--llm", help="the language model of the rows that prompt one: hf:/path/to/model or "
                                     "http://host:port/v1#model=NAME (default: env PAPERBOARD_LLM; without one "
                                     "those rows read 'needs an LLM')")

    p = sub.add_parser("run", help="train and evaluate a board's models over seeds")
    p.add_argument("board")
    run_options(p)
    p.add_argument("--dry-run", action="store_true",
                   help="say what each run would do (kept, continued from a checkpoint, trained) and train nothing")

    p = sub.add_parser("reproduce", help="check a paper's claims: run its boards (or read --records), print verdicts")
    p.add_argument("paper", nargs="?")
    p.add_argument("--all", action="store_true", help="every paper")
    p.add_argument("--records", help="a folder of exported run records: check the claims without training "
                                     "(the committed ones: benchmarks/results/runs)")
    run_options(p)

    p = sub.add_parser("claims", help="write the claims page: every paper's claims and verdicts")
    p.add_argument("--records", help="a folder of exported run records instead of the store")
    p.add_argument("--storage")
    p.add_argument("--out", default="benchmarks/results/CLAIMS.md")

    p = sub.add_parser("board", help="render a board's leaderboard")
    p.add_argument("board")
    p.add_argument("--format", default="md", choices=["md", "csv", "html"])
    p.add_argument("--storage")
    p.add_argument("--records", help="render from a folder of exported run records instead of the store")
    p.add_argument("--out", help="write to this file instead of stdout")

    for name in ("fit", "validate", "test"):  # handed to benchmarks.cli_lightning before parsing (LightningCLI)
        sub.add_parser(name, help=f"LightningCLI {name} of any model on any dataset of its family: "
                                  f"paperboard {name} --model SASRec --data synthetic-seqrec --trainer.max_epochs 3 "
                                  f"(see `paperboard {name} --help`)", add_help=False)

    p = sub.add_parser("site", help="write every board, the claims page and the plots as a static HTML site")
    p.add_argument("--out", default="site", help="the site's folder (default: site/; not committed)")
    p.add_argument("--records", help="the exported run records (default: the committed benchmarks/results/runs)")

    p = sub.add_parser("export", help="write run records as JSON files (one per run)")
    p.add_argument("board", nargs="?")
    p.add_argument("--out", default="benchmarks/results/runs")
    p.add_argument("--storage")

    p = sub.add_parser("import", help="load exported run records into the store")
    p.add_argument("path")
    p.add_argument("--board")
    p.add_argument("--storage")

    try:
        from sweeps.cli import add_sweep_parser
    except ImportError:
        pass
    else:
        add_sweep_parser(sub)
    return parser


def resume_hint(argv: list[str]) -> str:
    """The command that resumes an interrupted one (finished runs and trials are kept), passwords redacted."""
    import shlex

    from benchmarks.store import redact

    return redact(shlex.join(["paperboard", *[a for a in argv if a != "--rerun"]]))


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # `kill` (SIGTERM) stops like Ctrl-C: claims released, temp folders removed, a hint


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # the program itself (not a caller in-process): `kill` stops it like Ctrl-C
        import signal

        signal.signal(signal.SIGTERM, _interrupt)
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("fit", "validate", "test", "predict"):  # LightningCLI parses its own options
        from benchmarks.cli_lightning import main as lightning_main

        return lightning_main(argv)
    parser = make_parser()
    args, rest = parser.parse_known_args(argv)
    try:
        overrides = parse_passthrough(rest)
        if args.command not in ("run", "reproduce", "sweep") and any(overrides.values()):
            raise ConfigError(f"'{args.command}' takes no --trainer./--model./--data. options")
        if getattr(args, "max_epochs", None) is not None and args.max_epochs < 1:  # 0 would be ignored silently
            raise ConfigError(f"--max-epochs {args.max_epochs}: give an epoch cap >= 1")
        if getattr(args, "llm", None):  # the run processes read it (benchmarks.runner.resolve)
            import os

            os.environ["PAPERBOARD_LLM"] = args.llm
        if args.command == "list":
            return cmd_list(args)
        if args.command == "run":
            return cmd_run(args, overrides)
        if args.command == "reproduce":
            return cmd_reproduce(args, overrides)
        if args.command == "board":
            return cmd_board(args)
        if args.command == "claims":
            return cmd_claims(args)
        if args.command == "export":
            return cmd_export(args)
        if args.command == "site":
            return cmd_site(args)
        if args.command == "import":
            return cmd_import(args)
        if args.command == "sweep":
            from sweeps.cli import cmd_sweep

            return cmd_sweep(args, overrides)
    except KeyboardInterrupt:
        kept = "finished runs are kept in the store" + (
            " and stopped ones continue from their last finished epoch" if args.command == "run" else "")
        print(f"\npaperboard: interrupted; {kept}. Resume with: {resume_hint(argv)}", file=sys.stderr, flush=True)
        return 130
    except Exception as err:
        from benchmarks.store import StorageError, redact
        from contracts.registry import UnknownNameError
        from datamodules.base import DataError
        from lightning_modules.safe_load import UnsafeFileError

        if isinstance(err, (ConfigError, DataError, StorageError, UnknownNameError, UnsafeFileError)):
            print(f"paperboard: error: {redact(err)}", file=sys.stderr)
            return 2
        if isinstance(err, yaml.YAMLError):  # a board or paper file that is not valid YAML
            mark = getattr(err, "problem_mark", None)
            where = f"{mark.name} line {mark.line + 1} column {mark.column + 1}" if mark else "a YAML file"
            print(f"paperboard: error: {where}: not valid YAML ({getattr(err, 'problem', None) or err}); fix the "
                  f"file", file=sys.stderr)
            return 2
        raise
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
