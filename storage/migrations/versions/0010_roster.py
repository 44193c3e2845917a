"""roster: people's push addresses, duty shifts and their members, and who each push went to

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "person_contacts",
        sa.Column("user", sa.String(64), sa.ForeignKey("users.name"), primary_key=True),
        sa.Column("phone", sa.String(32), nullable=False),
        sa.Column("addresses", sa.JSON(), nullable=False),
        sa.Column("updated_ts", sa.Float(), nullable=False),
        sa.Column("updated_by", sa.String(100), nullable=False),
    )
    op.create_table(
        "roster_shifts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("start_ts", sa.Float(), nullable=False),
        sa.Column("end_ts", sa.Float(), nullable=False),
        sa.Column("note", sa.String(200), nullable=False),
        sa.Column("updated_ts", sa.Float(), nullable=False),
        sa.Column("updated_by", sa.String(100), nullable=False),
    )
    op.create_index("ix_roster_shifts_start_ts", "roster_shifts", ["start_ts"])
    op.create_index("ix_roster_shifts_end_ts", "roster_shifts", ["end_ts"])
    op.create_table(
        "roster_members",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "shift_id", sa.Integer(), sa.ForeignKey("roster_shifts.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("user", sa.String(64), sa.ForeignKey("users.name"), nullable=False),
        sa.Column("role", sa.String(64), nullable=False),
        sa.UniqueConstraint("shift_id", "user", name="uq_roster_members_shift_user"),
    )
    op.create_index("ix_roster_members_shift_id", "roster_members", ["shift_id"])
    op.add_column("deliveries", sa.Column("recipients", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("deliveries", "recipients")
    op.drop_index("ix_roster_members_shift_id", table_name="roster_members")
    op.drop_table("roster_members")
    op.drop_index("ix_roster_shifts_end_ts", table_name="roster_shifts")
    op.drop_index("ix_roster_shifts_start_ts", table_name="roster_shifts")
    op.drop_table("roster_shifts")
    op.drop_table("person_contacts")
