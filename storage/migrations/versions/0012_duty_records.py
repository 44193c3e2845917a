"""duty_log and handovers: the control room's duty and handover records (GB 25506-2010)

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "duty_log",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("author", sa.String(100), nullable=False),
        sa.Column("author_name", sa.String(100), nullable=False),
        sa.Column("handover_id", sa.Integer(), nullable=True),
    )
    op.create_index("ix_duty_log_ts", "duty_log", ["ts"])
    op.create_index("ix_duty_log_kind", "duty_log", ["kind"])
    op.create_index("ix_duty_log_author", "duty_log", ["author"])
    op.create_index("ix_duty_log_handover_id", "duty_log", ["handover_id"])
    op.create_table(
        "handovers",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("shift_start", sa.Float(), nullable=False),
        sa.Column("started_ts", sa.Float(), nullable=False),
        sa.Column("outgoing", sa.String(100), nullable=False),
        sa.Column("outgoing_name", sa.String(100), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("incoming_expected", sa.String(100), nullable=True),
        sa.Column("snapshot", sa.JSON(), nullable=False),
        sa.Column("incoming", sa.String(100), nullable=True),
        sa.Column("incoming_name", sa.String(100), nullable=True),
        sa.Column("countersigned_ts", sa.Float(), nullable=True),
        sa.Column("countersigned_via", sa.String(16), nullable=True),
        sa.Column("incoming_note", sa.Text(), nullable=False),
    )
    op.create_index("ix_handovers_started_ts", "handovers", ["started_ts"])
    op.create_index("ix_handovers_countersigned_ts", "handovers", ["countersigned_ts"])


def downgrade() -> None:
    op.drop_table("handovers")
    op.drop_table("duty_log")
