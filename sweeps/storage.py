"""Which Optuna storage a URL names, and which storages tolerate parallel workers.

- `sqlite:///path.db`: Optuna's RDBStorage on a SQLite file. One worker only: several processes writing one
  SQLite file fail with "database is locked" (optuna/optuna#4034), so `--workers K>1` refuses it.
- `postgresql://user:pass@host/db` (or mysql): RDBStorage; any number of workers on any number of machines.
- `journal:///abs/path/study.log` (or `journal://relative/path.log`): Optuna's JournalStorage on a file,
  made for several processes on one machine (file lock; a lock left by a killed process expires).

RDB storages get Optuna's heartbeat (a trial whose worker stopped beating is failed and re-queued);
JournalStorage has no heartbeat in Optuna 5, so `sweeps.study` keeps its own beat in a trial system attr.
"""
from __future__ import annotations

import os
from pathlib import Path

import optuna

from benchmarks.store import StorageError, default_storage_url, redact, with_driver

JOURNAL_PREFIX = "journal://"
LOCK_GRACE_SECONDS = 30  # a journal lock older than this (its holder was killed) is broken


def resolve_url(url: str | None) -> str:
    return url or default_storage_url()


def kind(url: str) -> str:
    """'journal', 'sqlite', 'postgresql', 'mysql' or the URL's scheme."""
    if url.startswith(JOURNAL_PREFIX):
        return "journal"
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    return "postgresql" if scheme in ("postgres", "postgresql") else scheme


def journal_path(url: str) -> Path:
    path = url[len(JOURNAL_PREFIX):]
    if not path:
        raise StorageError(f"journal storage URL {url!r} names no file; use journal:///abs/path/sweeps.log")
    return Path(path).expanduser()


def check_workers(url: str, workers: int, command_hint: str = "") -> None:
    """Refuse a storage that cannot take `workers` parallel processes (a shared SQLite file)."""
    if workers < 1:
        raise StorageError(f"--workers must be at least 1, got {workers}")
    if workers > 1 and kind(url) == "sqlite":
        home = Path(os.environ.get("PAPERBOARD_HOME", "~/.cache/paperboard")).expanduser()
        hint = f"e.g. `{command_hint} --storage journal://{home / 'sweeps.journal'}`" if command_hint else ""
        raise StorageError(
            f"refusing SQLite storage {redact(url)} for {workers} parallel workers: processes sharing one SQLite "
            f"file fail with 'database is locked'. Use a journal file (--storage journal:///path/sweeps.journal) "
            f"or PostgreSQL (--storage postgresql://user:pass@host/db) for --workers > 1, or run one worker. {hint}")


def open_storage(url: str | None, heartbeat_interval: int | None = None, grace_period: int | None = None,
                 stale_callback=None) -> optuna.storages.BaseStorage:
    """Open (creating if needed) the Optuna storage named by `url`; any failure is one StorageError."""
    url = resolve_url(url)
    if kind(url) == "journal":
        path = journal_path(url)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(exist_ok=True)
            lock = optuna.storages.journal.JournalFileOpenLock(str(path), grace_period=LOCK_GRACE_SECONDS)
            return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path), lock_obj=lock))
        except OSError as err:
            raise StorageError(f"cannot open the journal storage file {path}: {err}") from err
    kwargs = {}
    if heartbeat_interval:
        kwargs = dict(heartbeat_interval=heartbeat_interval, grace_period=grace_period or 3 * heartbeat_interval,
                      heartbeat_stale_trial_callback=stale_callback)
    engine_kwargs = {"pool_pre_ping": True}
    if kind(url) == "postgresql":
        engine_kwargs["connect_args"] = {"connect_timeout": 10}
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(with_driver(url), engine_kwargs=engine_kwargs, **kwargs)
    except ImportError as err:
        raise StorageError(redact(f"no database driver for {url}: {err}. For PostgreSQL install "
                                  f"`pip install 'paperboard[postgres]'` (psycopg2-binary).")) from err
    except Exception as err:  # sqlalchemy ArgumentError / OperationalError / NoSuchModuleError ...
        import sqlalchemy as sa

        if isinstance(err, (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ValueError)):
            raise StorageError(redact(f"bad study storage URL {url!r}: {err}. Use sqlite:///sweeps.db, "
                                      f"postgresql://user:pass@host/db or journal:///abs/path/sweeps.journal")) from err
        detail = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
        raise StorageError(redact(f"cannot reach the study storage at {url}: {detail}. Check that the database "
                                  f"server is running and the URL (host, port, user, database) is right.")) from err
