"""report_codes: the staff hazard report QR codes, one token per place or device (storage/report_models.py)

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "report_codes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("token", sa.String(64), nullable=False, unique=True),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("place", sa.String(400), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("revoked_at", sa.Float(), nullable=True),
        sa.Column("revoked_by", sa.String(100), nullable=True),
        sa.Column("reports", sa.Integer(), nullable=False),
    )
    op.create_index("ix_report_codes_place", "report_codes", ["place"])
    op.create_index("ix_report_codes_device_id", "report_codes", ["device_id"])


def downgrade() -> None:
    op.drop_index("ix_report_codes_device_id", "report_codes")
    op.drop_index("ix_report_codes_place", "report_codes")
    op.drop_table("report_codes")
