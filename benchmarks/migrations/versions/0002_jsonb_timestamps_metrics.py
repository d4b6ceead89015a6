"""Queryable records: on PostgreSQL the record becomes JSONB and created_at a timestamp with time zone; on every
database a long metrics table (run_id, split, metric, value, with board, model and seed) indexed by (board, model,
metric), filled from the records already stored.

Revision ID: 0002
"""
import json
import math

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

runs = sa.table("paperboard_runs", sa.column("run_id", sa.String), sa.column("record", sa.Text))


def _finite(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def upgrade() -> None:
    bind = op.get_bind()
    if sa.inspect(bind).has_table("paperboard_metrics"):  # an interrupted earlier attempt (SQLite DDL is not
        op.drop_table("paperboard_metrics")               # transactional): the table is derived, so rebuild it
    metrics = op.create_table(
        "paperboard_metrics",
        sa.Column("run_id", sa.String(64), sa.ForeignKey("paperboard_runs.run_id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("split", sa.String(16), primary_key=True),
        sa.Column("metric", sa.String(128), primary_key=True),
        sa.Column("value", sa.Float),
        sa.Column("board", sa.String(128), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("seed", sa.Integer, nullable=False),
    )
    op.create_index("ix_paperboard_metrics_board_model_metric", "paperboard_metrics", ["board", "model", "metric"])
    records = [json.loads(text) for _, text in bind.execute(sa.select(runs.c.run_id, runs.c.record))]
    rows = [{"run_id": r["run_id"], "board": r["board"], "model": r["model"], "seed": int(r["seed"]), "split": split,
             "metric": metric, "value": float(value) if math.isfinite(value) else None}
            for r in records for split, values in (r.get("metrics") or {}).items() if isinstance(values, dict)
            for metric, value in values.items() if isinstance(value, (int, float)) and not isinstance(value, bool)]
    if rows:
        op.bulk_insert(metrics, rows)
    if bind.dialect.name == "postgresql":
        # JSON text may hold NaN, which JSONB refuses: the records are rewritten with null in its place
        op.add_column("paperboard_runs", sa.Column("record_jsonb", postgresql.JSONB))
        target = sa.table("paperboard_runs", sa.column("run_id", sa.String), sa.column("record_jsonb", postgresql.JSONB))
        for record in records:
            bind.execute(target.update().where(target.c.run_id == record["run_id"]).values(record_jsonb=_finite(record)))
        op.drop_column("paperboard_runs", "record")
        op.alter_column("paperboard_runs", "record_jsonb", new_column_name="record", nullable=False)
        op.execute("ALTER TABLE paperboard_runs ALTER COLUMN created_at TYPE TIMESTAMP WITH TIME ZONE "
                   "USING created_at::timestamptz")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("ALTER TABLE paperboard_runs ALTER COLUMN record TYPE TEXT USING record::text")
        op.execute("ALTER TABLE paperboard_runs ALTER COLUMN created_at TYPE VARCHAR(40) USING "
                   "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"+00:00\"')")
    op.drop_index("ix_paperboard_metrics_board_model_metric", table_name="paperboard_metrics")
    op.drop_table("paperboard_metrics")
