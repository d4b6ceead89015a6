"""The results store: run records behind a SQLAlchemy URL, queryable with SQL.

SQLite file by default (one machine); PostgreSQL when machines share a board. `paperboard_runs` holds one row per
run with its whole record (JSONB on PostgreSQL, JSON text on SQLite; `created_at` a timestamp on PostgreSQL);
`paperboard_metrics` holds the same metrics long (run_id, board, model, seed, split, metric, value), indexed by
(board, model, metric), so that `SELECT model, avg(value) ... GROUP BY model` needs no JSON at all. The schema
is versioned with Alembic (benchmarks/migrations, version table `paperboard_alembic_version`, apart from
Optuna's own): opening an older store upgrades it in place, keeping every record.

Each record is also exportable as one JSON file (`<dir>/<board>/<model>/<seed>-<config_hash>-<run_id>.json`,
BARS-style) and importable into any store, which is how the committed boards travel between machines.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import re
import socket
import sys
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP

from benchmarks.process import Heartbeat
from contracts.atomic import atomic_write_bytes

DEFAULT_HOME = "~/.cache/paperboard"

def finite_json(value):
    """`value` with every NaN or infinite float as None: JSON has no NaN (PostgreSQL's JSONB refuses it)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value


class RecordJSON(sa.types.TypeDecorator):
    """A run record: JSONB on PostgreSQL (non-finite numbers stored as null), JSON text elsewhere (exactly as
    json.dumps writes it, so SQLite keeps a NaN the record holds)."""

    impl = sa.Text
    cache_ok = True

    def load_dialect_impl(self, dialect):
        return dialect.type_descriptor(JSONB() if dialect.name == "postgresql" else sa.Text())

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        return finite_json(value) if dialect.name == "postgresql" else json.dumps(value, sort_keys=True)

    def process_result_value(self, value, dialect):
        if value is None or dialect.name == "postgresql":
            return value
        return json.loads(value)


class Timestamp(sa.types.TypeDecorator):
    """An ISO-8601 time: `timestamp with time zone` on PostgreSQL, ISO text elsewhere (which sorts as time); read
    back as the ISO string the record holds, to the second."""

    impl = sa.String(40)
    cache_ok = True

    def load_dialect_impl(self, dialect):
        return dialect.type_descriptor(TIMESTAMP(timezone=True) if dialect.name == "postgresql" else sa.String(40))

    def process_bind_param(self, value, dialect):
        if value is None or dialect.name != "postgresql":
            return value
        from datetime import datetime, timezone

        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)

    def process_result_value(self, value, dialect):
        if value is None or isinstance(value, str):
            return value
        from datetime import timezone

        return value.astimezone(timezone.utc).isoformat(timespec="seconds")


