"""What every launched training process shares: it dies with the process that launched it, and the temp folder
that carries its spec and record never outlives its launcher.

Board runs (`benchmarks.worker`) and sweep trials (`sweeps.trial`) both start with `die_with_parent`: Linux kills
them (PR_SET_PDEATHSIG) the moment their launcher dies, even by `kill -9`, so no orphan trains on. Their temp
folders are named after the launcher's pid; a launcher cleans its own on the way out, and `remove_stale_tempdirs`
removes those a killed launcher left behind.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Callable

PR_SET_PDEATHSIG = 1
_TEMPDIR = re.compile(r"paperboard-(?P<kind>[a-z]+)-(?P<pid>\d+)-")


def die_with_parent(parent_pid: int | None) -> None:
    """Ask Linux to SIGKILL this process when its parent dies; exit now if `parent_pid` (the launcher) is already
    gone. A process that Lightning re-launched for another DDP rank (LOCAL_RANK > 0) has rank 0 as its parent and
    dies with it, so the chain holds."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: an orphan is still possible, nothing more to do here
        return
    if parent_pid is not None and int(os.environ.get("LOCAL_RANK", "0") or 0) == 0 and os.getppid() != parent_pid:
        os._exit(1)  # the launcher died before prctl took effect


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_tempdirs(kind: str) -> int:
    """Remove `paperboard-<kind>-<pid>-*` temp folders whose launcher is dead; returns how many went."""
    removed = 0
    for path in Path(tempfile.gettempdir()).glob(f"paperboard-{kind}-*"):
        match = _TEMPDIR.match(path.name)
        if match and path.is_dir() and not _alive(int(match["pid"])):
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed


@contextlib.contextmanager
def launcher_tempdir(kind: str):
    """A private temp folder named after this launcher (so a later launcher can tell when it is stale)."""
    with tempfile.TemporaryDirectory(prefix=f"paperboard-{kind}-{os.getpid()}-") as tmp:
        yield Path(tmp)


class Heartbeat:
    """A daemon thread that calls `beat()` every `interval` seconds while its `with` block runs (first at once when
    `immediately`), and stops early when `beat` returns False: a run's claim in the store, a sweep trial's stamp in
    a journal file."""

    def __init__(self, beat: Callable[[], bool | None], interval: float, immediately: bool = False):
        self.beat, self.interval, self.immediately = beat, interval, immediately
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        if self.immediately and self.beat() is False:
            return
        while not self._stop.wait(self.interval):
            if self.beat() is False:
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
