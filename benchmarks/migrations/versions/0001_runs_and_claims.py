"""The first schema: run records as JSON text with created_at as text, and the run claims.

Revision ID: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "paperboard_runs",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("board", sa.String(128), nullable=False, index=True),
        sa.Column("model", sa.String(128), nullable=False, index=True),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.Column("config_hash", sa.String(32), nullable=False),
        sa.Column("data_hash", sa.String(32)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("tuned", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("record", sa.Text, nullable=False),
    )
    op.create_table(
        "paperboard_claims",
        sa.Column("identity", sa.String(64), primary_key=True),
        sa.Column("board", sa.String(128), nullable=False),
        sa.Column("what", sa.String(256), nullable=False),
        sa.Column("host", sa.String(256), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("token", sa.String(32), nullable=False),
        sa.Column("heartbeat", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("paperboard_claims")
    op.drop_table("paperboard_runs")
