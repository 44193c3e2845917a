"""accounts: users, login sessions and API keys; audit records the actor's roles and address

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=100), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("demo", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("password_changed_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("user", sa.String(length=64), nullable=True),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("hint", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=True),
        sa.Column("last_used_at", sa.Float(), nullable=True),
        sa.Column("revoked_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("digest"),
    )
    op.create_index("ix_tokens_user", "tokens", ["user"])
    with op.batch_alter_table("audit") as batch:
        batch.alter_column("action", type_=sa.String(length=64), existing_type=sa.String(length=32))
        batch.alter_column("subject", type_=sa.String(length=400), existing_type=sa.String(length=100))
        batch.add_column(sa.Column("role", sa.String(length=100), nullable=False, server_default=""))
        batch.add_column(sa.Column("source", sa.String(length=100), nullable=False, server_default=""))
    op.create_index("ix_audit_actor", "audit", ["actor"])


def downgrade() -> None:
    op.drop_index("ix_audit_actor", table_name="audit")
    with op.batch_alter_table("audit") as batch:
        batch.drop_column("source")
        batch.drop_column("role")
        batch.alter_column("subject", type_=sa.String(length=100), existing_type=sa.String(length=400))
        batch.alter_column("action", type_=sa.String(length=32), existing_type=sa.String(length=64))
    op.drop_index("ix_tokens_user", table_name="tokens")
    op.drop_table("tokens")
    op.drop_table("users")
