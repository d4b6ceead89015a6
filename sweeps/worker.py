"""`python -m sweeps.worker PLAN.json INDEX`: one study worker process (of `paperboard sweep --workers K`).

SIGTERM is turned into KeyboardInterrupt, so a terminated worker re-queues its running trial before it exits;
a `kill -9` cannot be caught: its trial dies with it (PR_SET_PDEATHSIG) and the heartbeat re-queues it.
"""
import json
import signal
import sys
from pathlib import Path

from sweeps.study import SweepPlan, run_worker


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    plan = SweepPlan(**json.loads(Path(argv[0]).read_text()))
    try:
        return run_worker(plan, int(argv[1]))
    except KeyboardInterrupt:
        print(f"[{plan.model} w{argv[1]}] interrupted; its running trial is re-queued", flush=True)
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
