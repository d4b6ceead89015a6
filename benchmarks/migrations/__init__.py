"""The results store's schema versions (Alembic). `upgrade(engine)` brings any store to the newest schema.

A store that Alembic has never seen but that holds `paperboard_runs` was written before the schema was versioned
(revision 0001); it is stamped as such, then upgraded. The version lives in `paperboard_alembic_version`, so that
Optuna's own Alembic table in a shared database is never touched. To change the schema: add a revision under
`versions/` (`down_revision` = the current head), change `benchmarks/store.py` to match, and test an upgrade of a
store that the previous schema wrote.
"""
from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

VERSION_TABLE = "paperboard_alembic_version"
HEAD = "0002"  # the newest revision under versions/; tests check that Alembic agrees
UNVERSIONED = "0001"  # the schema of stores written before Alembic


def current_revision(conn) -> str | None:
    if not sa.inspect(conn).has_table(VERSION_TABLE):
        return None
    return conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def _config(conn):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    config.attributes["connection"] = conn
    return config


def upgrade(engine: sa.engine.Engine, revision: str = "head") -> None:
    """Bring the store at `engine` to `revision` (creating it when empty). Cheap when it is already there."""
    with engine.connect() as conn:
        if revision == "head" and current_revision(conn) == HEAD:
            return
    try:
        _upgrade(engine, revision)
    except sa.exc.DBAPIError:
        # another process created or upgraded the store at the same moment: fine if it is now where we wanted
        with engine.connect() as conn:
            if not (revision == "head" and current_revision(conn) == HEAD):
                raise


def _upgrade(engine: sa.engine.Engine, revision: str) -> None:
    from alembic import command

    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":  # one migrating process at a time per database
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(7243190001)"))
        config = _config(conn)
        if current_revision(conn) is None and sa.inspect(conn).has_table("paperboard_runs"):
            command.stamp(config, UNVERSIONED)
        command.upgrade(config, revision)


def downgrade(engine: sa.engine.Engine, revision: str) -> None:
    from alembic import command

    with engine.begin() as conn:
        command.downgrade(_config(conn), revision)
