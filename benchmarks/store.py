"""The results store: one relational table of run records behind a SQLAlchemy URL.

SQLite file by default (one machine); PostgreSQL when machines share a board. Each record is also exportable
as one JSON file (`<dir>/<board>/<model>/<seed>-<config_hash>-<run_id>.json`, BARS-style) and importable into
any store, which is how the committed boards travel between machines.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from pathlib import Path

import sqlalchemy as sa

from datamodules.base import atomic_write_bytes

DEFAULT_HOME = "~/.cache/paperboard"

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
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("record", sa.Text, nullable=False),
)


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


class ResultStore:
    def __init__(self, url: str | None = None):
        self.url = url or default_storage_url()
        try:
            self.engine = sa.create_engine(with_driver(self.url), future=True)
            with self.engine.begin() as conn:
                metadata.create_all(conn)
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as err:
            raise StorageError(redact(f"bad storage URL {self.url!r}: {err}. Use e.g. sqlite:///results.db or "
                                      f"postgresql://user:pass@host/db")) from err
        except sa.exc.OperationalError as err:
            raise StorageError(redact(f"cannot reach the storage at {self.url}: {err.orig}. Check that the "
                                      f"database server is running and the URL is right.")) from err

    def add(self, record: dict) -> None:
        row = {
            "run_id": record["run_id"], "board": record["board"], "model": record["model"],
            "seed": int(record["seed"]), "config_hash": record["config_hash"], "data_hash": record.get("data_hash"),
            "status": record["status"], "tuned": bool(record.get("tuned", False)),
            "created_at": record["created_at"], "record": json.dumps(record, sort_keys=True),
        }
        with self.engine.begin() as conn:
            exists = conn.execute(sa.select(runs_table.c.run_id).where(runs_table.c.run_id == row["run_id"])).first()
            if exists:
                conn.execute(runs_table.update().where(runs_table.c.run_id == row["run_id"]).values(**row))
            else:
                conn.execute(runs_table.insert().values(**row))

    def records(self, board: str | None = None, status: str | None = None, model: str | None = None) -> list[dict]:
        query = sa.select(runs_table.c.record).order_by(runs_table.c.created_at)
        if board:
            query = query.where(runs_table.c.board == board)
        if status:
            query = query.where(runs_table.c.status == status)
        if model:
            query = query.where(runs_table.c.model == model)
        with self.engine.connect() as conn:
            return [json.loads(r[0]) for r in conn.execute(query)]

    def export(self, out_dir: Path, board: str | None = None) -> list[Path]:
        """Write every record of `board` (all boards if None) as one JSON file each; returns the paths."""
        paths = []
        for record in self.records(board=board):
            path = record_path(Path(out_dir), record)
            atomic_write_bytes(path, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())
            paths.append(path)
        return paths

    def import_dir(self, in_dir: Path, board: str | None = None) -> int:
        """Load every record JSON under `in_dir` (optionally of one board); idempotent by run_id."""
        count = 0
        for path in sorted(Path(in_dir).rglob("*.json")):
            record = json.loads(path.read_text())
            if "run_id" not in record or "board" not in record:
                raise StorageError(f"{path} is not a paperboard run record (no run_id/board)")
            if board is None or record["board"] == board:
                self.add(record)
                count += 1
        return count


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