metadata = sa.MetaData()
runs_table = sa.Table(
    "paperboard_runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("board", sa.String(128), index=True, nullable=False),
    sa.Column("model", sa.String(128), index=True, nullable=False),
    sa.Column("seed", sa.Integer, nullable=False),
    sa.Column("config_hash", sa.String(32), nullable=False),
    sa.Column("data_hash", sa.String(32)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("tuned", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("record", RecordJSON, nullable=False),
)
# The metrics of every run, long: one row per (run, split, metric); a non-finite value is NULL.
metrics_table = sa.Table(
    "paperboard_metrics",
    metadata,
    sa.Column("run_id", sa.String(64), sa.ForeignKey("paperboard_runs.run_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("split", sa.String(16), primary_key=True),
    sa.Column("metric", sa.String(128), primary_key=True),
    sa.Column("value", sa.Float),
    sa.Column("board", sa.String(128), nullable=False),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("seed", sa.Integer, nullable=False),
    sa.Index("ix_paperboard_metrics_board_model_metric", "board", "model", "metric"),
)
# One row per run being trained: a run's identity is claimed here (a unique key, so two processes on one store
# never train the same run) and released when its record is stored; the holder beats a heartbeat, so the claim
# of a process that died is taken over.
claims_table = sa.Table(
    "paperboard_claims",
    metadata,
    sa.Column("identity", sa.String(64), primary_key=True),
    sa.Column("board", sa.String(128), nullable=False),
    sa.Column("what", sa.String(256), nullable=False),
    sa.Column("host", sa.String(256), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("token", sa.String(32), nullable=False),
    sa.Column("heartbeat", sa.Float, nullable=False),
)
RECORD_KEYS = {"run_id": str, "board": str, "model": str, "seed": int, "config_hash": str, "status": str,
               "created_at": str}
CLAIM_STALE_SECONDS = 90  # a claim whose holder has not beaten for this long is taken over


class StorageError(RuntimeError):
    pass


def default_storage_url() -> str:
    """env PAPERBOARD_STORAGE, else a SQLite file under ~/.cache/paperboard."""
    if os.environ.get("PAPERBOARD_STORAGE"):
        return os.environ["PAPERBOARD_STORAGE"]
    home = Path(os.environ.get("PAPERBOARD_HOME", DEFAULT_HOME)).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'paperboard.db'}"


def with_driver(url: str) -> str:
    """`postgresql://` means psycopg (v3) to SQLAlchemy 2.1; use psycopg2 when only it is installed (our extra)."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme.lower() in ("postgresql", "postgres"):
        import importlib.util

        if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
            return f"postgresql+psycopg2://{rest}"
    return url


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for another database or an in-memory one)."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    database = parsed.database
    if database.startswith("file:"):  # SQLite's URI form (`?uri=true`): file:/path/x.db?mode=ro
        database = database[len("file:"):].split("?", 1)[0]
        if not database or "mode=memory" in parsed.database:
            return None
    return Path(database).expanduser()


class ResultStore:
    def __init__(self, url: str | None = None):
        self.url = url or default_storage_url()
        path = sqlite_path(self.url)
        if path is not None and not path.parent.is_dir():  # SQLite would say only "unable to open database file"
            raise StorageError(f"the SQLite store's folder {path.parent} does not exist; create it "
                               f"(mkdir -p {path.parent}) or give --storage another file")
        try:
            self.engine = sa.create_engine(with_driver(self.url), future=True)
            from benchmarks.migrations import upgrade

            upgrade(self.engine)
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as err:
            raise StorageError(redact(f"bad storage URL {self.url!r}: {err}. Use e.g. sqlite:///results.db or "
                                      f"postgresql://user:pass@host/db")) from err
        except sa.exc.OperationalError as err:
            if path is not None:
                raise StorageError(f"cannot open the SQLite store {path}: {err.orig}. Check that you may read and "
                                   f"write it and its folder.") from err
            raise StorageError(redact(f"cannot reach the storage at {self.url}: {err.orig}. Check that the "
                                      f"database server is running and the URL is right.")) from err

    def check_writable(self) -> None:
        """Fail now, before any training, if results could not be stored (a read-only file, folder or user): a
        probe row is written and rolled back."""
        try:
            with self.engine.connect() as conn:
                with conn.begin() as transaction:
                    conn.execute(claims_table.insert().values(identity=f"probe-{os.getpid()}", board="", what="probe",
                                                              host="", pid=0, token="", heartbeat=0.0))
                    transaction.rollback()
        except sa.exc.SQLAlchemyError as err:
            detail = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
            raise StorageError(redact(f"cannot write results to {self.url}: {detail}. Give --storage a store you "
                                      f"may write (for SQLite, a writable file in a writable folder).")) from err

    def add(self, record: dict) -> None:
        with self.engine.begin() as conn:
            self._upsert(conn, record)

    @staticmethod
    def _upsert(conn, record: dict) -> None:
        row = {
            "run_id": record["run_id"], "board": record["board"], "model": record["model"],
            "seed": int(record["seed"]), "config_hash": record["config_hash"], "data_hash": record.get("data_hash"),
            "status": record["status"], "tuned": bool(record.get("tuned", False)),
            "created_at": record["created_at"], "record": record,
        }
        exists = conn.execute(sa.select(runs_table.c.run_id).where(runs_table.c.run_id == row["run_id"])).first()
        if exists:
            conn.execute(runs_table.update().where(runs_table.c.run_id == row["run_id"]).values(**row))
            conn.execute(metrics_table.delete().where(metrics_table.c.run_id == row["run_id"]))
        else:
            conn.execute(runs_table.insert().values(**row))
        rows = metric_rows(record)
        if rows:
            conn.execute(metrics_table.insert(), rows)

    # ----- claims: one process trains a run at a time -----------------------------------------------------------
    def claim(self, identity: str, board: str, what: str) -> tuple[str | None, dict | None]:
        """Claim a run's identity for this process: (token, None) when it is ours to train, (None, holder) when a
        live process holds it. A claim whose holder died (its pid is gone on this host, or it stopped beating) is
        taken over; the unique key and a compare-and-swap on the old holder make each claim atomic."""
        token = uuid.uuid4().hex
        mine = {"identity": identity, "board": board, "what": what[:256], "host": socket.gethostname()[:256],
                "pid": os.getpid(), "token": token, "heartbeat": time.time()}
        for _ in range(3):
            try:
                with self.engine.begin() as conn:
                    conn.execute(claims_table.insert().values(**mine))
                return token, None
            except sa.exc.IntegrityError:
                pass
            with self.engine.connect() as conn:
                holder = conn.execute(sa.select(claims_table).where(claims_table.c.identity == identity)).mappings().first()
            if holder is None:
                continue  # released meanwhile: try again
            if not _claim_is_stale(holder):
                return None, dict(holder)
            with self.engine.begin() as conn:
                taken = conn.execute(claims_table.update().where(claims_table.c.identity == identity)
                                     .where(claims_table.c.token == holder["token"]).values(**mine)).rowcount
            if taken == 1:
                return token, None
        return None, {"host": "?", "pid": 0, "what": what}

    def beat(self, tokens: list[str]) -> None:
        """Refresh the heartbeat of this process's claims."""
        if tokens:
            with self.engine.begin() as conn:
                conn.execute(claims_table.update().where(claims_table.c.token.in_(tokens)).values(heartbeat=time.time()))

    def release(self, token: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(claims_table.delete().where(claims_table.c.token == token))

    def records(self, board: str | None = None, status: str | None = None, model: str | None = None) -> list[dict]:
        query = sa.select(runs_table.c.record).order_by(runs_table.c.created_at)
        if board:
            query = query.where(runs_table.c.board == board)
        if status:
            query = query.where(runs_table.c.status == status)
        if model:
            query = query.where(runs_table.c.model == model)
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(query)]

    def export(self, out_dir: Path, board: str | None = None) -> list[Path]:
        """Write every record of `board` (all boards if None) as one JSON file each; returns the paths."""
        paths = []
        for record in self.records(board=board):
            path = record_path(Path(out_dir), record)
            atomic_write_bytes(path, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())
            paths.append(path)
        return paths

    def import_dir(self, in_dir: Path, board: str | None = None) -> int:
        """Load every record JSON under `in_dir` (optionally of one board); idempotent by run_id. Every file is read
        and checked first, and all records go in one transaction: a bad file imports nothing."""
        in_dir = Path(in_dir)
        if not in_dir.is_dir():
            raise StorageError(f"no records folder at {in_dir}; give the folder that `paperboard export --out` "
                               f"wrote (the committed records are in benchmarks/results/runs)")
        paths = sorted(in_dir.rglob("*.json"))
        if not paths:
            raise StorageError(f"{in_dir} holds no *.json run records; give the folder that `paperboard export "
                               f"--out` wrote")
        records = [read_record(path) for path in paths]
        chosen = [r for r in records if board is None or r["board"] == board]
        with self.engine.begin() as conn:
            for record in chosen:
                self._upsert(conn, record)
        return len(chosen)


def metric_rows(record: dict) -> list[dict]:
    """The long-table rows of a record: one per numeric metric of each split (val, test, ...)."""
    rows = []
    for split, values in (record.get("metrics") or {}).items():
        for metric, value in (values or {}).items() if isinstance(values, dict) else ():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                rows.append({"run_id": record["run_id"], "board": record["board"], "model": record["model"],
                             "seed": int(record["seed"]), "split": split, "metric": metric,
                             "value": float(value) if math.isfinite(value) else None})
    return rows


def _claim_is_stale(holder) -> bool:
    if time.time() - holder["heartbeat"] > CLAIM_STALE_SECONDS:
        return True
    if holder["host"] == socket.gethostname()[:256]:  # on this machine a dead holder is seen at once
        try:
            os.kill(holder["pid"], 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's
            return False
    return False


class ClaimHeartbeat(Heartbeat):
    """Refreshes this process's claims (`tokens`) every `interval` seconds while it trains."""

    def __init__(self, store: "ResultStore", interval: float = 15.0):
        self.store, self.tokens = store, []
        super().__init__(self._beat, interval)

    def _beat(self) -> None:
        try:
            self.store.beat(list(self.tokens))
        except sa.exc.SQLAlchemyError:  # a busy or briefly unreachable store: beat again next time
            pass


def read_record(path: Path) -> dict:
    """One exported run record, checked: a file that is not one is a StorageError naming it and what is wrong."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise StorageError(f"cannot read {path}: {err}") from err
    except ValueError as err:
        raise StorageError(f"{path} is not valid JSON ({err}); fix or remove it, then import again (nothing was "
                           f"imported)") from err
    if not isinstance(record, dict):
        raise StorageError(f"{path} is not a paperboard run record (a JSON object); remove it, then import again "
                           f"(nothing was imported)")
    wrong = [key for key, kind in RECORD_KEYS.items()
             if not isinstance(record.get(key), kind) or isinstance(record.get(key), bool)]
    if wrong:
        raise StorageError(f"{path} is not a paperboard run record: {', '.join(wrong)} missing or of the wrong type; "
                           f"fix or remove it, then import again (nothing was imported)")
    return record


def record_path(out_dir: Path, record: dict) -> Path:
    name = f"seed{record['seed']}-{record['config_hash']}-{record['run_id'][:8]}.json"
    return out_dir / record["board"] / record["model"] / name


_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*:)(?P<secret>[^\s]*)@(?=[^\s@]*(?:\s|$|['\"]))")
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&;](?:password|passwd|pwd)=)(?P<secret>[^&\s'\"]*)", re.IGNORECASE)


def redact(text) -> str:
    """`text` (a storage URL, a command line or a message quoting either) with every URL password shown as ***.

    Apply it wherever a URL or a command line is printed, stored (study attributes, records), logged or sent to
    W&B: `postgresql://u:secret@host/db` -> `postgresql://u:***@host/db`."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}***@", str(text))
    return _QUERY_PASSWORD.sub(lambda m: f"{m['head']}***", text)


@contextlib.contextmanager
def redacted_argv():
    """sys.argv with passwords redacted for the duration: W&B records the command line of every run it makes."""
    saved = sys.argv
    sys.argv = [redact(a) for a in saved]
    try:
        yield
    finally:
        sys.argv = saved


def load_records_dir(path: Path, board: str | None = None) -> list[dict]:
    """Every exported run record under `path` (optionally of one board), as the store would return them."""
    path = Path(path)
    if not path.is_dir():
        raise StorageError(f"no records folder at {path}; give the folder that `paperboard export --out` wrote "
                           f"(the committed records are in benchmarks/results/runs)")
    records = []
    for file in sorted(path.rglob("*.json")):
        try:
            record = json.loads(file.read_text())
        except (OSError, ValueError) as err:
            raise StorageError(f"{file}: not a readable JSON run record ({err})") from err
        if isinstance(record, dict) and "run_id" in record and (board is None or record.get("board") == board):
            records.append(record)
    return sorted(records, key=lambda r: r.get("created_at", ""))
