"""The results store on SQLite and on a real PostgreSQL server (CI starts one; PAPERBOARD_TEST_POSTGRES_URL)."""
import os
import uuid

import pytest

from benchmarks.store import ResultStore, StorageError


def record(board, model="sasrec", seed=0, status="ok"):
    return {"run_id": uuid.uuid4().hex, "board": board, "model": model, "seed": seed, "config_hash": "abc",
            "data_hash": "d1", "status": status, "tuned": False, "created_at": "2026-11-24T00:00:00+00:00",
            "metrics": {"val": {"ndcg@10": 0.5}, "test": {"ndcg@10": 0.4}}}


def urls(tmp_path):
    out = [f"sqlite:///{tmp_path / 'r.db'}"]
    if os.environ.get("PAPERBOARD_TEST_POSTGRES_URL"):
        out.append(os.environ["PAPERBOARD_TEST_POSTGRES_URL"])
    return out


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_add_query_update_export_import(backend, tmp_path):
    chosen = [u for u in urls(tmp_path) if u.startswith(backend)]
    if not chosen:
        pytest.skip("PAPERBOARD_TEST_POSTGRES_URL is not set (CI sets it)")
    store = ResultStore(chosen[0])
    board = f"test-board-{uuid.uuid4().hex[:8]}"  # a fresh board: the PostgreSQL database outlives the test
    first, second = record(board), record(board, "pop", status="failed")
    store.add(first)
    store.add(second)
    assert {r["model"] for r in store.records(board=board)} == {"sasrec", "pop"}
    assert [r["model"] for r in store.records(board=board, status="ok")] == ["sasrec"]
    store.add({**first, "status": "failed"})  # same run_id: updated, not duplicated
    assert len(store.records(board=board)) == 2
    paths = store.export(tmp_path / "runs", board=board)
    assert len(paths) == 2 and all(p.parent.parent.name == board for p in paths)
    other = ResultStore(f"sqlite:///{tmp_path / 'other.db'}")
    assert other.import_dir(tmp_path / "runs") == 2
    assert other.import_dir(tmp_path / "runs") == 2 and len(other.records(board=board)) == 2  # idempotent


def test_unreachable_and_malformed_urls_are_one_clear_error():
    with pytest.raises(StorageError, match="bad storage URL"):
        ResultStore("nosuchdb://x")
    with pytest.raises(StorageError, match="cannot reach the storage"):
        ResultStore("postgresql://u:secret@127.0.0.1:1/none")
