"""One sweep trial = one fresh process: `python -m sweeps.trial SPEC.json RECORD.json PARENT_PID`.

It is `benchmarks.worker` (execute one RunSpec, write its record) plus one promise: the trial dies with the
study worker that launched it (Linux PR_SET_PDEATHSIG, benchmarks.process), so a `kill -9` of a worker never
leaves an orphan training on, reporting to a trial that the study has already failed and re-queued.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from benchmarks.process import die_with_parent, launcher_tempdir, remove_stale_tempdirs


def launch(spec, log_path: Path | None, threads: int | None = None, override: bool = False) -> tuple[dict | None, int]:
    """Run `spec` (a benchmarks.runner.RunSpec) in a fresh trial process; returns (record or None, exit code).

    Output goes to `log_path` (None: inherit the terminal). Ctrl-C reaches the trial through the process group;
    the trial is then given 30 s to stop before it is killed, and KeyboardInterrupt propagates.
    `threads` sets OMP_NUM_THREADS (and MKL_NUM_THREADS) for the trial unless the user set it in the environment
    (parallel workers share the cores); `override=True` (an explicit `--threads`) sets it regardless.
    """
    env = dict(os.environ)
    if threads and (override or "OMP_NUM_THREADS" not in env):
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    remove_stale_tempdirs("trial")  # those of killed study workers
    with launcher_tempdir("trial") as tmp:
        spec_path, record_path = Path(tmp) / "spec.json", Path(tmp) / "record.json"
        spec_path.write_text(json.dumps(asdict(spec)))
        log = open(log_path, "w") if log_path else None
        try:
            proc = subprocess.Popen([sys.executable, "-m", "sweeps.trial", str(spec_path), str(record_path),
                                     str(os.getpid())], stdout=log, stderr=subprocess.STDOUT if log else None,
                                    cwd=os.getcwd(), env=env)
            try:
                code = proc.wait()
            except BaseException:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                raise
        finally:
            if log:
                log.close()
        record = json.loads(record_path.read_text()) if record_path.exists() else None
        return record, code


def trial_callbacks(spec) -> list:
    """The trial's pruner, reporting the board's primary validation metric, when its study prunes."""
    if not (spec.sweep and spec.sweep.get("pruner")):
        return []
    from benchmarks.boards import load_board
    from sweeps.pruning import TrialPruning

    return [TrialPruning(spec.sweep, f"val/{load_board(spec.board).primary_metric}")]


def main(argv: list[str]) -> int:
    die_with_parent(int(argv[2]))
    from benchmarks.worker import main as worker_main

    return worker_main(argv[:2], make_callbacks=trial_callbacks)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
