"""incidents: alarms grouped into one incident each, its timeline, incident notices in the outbox

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False, index=True),
        sa.Column("category", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("site", sa.String(64), nullable=False, index=True),
        sa.Column("group_key", sa.String(400), nullable=False, index=True),
        sa.Column("place", sa.String(400), nullable=False),
        sa.Column("places", sa.JSON(), nullable=False),
        sa.Column("zones", sa.JSON(), nullable=False),
        sa.Column("floors", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("first_alarm_id", sa.Integer(), nullable=False),
        sa.Column("alarm_count", sa.Integer(), nullable=False),
        sa.Column("device_count", sa.Integer(), nullable=False),
        sa.Column("active_count", sa.Integer(), nullable=False),
        sa.Column("zone_confirmed_ts", sa.Float(), nullable=True),
        sa.Column("devices", sa.JSON(), nullable=False),
        sa.Column("first_ts", sa.Float(), nullable=False, index=True),
        sa.Column("last_ts", sa.Float(), nullable=False),
        sa.Column("opened_ts", sa.Float(), nullable=False),
        sa.Column("fire_ts", sa.Float(), nullable=True),
        sa.Column("acked_ts", sa.Float(), nullable=True),
        sa.Column("acked_by", sa.String(100), nullable=True),
        sa.Column("ack_note", sa.Text(), nullable=False),
        sa.Column("verification", sa.String(16), nullable=False),
        sa.Column("verifier", sa.String(100), nullable=True),
        sa.Column("verifying_ts", sa.Float(), nullable=True),
        sa.Column("verdict_ts", sa.Float(), nullable=True),
        sa.Column("verdict_by", sa.String(100), nullable=True),
        sa.Column("cause", sa.String(16), nullable=True),
        sa.Column("verdict_note", sa.Text(), nullable=False),
        sa.Column("verify_due_ts", sa.Float(), nullable=True, index=True),
        sa.Column("verify_overdue_ts", sa.Float(), nullable=True),
        sa.Column("call_119_ts", sa.Float(), nullable=True),
        sa.Column("call_119_by", sa.String(100), nullable=True),
        sa.Column("call_119_note", sa.Text(), nullable=False),
        sa.Column("reset_ts", sa.Float(), nullable=True),
        sa.Column("reset_by", sa.String(100), nullable=True),
        sa.Column("ended_ts", sa.Float(), nullable=True),
        sa.Column("closed_ts", sa.Float(), nullable=True),
        sa.Column("notified", sa.Boolean(), nullable=False),
        sa.Column("escalation", sa.String(64), nullable=True),
        sa.Column("escalation_step", sa.Integer(), nullable=False),
        sa.Column("escalate_at", sa.Float(), nullable=True, index=True),
        sa.Column("remind_at", sa.Float(), nullable=True, index=True),
    )
    op.create_table(
        "incident_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("incident_id", sa.Integer(), sa.ForeignKey("incidents.id"), nullable=False, index=True),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("alarm_id", sa.Integer(), nullable=True),
        sa.Column("targets", sa.JSON(), nullable=False),
        sa.Column("after", sa.JSON(), nullable=False),
    )
    with op.batch_alter_table("alarms") as batch:
        batch.add_column(sa.Column("incident_id", sa.Integer(), nullable=True))
        batch.create_index("ix_alarms_incident_id", ["incident_id"])
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("incident_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("replaceable", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.create_index("ix_outbox_incident_id", ["incident_id"])


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_index("ix_outbox_incident_id")
        batch.drop_column("replaceable")
        batch.drop_column("incident_id")
    with op.batch_alter_table("alarms") as batch:
        batch.drop_index("ix_alarms_incident_id")
        batch.drop_column("incident_id")
    op.drop_table("incident_events")
    op.drop_table("incidents")
