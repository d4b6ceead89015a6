"""What one run leaves behind: Optuna sees exactly one value per trained epoch (the best checkpoint's post-fit
validation runs without the pruner), W&B's config carries the run's identity and honours WANDB_DIR, the log has one
progress line per epoch, and no secret (a storage URL's password, the W&B API key) appears in anything it writes."""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import optuna
import pytest
import yaml

from benchmarks.runner import RunSpec, execute

TINY = {
    "name": "records-tiny", "family": "seqrec", "title": "tiny synthetic board for run-record tests",
    "dataset": "synthetic-seqrec", "dataset_args": {"num_users": 120, "num_items": 40, "max_len": 8, "seed": 0},
    "primary_metric": "ndcg@10", "metrics": ["hr@10", "ndcg@10"],
    "models": {"sasrec": {"embed_dim": 16}}, "seeds": [0], "trainer": {"max_epochs": 3},
    "early_stopping_patience": 5, "sweep": {"trials": 2, "max_epochs": 3},
}


def tiny_board(tmp_path: Path) -> str:
    path = tmp_path / "records-tiny.yaml"
    path.write_text(yaml.safe_dump(TINY, sort_keys=False))
    return str(path)


def test_a_trial_reports_one_intermediate_value_per_trained_epoch(tmp_path):
    from sweeps.pruning import TrialPruning

    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="s", storage=url, direction="maximize")
    trial = study.ask()
    sweep = {"storage": url, "study": "s", "trial_id": trial._trial_id, "trial_number": trial.number,
             "pruner": {"name": "MedianPruner", "n_startup_trials": 5, "n_warmup_steps": 1, "interval_steps": 1}}
    spec = RunSpec(board=tiny_board(tmp_path), model="sasrec", seed=0, sweep=sweep, keep_checkpoint=False,
                   checkpoint_dir=str(tmp_path / "ckpt"), trainer_args={"enable_progress_bar": False})
    record = execute(spec, callbacks=[TrialPruning(sweep, "val/ndcg@10")])
    assert record["status"] == "ok", record.get("error")
    values = optuna.load_study(study_name="s", storage=url).trials[0].intermediate_values
    assert record["epochs"] == 3 and sorted(values) == list(range(record["epochs"]))  # no extra step 3
    # the post-fit validation of the best checkpoint gives the best epoch's own value, not a new one
    assert record["metrics"]["val"]["ndcg@10"] == pytest.approx(values[record["best_epoch"]], abs=1e-6)


def wandb_records(path: Path) -> list:
    """The protobuf records of an offline W&B run file (`run-ID.wandb`: LevelDB's log format, 32 KiB blocks of
    chunks with a 7-byte header: crc32, length, type full/first/middle/last)."""
    from wandb.proto import wandb_internal_pb2

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B", path
    chunks, pending, pos = [], b"", 7
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 1:
            chunks.append(chunk)
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            chunks.append(pending + chunk)
    records = []
    for chunk in chunks:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(chunk)
        records.append(record)
    return records


def _secret_free(paths: list[Path], texts: list[str], secrets: list[str]) -> list[str]:
    """Where any of `secrets` occurs: file paths (contents, as bytes) and the given texts."""
    found = []
    for secret in secrets:
        needle = secret.encode()
        found += [f"{p}: {secret[:3]}..." for p in paths if p.is_file() and needle in p.read_bytes()]
        found += [f"text {i}: {secret[:3]}..." for i, t in enumerate(texts) if secret in t]
    return found


