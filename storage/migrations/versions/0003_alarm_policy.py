"""alarm policy: cleared-acknowledged state, escalation, flapping, shelving, maintenance, audit

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ALARM_COLUMNS = (
    sa.Column("department", sa.String(length=100), nullable=False, server_default=""),
    sa.Column("false_alarms", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("raised_ts", sa.Float(), nullable=True),
    sa.Column("escalation", sa.String(length=64), nullable=True),
    sa.Column("escalation_step", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("escalate_at", sa.Float(), nullable=True),
    sa.Column("remind_at", sa.Float(), nullable=True),
    sa.Column("flapping", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("maintenance_id", sa.Integer(), nullable=True),
    sa.Column("shelved_until", sa.Float(), nullable=True),
    sa.Column("shelved_by", sa.String(length=100), nullable=True),
    sa.Column("shelve_note", sa.Text(), nullable=True),
)


def upgrade() -> None:
    with op.batch_alter_table("alarms") as batch:
        for column in ALARM_COLUMNS:
            batch.add_column(column)
    op.execute("UPDATE alarms SET raised_ts = first_ts WHERE raised_ts IS NULL")
    op.execute("UPDATE alarms SET false_alarms = 1 WHERE false_alarm")
    with op.batch_alter_table("alarms") as batch:
        batch.alter_column("raised_ts", existing_type=sa.Float(), nullable=False)
    with op.batch_alter_table("alarm_events") as batch:
        batch.add_column(sa.Column("targets", sa.JSON(), nullable=False, server_default=sa.text("'[]'")))
        batch.add_column(sa.Column("held", sa.String(length=16), nullable=False, server_default=""))
    op.create_index("ix_alarms_escalate_at", "alarms", ["escalate_at"], unique=False)
    op.create_index("ix_alarms_remind_at", "alarms", ["remind_at"], unique=False)
    op.create_index("ix_alarms_flapping", "alarms", ["flapping"], unique=False)
    op.create_index("ix_alarms_maintenance_id", "alarms", ["maintenance_id"], unique=False)
    op.create_index("ix_alarms_shelved_until", "alarms", ["shelved_until"], unique=False)
    op.create_table(
        "maintenance",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("place", sa.String(length=400), nullable=True),
        sa.Column("device_ids", sa.JSON(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("start_ts", sa.Float(), nullable=False),
        sa.Column("end_ts", sa.Float(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_ts", sa.Float(), nullable=False),
        sa.Column("ended_ts", sa.Float(), nullable=True),
        sa.Column("ended_by", sa.String(length=100), nullable=True),
        sa.Column("end_note", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_maintenance_site", "maintenance", ["site"], unique=False)
    op.create_index("ix_maintenance_end_ts", "maintenance", ["end_ts"], unique=False)
    op.create_index("ix_maintenance_ended_ts", "maintenance", ["ended_ts"], unique=False)
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=100), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_ts", "audit", ["ts"], unique=False)
    op.create_index("ix_audit_subject", "audit", ["subject"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_audit_subject", table_name="audit")
    op.drop_index("ix_audit_ts", table_name="audit")
    op.drop_table("audit")
    op.drop_index("ix_maintenance_ended_ts", table_name="maintenance")
    op.drop_index("ix_maintenance_end_ts", table_name="maintenance")
    op.drop_index("ix_maintenance_site", table_name="maintenance")
    op.drop_table("maintenance")
    op.drop_index("ix_alarms_shelved_until", table_name="alarms")
    op.drop_index("ix_alarms_maintenance_id", table_name="alarms")
    op.drop_index("ix_alarms_flapping", table_name="alarms")
    op.drop_index("ix_alarms_remind_at", table_name="alarms")
    op.drop_index("ix_alarms_escalate_at", table_name="alarms")
    with op.batch_alter_table("alarm_events") as batch:
        batch.drop_column("held")
        batch.drop_column("targets")
    with op.batch_alter_table("alarms") as batch:
        for column in reversed(ALARM_COLUMNS):
            batch.drop_column(column.name)
