"""`paperboard run` as a process among others: Ctrl-C stops it cleanly with a (redacted) resume hint; kill -9 leaves
no training orphan, and the next run takes over its claim and its temp folder; two runs on one store train each
run once."""
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from benchmarks.store import ResultStore

REPO = Path(__file__).resolve().parents[2]
SECRET = "Zq7hunter2Secret"
TINY = {
    "name": "tiny-process", "family": "seqrec", "title": "tiny board for process tests", "dataset": "synthetic-seqrec",
    "dataset_args": {"num_users": 200, "num_items": 30, "max_len": 8, "seed": 1}, "protocol": ["leave-one-out"],
    "primary_metric": "ndcg@10", "metrics": ["ndcg@10"], "models": {"sasrec": {"embed_dim": 8}},
    "seeds": [0], "trainer": {"max_epochs": 2, "enable_progress_bar": False}, "early_stopping_patience": 5,
}


def start(tmp_path, board: dict, storage: str, *extra) -> subprocess.Popen:
    path = tmp_path / "board.yaml"
    path.write_text(yaml.safe_dump(board))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    return subprocess.Popen([sys.executable, "-m", "benchmarks.cli", "run", str(path), "--storage", storage, "--quiet",
                             *extra], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group, as a terminal's foreground job


def claims(storage: str) -> list:
    engine = sa.create_engine(storage.split("?")[0])
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text("SELECT host, pid FROM paperboard_claims")))
    except sa.exc.OperationalError:  # not created yet
        return []
    finally:
        engine.dispose()


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def wait_until(condition, seconds: float = 120, what: str = ""):
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def temp_folders(pid: int) -> list[Path]:
    return list(Path(tempfile.gettempdir()).glob(f"paperboard-run-{pid}-*"))


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc")
@pytest.mark.timeout(300)
def test_ctrl_c_stops_cleanly_with_a_redacted_resume_hint(tmp_path):
    storage = f"sqlite:///{tmp_path / 'results.db'}?password={SECRET}"
    board = {**TINY, "trainer": {"max_epochs": 500, "enable_progress_bar": False}, "early_stopping_patience": 500}
    proc = start(tmp_path, board, storage)
    wait_until(lambda: claims(storage) and children(proc.pid), what="the run to start training")
    (worker,) = children(proc.pid)
    time.sleep(2)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and SECRET not in out + err
    hint = [line for line in err.splitlines() if "Resume with:" in line]
    assert hint and hint[0].startswith("paperboard: interrupted; finished runs are kept in the store and stopped ones "
                                       "continue from their last finished epoch. Resume with: paperboard run ") \
        and "password=***" in hint[0], err
    assert not alive(worker) and claims(storage) == [] and temp_folders(proc.pid) == []
    assert ResultStore(storage).records() == []  # the interrupted run is not a record: resuming continues it


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc")
@pytest.mark.timeout(300)
def test_kill9_leaves_no_orphan_and_the_next_run_takes_over(tmp_path):
    storage = f"sqlite:///{tmp_path / 'results.db'}"
    proc = start(tmp_path, TINY, storage)
    wait_until(lambda: claims(storage) and children(proc.pid), what="the run to start training")
    (worker,) = children(proc.pid)
    assert temp_folders(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    wait_until(lambda: not alive(worker), seconds=30, what="the worker to die with its launcher")
    assert claims(storage) and temp_folders(proc.pid)  # what a kill -9 leaves: a stale claim and a temp folder

    again = start(tmp_path, TINY, storage)
    out, err = again.communicate(timeout=240)
    assert again.returncode == 0, err
    assert "skipped" not in out  # the dead process's claim was taken over
    assert [r["status"] for r in ResultStore(storage).records()] == ["ok"]
    assert claims(storage) == [] and temp_folders(proc.pid) == []


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_runs_on_one_store_train_each_run_once(tmp_path):
    storage = f"sqlite:///{tmp_path / 'results.db'}"
    board = {**TINY, "models": {"sasrec": {"embed_dim": 8}, "gru4rec": {"embed_dim": 8}, "pop": {}}, "seeds": [0, 1]}
    ResultStore(storage)  # created once, so that neither process races the other to create the tables
    first = start(tmp_path, board, storage)
    second = start(tmp_path, board, storage)
    outputs = [p.communicate(timeout=540) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    records = ResultStore(storage).records()
    trained = sorted((r["model"], r["seed"]) for r in records)
    assert trained == sorted((m, s) for m in board["models"] for s in board["seeds"]), trained  # 6 runs, once each
    assert all(r["status"] == "ok" for r in records)
    assert sum(out.count(": skipped, another") for out, _ in outputs) >= 1
    assert claims(storage) == []
