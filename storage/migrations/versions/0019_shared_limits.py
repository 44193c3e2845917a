"""shared_limits: sign-in failures and rate-limit admissions a cluster's workers count together

Revision ID: 0019
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sign_in_failures",
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last", sa.Float(), nullable=False),
        sa.Column("blocked_until", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "name", "address"),
    )
    op.create_index("ix_sign_in_failures_kind_last", "sign_in_failures", ["kind", "last"])
    op.create_table(
        "rate_limits",
        sa.Column("scope", sa.String(40), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("times", ARRAY(sa.Float()).with_variant(sa.JSON(), "sqlite"), nullable=False),
        sa.Column("admitted", sa.Boolean(), nullable=False),
        sa.Column("last_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "key"),
    )
    op.create_index("ix_rate_limits_scope_last_at", "rate_limits", ["scope", "last_at"])


def downgrade() -> None:
    op.drop_index("ix_rate_limits_scope_last_at", "rate_limits")
    op.drop_table("rate_limits")
    op.drop_index("ix_sign_in_failures_kind_last", "sign_in_failures")
    op.drop_table("sign_in_failures")
