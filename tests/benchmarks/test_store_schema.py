"""The store's schema is versioned: a store written by the schema before Alembic (created here with that schema's own
DDL) upgrades in place and keeps every record; the long metrics table equals the records' JSON; on PostgreSQL the
record is JSONB and created_at a timestamp. PostgreSQL cases use PAPERBOARD_TEST_POSTGRES_URL (.ci/run sets it)."""
from __future__ import annotations

import json
import math
import os
import re
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from benchmarks.migrations import HEAD, VERSION_TABLE, current_revision
from benchmarks.store import ResultStore, metric_rows, with_driver

PG_URL = os.environ.get("PAPERBOARD_TEST_POSTGRES_URL")

# The DDL that the store ran before its schema was versioned (SQLAlchemy's create_all of that day's tables).
OLD_DDL = [
    """CREATE TABLE paperboard_runs (
        run_id VARCHAR(64) NOT NULL, board VARCHAR(128) NOT NULL, model VARCHAR(128) NOT NULL, seed INTEGER NOT NULL,
        config_hash VARCHAR(32) NOT NULL, data_hash VARCHAR(32), status VARCHAR(16) NOT NULL, tuned BOOLEAN NOT NULL,
        created_at VARCHAR(40) NOT NULL, record TEXT NOT NULL, PRIMARY KEY (run_id))""",
    "CREATE INDEX ix_paperboard_runs_board ON paperboard_runs (board)",
    "CREATE INDEX ix_paperboard_runs_model ON paperboard_runs (model)",
    """CREATE TABLE paperboard_claims (
        identity VARCHAR(64) NOT NULL, board VARCHAR(128) NOT NULL, what VARCHAR(256) NOT NULL,
        host VARCHAR(256) NOT NULL, pid INTEGER NOT NULL, token VARCHAR(32) NOT NULL, heartbeat FLOAT NOT NULL,
        PRIMARY KEY (identity))""",
]


