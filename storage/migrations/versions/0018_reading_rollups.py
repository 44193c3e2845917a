"""reading_rollups: count, sum, least and greatest of each series per 64 s, for long histories

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reading_rollups",
        sa.Column("device_id", sa.String(128), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("t0", sa.Float(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("total", sa.Float(), nullable=False),
        sa.Column("low", sa.Float(), nullable=False),
        sa.Column("high", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("device_id", "channel", "t0"),
    )
    if op.get_bind().dialect.name == "postgresql":
        # The readings stored so far (clustered telemetry is PostgreSQL's alone): from here on
        # every write keeps the rollups with its readings (storage/pg_telemetry.py).
        op.execute(
            "INSERT INTO reading_rollups(device_id, channel, t0, n, total, low, high) "
            "SELECT device_id, channel, floor(ts / 64) * 64, count(*), sum(value), min(value), max(value) "
            "FROM readings GROUP BY 1, 2, 3"
        )


def downgrade() -> None:
    op.drop_table("reading_rollups")