@pytest.mark.slow  # a board run end to end (a worker process, W&B offline): about a minute of CPU
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_board_run_writes_no_secret_and_wandb_carries_the_runs_identity(backend, tmp_path, monkeypatch, capfd):
    from benchmarks import cli
    from benchmarks.store import ResultStore

    key = "wk" + uuid.uuid4().hex + uuid.uuid4().hex[:6]  # a W&B API key's length (40)
    home, wandb_dir = tmp_path / "home", tmp_path / "wandb-here"
    monkeypatch.setenv("PAPERBOARD_HOME", str(home))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_API_KEY", key)
    monkeypatch.setenv("WANDB_DIR", str(wandb_dir))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DISABLE_CODE", "true")
    if backend == "postgresql":
        monkeypatch.setenv("WANDB_MODE", "disabled")  # W&B's files are checked once, in the SQLite case
        url = os.environ.get("PAPERBOARD_TEST_POSTGRES_URL")
        if not url:
            pytest.skip("PAPERBOARD_TEST_POSTGRES_URL is not set (.ci/run starts a PostgreSQL server and sets it)")
        from sqlalchemy.engine import make_url

        password = make_url(url).password
        if not password or len(password) < 8 or password in url.replace(f":{password}@", ":@"):
            pytest.skip("the test server's password is too short or repeats elsewhere in its URL to grep for")
        board = TINY["name"] + "-" + uuid.uuid4().hex[:6]  # the server's database outlives the test
    else:
        # SQLite URLs have no password: the store is a SQLite file that calls itself by a PostgreSQL URL, the only
        # place a store's URL is printed during a run being the banner
        password = "pw" + uuid.uuid4().hex
        url = f"postgresql://paperboard:{password}@db.example:5432/results"
        real = ResultStore(f"sqlite:///{tmp_path / 'results.db'}")
        real.url = url
        monkeypatch.setattr(cli, "_store", lambda _: real)
        board = TINY["name"]
    path = tmp_path / f"{board}.yaml"
    path.write_text(yaml.safe_dump({**TINY, "name": board}, sort_keys=False))
    monkeypatch.setenv("PAPERBOARD_STORAGE", url)
    code = cli.main(["run", str(path), "--storage", url, "--quiet", "--threads", "1"])
    out, err = capfd.readouterr()
    assert code == 0, out + err
    assert ":***@" in out  # the banner names the store, its password redacted
    store = cli._store(url)
    records = store.records(board=board)
    assert len(records) == 1 and records[0]["status"] == "ok"
    record = records[0]
    exported = store.export(tmp_path / "runs", board=board)

    # one progress line per epoch in the run's log (--quiet), and the console's summary line
    log = Path(record["log"]).read_text()
    assert [line.split(" epoch ")[1].split()[0] for line in log.splitlines() if line.startswith("[progress]")] \
        == [f"{e}/3" for e in range(1, record["epochs"] + 1)]
    assert "runs done" in out

    # W&B wrote under WANDB_DIR, its config names the run, and its history has one step per trained epoch
    if backend == "sqlite":
        runs = list(wandb_dir.glob(f"wandb/offline-run-*-{record['run_id']}"))  # (the board's table is another run)
        assert len(runs) == 1, list(wandb_dir.rglob("*"))[:20]
        logged = wandb_records(next(runs[0].glob("run-*.wandb")))
        config = {i.key: json.loads(i.value_json) for r in logged if r.WhichOneof("record_type") == "run"
                  for i in r.run.config.update}
        assert config["seed"] == 0 and config["config_hash"] == record["config_hash"]
        assert config["data_hash"] == record["data_hash"] and config["git_sha"] == record["git_sha"]
        assert sum(r.WhichOneof("record_type") == "history" for r in logged) == record["epochs"]
        summary = {i.key: json.loads(i.value_json) for r in logged if r.WhichOneof("record_type") == "summary"
                   for i in r.summary.update if i.key}
        assert summary["test/ndcg@10"] == pytest.approx(record["metrics"]["test"]["ndcg@10"])

    written = [p for root in (home, wandb_dir, tmp_path / "runs") for p in root.rglob("*")]
    assert exported and Path(record["log"]) in written
    assert _secret_free(written, [out, err, json.dumps(records)], [password, key]) == []
