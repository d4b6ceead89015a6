"""`python -m benchmarks.worker SPEC.json RECORD.json [PARENT_PID]`: execute one run in this fresh process.

Under a DDP strategy Lightning re-launches this same command once per extra rank; only global rank 0 writes
the record (atomically), so a reader never sees half a file. Given the launcher's pid, the worker dies with it
(benchmarks.process.die_with_parent), so killing `paperboard run` never leaves a run training on.
"""
import json
import sys
from pathlib import Path

from benchmarks.process import die_with_parent


def main(argv: list[str], make_callbacks=None) -> int:
    """`make_callbacks(spec) -> list` gives the caller's Lightning callbacks for the run (a sweep trial's pruner)."""
    if len(argv) > 2:
        die_with_parent(int(argv[2]))  # first, before the slow imports
    from benchmarks.runner import RunSpec, execute
    from contracts.atomic import atomic_write_bytes

    spec = RunSpec(**json.loads(Path(argv[0]).read_text()))
    record = execute(spec, callbacks=make_callbacks(spec) if make_callbacks else None)
    if record.pop("is_global_zero", True):
        atomic_write_bytes(Path(argv[1]), json.dumps(record, default=str).encode())
    return 0 if record["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
