"""ticket loop: assignment and loop times, overdue flag, re-inspection, comments, evidence,
patrol rounds, plan and patrol schedules

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TICKET_COLUMNS = (
    sa.Column("subject", sa.String(length=200), nullable=True),
    sa.Column("assignee", sa.String(length=100), nullable=True),
    sa.Column("assigned_at", sa.Float(), nullable=True),
    sa.Column("rectified_at", sa.Float(), nullable=True),
    sa.Column("verified_at", sa.Float(), nullable=True),
    sa.Column("overdue", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("overdue_at", sa.Float(), nullable=True),
    sa.Column("ready_at", sa.Float(), nullable=True),
    sa.Column("plan", sa.String(length=64), nullable=True),
    sa.Column("patrol_round_id", sa.Integer(), nullable=True),
)


def upgrade() -> None:
    op.create_table(
        "patrol_rounds",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("route", sa.String(length=64), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("inspectors", sa.String(length=200), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.Float(), nullable=False),
        sa.Column("visits", sa.JSON(), nullable=False),
        sa.Column("missed", sa.JSON(), nullable=False),
        sa.Column("problems", sa.Integer(), nullable=False),
        sa.Column("recorded_by", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_patrol_rounds_route", "patrol_rounds", ["route"], unique=False)
    op.create_index("ix_patrol_rounds_site", "patrol_rounds", ["site"], unique=False)
    op.create_index("ix_patrol_rounds_finished_at", "patrol_rounds", ["finished_at"], unique=False)

    with op.batch_alter_table("tickets") as batch:
        for column in TICKET_COLUMNS:
            batch.add_column(column)
        batch.create_foreign_key("fk_tickets_patrol_round", "patrol_rounds", ["patrol_round_id"], ["id"])
    with op.batch_alter_table("ticket_events") as batch:
        batch.add_column(sa.Column("role", sa.String(length=16), nullable=False, server_default=""))
    op.create_index("ix_tickets_overdue", "tickets", ["overdue"], unique=False)
    # KPI reports select a period of tickets and alarms by when they were found / first raised.
    op.create_index("ix_tickets_created_at", "tickets", ["created_at"], unique=False)
    op.create_index("ix_alarms_first_ts", "alarms", ["first_ts"], unique=False)
    op.create_index(
        "uq_tickets_open_subject",
        "tickets",
        ["subject", "hazard_type"],
        unique=True,
        sqlite_where=sa.text("status != 'closed' AND subject IS NOT NULL"),
        postgresql_where=sa.text("status != 'closed' AND subject IS NOT NULL"),
    )
    # Tickets that already went through the loop get its times from their history.
    op.execute(
        "UPDATE tickets SET rectified_at = feedback_signed_at, "
        "verified_at = confirmed_at WHERE rectified_at IS NULL"
    )

    op.create_table(
        "ticket_comments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("author", sa.String(length=100), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_ticket_comments_ticket_id", "ticket_comments", ["ticket_id"], unique=False)
    op.create_table(
        "ticket_evidence",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("uploaded_by", sa.String(length=100), nullable=False),
        sa.Column("filename", sa.String(length=200), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_ticket_evidence_ticket_id", "ticket_evidence", ["ticket_id"], unique=False)
    op.create_table(
        "plan_runs",
        sa.Column("plan", sa.String(length=80), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("last_done", sa.Float(), nullable=True),
        sa.Column("next_due", sa.Float(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"]),
        sa.PrimaryKeyConstraint("plan", "site"),
    )


def downgrade() -> None:
    op.drop_table("plan_runs")
    op.drop_index("ix_ticket_evidence_ticket_id", table_name="ticket_evidence")
    op.drop_table("ticket_evidence")
    op.drop_index("ix_ticket_comments_ticket_id", table_name="ticket_comments")
    op.drop_table("ticket_comments")
    op.drop_index("uq_tickets_open_subject", table_name="tickets")
    op.drop_index("ix_alarms_first_ts", table_name="alarms")
    op.drop_index("ix_tickets_created_at", table_name="tickets")
    op.drop_index("ix_tickets_overdue", table_name="tickets")
    with op.batch_alter_table("ticket_events") as batch:
        batch.drop_column("role")
    with op.batch_alter_table("tickets") as batch:
        batch.drop_constraint("fk_tickets_patrol_round", type_="foreignkey")
        for column in reversed(TICKET_COLUMNS):
            batch.drop_column(column.name)
    op.drop_index("ix_patrol_rounds_finished_at", table_name="patrol_rounds")
    op.drop_index("ix_patrol_rounds_site", table_name="patrol_rounds")
    op.drop_index("ix_patrol_rounds_route", table_name="patrol_rounds")
    op.drop_table("patrol_rounds")
