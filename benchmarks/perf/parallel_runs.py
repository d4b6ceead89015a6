"""Wall and CPU seconds of a board's runs executed one after another versus `--jobs N` at once.

    python -m benchmarks.perf.parallel_runs quickstart [--models sasrec,gru4rec] [--jobs 2] [--data-dir D]

Sequential: each run gets every core as threads (`--jobs 1 --threads cores`); parallel: `--jobs N`, each run
`cores / N` threads. Each side trains in a fresh temporary store, so nothing is skipped as already finished. The
load average before and after is printed beside the numbers: a load above the core count inflates wall seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path


def timed_board(board: str, models: str | None, jobs: int, threads: int, data_dir: str | None) -> dict:
    from benchmarks.cli import main
    from benchmarks.store import ResultStore

    with tempfile.TemporaryDirectory(prefix="paperboard-parallel-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'results.db'}"
        argv = ["run", board, "--storage", url, "--quiet", "--jobs", str(jobs), "--threads", str(threads)]
        argv += ["--models", models] if models else []
        argv += ["--data-dir", data_dir] if data_dir else []
        cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        load_before, start = os.getloadavg(), time.perf_counter()
        status = main(argv)
        wall = time.perf_counter() - start
        cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        records = ResultStore(url).records(board=board)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return {"jobs": jobs, "threads_per_run": threads, "status": status, "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1), "runs": len(records), "load_before": load_before, "load_after": os.getloadavg(),
            "metrics": {f"{r['model']}/{r['seed']}": r["metrics"].get("test") for r in records}}


def render(result: dict, command: str) -> str:
    lines = [f"# `--jobs {result['parallel']['jobs']}` against sequential runs: board {result['board']}", "",
             f"Command: `python -m benchmarks.perf.parallel_runs {command}` on a {result['cores']}-core machine shared "
             "with other jobs (load averages before -> after each side below). Sequential: one run at a time with "
             f"{result['sequential']['threads_per_run']} threads; parallel: `--jobs {result['parallel']['jobs']}`, "
             f"{result['parallel']['threads_per_run']} thread(s) per run. Each side trains every run of the board in "
             "a fresh temporary store; CPU s = user + system time of the runs' processes.", "",
             "| side | runs | threads per run | wall s | CPU s | load |", "|---|---|---|---|---|---|"]
    for side in ("sequential", "parallel"):
        r = result[side]
        lines.append(f"| {side} (--jobs {r['jobs']}) | {r['runs']} | {r['threads_per_run']} | {r['wall_s']} | "
                     f"{r['cpu_s']} | {r['load_before'][0]:.2f} -> {r['load_after'][0]:.2f} |")
    lines += ["", f"Wall-time speed-up of `--jobs {result['parallel']['jobs']}`: {result['speedup_wall']}x. Largest "
              f"difference of a test metric between the two sides: {result['max_metric_difference']} (same seeds; "
              "thread counts differ, so float rounding may differ)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.perf.parallel_runs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("board")
    parser.add_argument("--models")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--data-dir")
    parser.add_argument("--out", help="write the result as JSON here too")
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    sequential = timed_board(args.board, args.models, 1, cores, args.data_dir)
    parallel = timed_board(args.board, args.models, args.jobs, max(1, cores // args.jobs), args.data_dir)
    # different thread counts may round differently: report the largest metric difference, not only equality
    diffs = [abs(a - parallel["metrics"][run][k]) for run, m in sequential["metrics"].items() for k, a in m.items()
             if run in parallel["metrics"] and k in parallel["metrics"][run]]
    same = len(diffs) > 0 and max(diffs) < 1e-3
    result = {"board": args.board, "cores": cores, "sequential": sequential, "parallel": parallel,
              "max_metric_difference": max(diffs, default=None), "same_metrics": same, "speedup_wall": round(sequential["wall_s"] / max(parallel["wall_s"], 1e-9), 2)}
    for side in ("sequential", "parallel"):
        r = result[side]
        print(f"{side:10s} jobs={r['jobs']} threads/run={r['threads_per_run']}: {r['runs']} runs, wall {r['wall_s']}s, "
              f"CPU {r['cpu_s']}s, load {r['load_before'][0]:.2f} -> {r['load_after'][0]:.2f}")
    print(f"wall speed-up {result['speedup_wall']}x; largest metric difference {result['max_metric_difference']}")
    if args.out:
        out = Path(args.out)
        out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
        if out.suffix == ".md":
            out.write_text(render(result, " ".join(argv if argv is not None else sys.argv[1:])))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
