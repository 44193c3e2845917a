"""push outbox and delivery log

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("route", sa.String(length=64), nullable=False),
        sa.Column("alarm_id", sa.Integer(), nullable=False),
        sa.Column("created_ts", sa.Float(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_ts", sa.Float(), nullable=False),
        sa.Column("delivered_ts", sa.Float(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["alarm_id"], ["alarms.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_outbox_alarm_id", "outbox", ["alarm_id"], unique=False)
    op.create_index("ix_outbox_due", "outbox", ["delivered_ts", "next_ts"], unique=False)
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("outbox_id", sa.Integer(), nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["outbox_id"], ["outbox.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_deliveries_outbox_id", "deliveries", ["outbox_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_deliveries_outbox_id", table_name="deliveries")
    op.drop_table("deliveries")
    op.drop_index("ix_outbox_due", table_name="outbox")
    op.drop_index("ix_outbox_alarm_id", table_name="outbox")
    op.drop_table("outbox")