def record(board, model, seed, ndcg, status="ok", when="2026-11-24T10:00:00+00:00"):
    out = {"run_id": uuid.uuid4().hex, "board": board, "model": model, "seed": seed, "config_hash": "c0ffee",
           "data_hash": "d1", "status": status, "tuned": False, "created_at": when,
           "config": {"trainer": {"max_epochs": 30}}, "best_epoch": 4, "epochs": 8}
    if status == "ok":
        out["metrics"] = {"val": {"ndcg@10": ndcg + 0.01, "hr@10": 2 * ndcg}, "test": {"ndcg@10": ndcg, "hr@10": 2 * ndcg}}
    return out


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request, tmp_path):
    """A URL of an empty database: a SQLite file, or a fresh schema of the test PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    if not PG_URL:
        pytest.skip("PAPERBOARD_TEST_POSTGRES_URL is not set (.ci/run starts a PostgreSQL server and sets it)")
    schema = f"pb_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(with_driver(PG_URL))
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    yield f"{PG_URL}{'&' if '?' in PG_URL else '?'}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


def long_table(engine) -> set[tuple]:
    with engine.connect() as conn:
        return {(r.run_id, r.split, r.metric, None if r.value is None else round(r.value, 12))
                for r in conn.execute(sa.text("SELECT run_id, split, metric, value FROM paperboard_metrics"))}


def from_json(records) -> set[tuple]:
    return {(m["run_id"], m["split"], m["metric"], None if m["value"] is None else round(m["value"], 12))
            for r in records for m in metric_rows(r)}


def test_a_store_of_the_previous_schema_upgrades_and_keeps_every_record(empty_url):
    board = "old-board"
    old = [record(board, "sasrec", s, 0.3 + s / 100, when=f"2026-11-2{s}T10:00:00+00:00") for s in range(3)]
    old += [record(board, "pop", 0, 0.1), record(board, "gru4rec", 0, 0.2, status="failed")]
    old[1]["metrics"]["val"]["mrr@10"] = math.nan  # JSON text can hold NaN; JSONB cannot
    engine = sa.create_engine(with_driver(empty_url))
    with engine.begin() as conn:
        for ddl in OLD_DDL:
            conn.execute(sa.text(ddl))
        for r in old:  # what the old store's _upsert wrote
            conn.execute(sa.text("INSERT INTO paperboard_runs VALUES (:run_id, :board, :model, :seed, :config_hash, "
                                 ":data_hash, :status, :tuned, :created_at, :record)"),
                         {**{k: r[k] for k in ("run_id", "board", "model", "seed", "config_hash", "data_hash", "status",
                                               "tuned", "created_at")}, "record": json.dumps(r, sort_keys=True)})
    with engine.connect() as conn:
        assert current_revision(conn) is None  # never versioned

    store = ResultStore(empty_url)  # opening it upgrades it
    with store.engine.connect() as conn:
        assert current_revision(conn) == HEAD
    got = {r["run_id"]: r for r in store.records(board=board)}
    assert set(got) == {r["run_id"] for r in old}
    postgres = store.engine.dialect.name == "postgresql"
    for r in old:
        expected = json.loads(json.dumps(r))
        if postgres:
            expected["metrics"] = {s: {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in m.items()}
                                   for s, m in r.get("metrics", {}).items()} if "metrics" in r else None
            if expected["metrics"] is None:
                del expected["metrics"]
        assert json.dumps(got[r["run_id"]], sort_keys=True) == json.dumps(expected, sort_keys=True)
    assert [r["seed"] for r in store.records(board=board, model="sasrec")] == [0, 1, 2]  # created_at order kept
    assert long_table(store.engine) == from_json(old) and len(from_json(old)) == 17  # 4 ok runs x 2 splits x 2, and the NaN as NULL

    # new records land in both tables; an update replaces a run's metric rows
    new = record(board, "sasrec", 3, 0.5)
    store.add(new)
    store.add({**new, "metrics": {"val": {"ndcg@10": 0.6}, "test": {"ndcg@10": 0.55}}})
    assert long_table(store.engine) == from_json([*old, {**new, "metrics": {"val": {"ndcg@10": 0.6},
                                                                            "test": {"ndcg@10": 0.55}}}])
    with store.engine.connect() as conn:
        columns = {c["name"]: c["type"] for c in sa.inspect(conn).get_columns("paperboard_runs")}
        indexes = {tuple(i["column_names"]) for i in sa.inspect(conn).get_indexes("paperboard_metrics")}
        assert ("board", "model", "metric") in indexes
        if postgres:
            assert type(columns["record"]).__name__ == "JSONB"
            assert type(columns["created_at"]).__name__ == "TIMESTAMP" and columns["created_at"].timezone
            # SQL straight on the record and on the long table
            best = conn.execute(sa.text("SELECT record #>> '{metrics,test,ndcg@10}' FROM paperboard_runs "
                                        "WHERE model = 'sasrec' ORDER BY created_at DESC LIMIT 1")).scalar()
            assert float(best) == 0.55
    ResultStore(empty_url)  # opening an upgraded store again is a no-op


def test_a_new_store_is_created_at_the_newest_revision_and_the_readme_query_works(tmp_path):
    store = ResultStore(f"sqlite:///{tmp_path / 'new.db'}")
    for model, values in (("sasrec", (0.30, 0.32)), ("pop", (0.10, 0.10))):
        for seed, v in enumerate(values):
            store.add(record("b", model, seed, v))
    with store.engine.connect() as conn:
        assert conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar() == HEAD
        readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
        query = re.search(r"(SELECT m\.model, r\.config_hash.*?);", readme, re.S).group(1)
        rows = conn.execute(sa.text(query.replace("'seqrec-ml100k'", "'b'"))).all()
    assert [(r.model, r.seeds, round(r.ndcg10, 4)) for r in rows] == [("sasrec", 2, 0.31), ("pop", 2, 0.1)]


def test_the_heads_agree():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    import benchmarks.migrations as migrations

    config = Config()
    config.set_main_option("script_location", os.path.dirname(migrations.__file__))
    assert ScriptDirectory.from_config(config).get_heads() == [HEAD]
