"""`paperboard sweep --workers K [--threads T]` splits the cores: each trial process gets T threads, or the cores
divided by K; an explicit --threads wins over OMP_NUM_THREADS in the environment, the default does not."""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

import sweeps.trial as trial_module
from benchmarks.cli import main
from sweeps.study import trial_threads


@pytest.mark.parametrize("workers,threads,cores,expected", [
    (1, None, 8, None),  # one worker: torch's default (or the user's OMP_NUM_THREADS)
    (2, None, 8, 4), (3, None, 8, 2), (4, None, 2, 1),  # the cores split, at least one thread each
    (2, 3, 8, 3), (1, 2, 8, 2),  # --threads wins
])
def test_threads_per_trial(monkeypatch, workers, threads, cores, expected):
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    assert trial_threads(SimpleNamespace(workers=workers, threads=threads)) == expected


@dataclass
class _Spec:
    run_id: str = "r"


def _env_of_launch(monkeypatch, threads, override, omp=None):
    seen = {}

    class FakeProcess:
        def __init__(self, args, env=None, **kwargs):
            seen.update(env)

        def wait(self, timeout=None):
            return 3

    monkeypatch.setattr(subprocess, "Popen", FakeProcess)
    if omp is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    assert trial_module.launch(_Spec(), None, threads=threads, override=override) == (None, 3)
    return seen


def test_trial_environment_carries_the_threads(monkeypatch):
    assert _env_of_launch(monkeypatch, 2, False)["OMP_NUM_THREADS"] == "2"
    assert _env_of_launch(monkeypatch, 2, False, omp="5")["OMP_NUM_THREADS"] == "5"  # the user's setting stays
    env = _env_of_launch(monkeypatch, 2, True, omp="5")  # an explicit --threads replaces it
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "2"


def test_threads_below_one_is_a_clear_error(capsys):
    assert main(["sweep", "quickstart", "--model", "sasrec", "--trials", "1", "--threads", "0"]) == 2
    err = capsys.readouterr().err
    assert "--threads must be at least 1" in err and "Traceback" not in err
