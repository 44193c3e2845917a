"""drills: declared drills (演练) and the drill an alarm and an incident were raised in

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "drills",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("places", sa.JSON(), nullable=False),
        sa.Column("start_ts", sa.Float(), nullable=False),
        sa.Column("end_ts", sa.Float(), nullable=False),
        sa.Column("routes", sa.JSON(), nullable=False),
        sa.Column("urls", sa.JSON(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_ts", sa.Float(), nullable=False),
        sa.Column("ended_ts", sa.Float(), nullable=True),
        sa.Column("ended_by", sa.String(100), nullable=True),
        sa.Column("end_note", sa.Text(), nullable=False),
    )
    op.create_index("ix_drills_site", "drills", ["site"])
    op.create_index("ix_drills_start_ts", "drills", ["start_ts"])
    op.create_index("ix_drills_end_ts", "drills", ["end_ts"])
    with op.batch_alter_table("alarms") as batch:
        batch.add_column(sa.Column("drill_id", sa.Integer(), nullable=True))
        batch.create_index("ix_alarms_drill_id", ["drill_id"])
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("drill_id", sa.Integer(), nullable=True))
        batch.create_index("ix_incidents_drill_id", ["drill_id"])


def downgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.drop_index("ix_incidents_drill_id")
        batch.drop_column("drill_id")
    with op.batch_alter_table("alarms") as batch:
        batch.drop_index("ix_alarms_drill_id")
        batch.drop_column("drill_id")
    op.drop_index("ix_drills_end_ts", "drills")
    op.drop_index("ix_drills_start_ts", "drills")
    op.drop_index("ix_drills_site", "drills")
    op.drop_table("drills")
