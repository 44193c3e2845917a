"""cluster: worker heartbeats, partition leases, marks and snapshots, and shared telemetry

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cluster_workers",
        sa.Column("worker_id", sa.String(100), primary_key=True),
        sa.Column("api_url", sa.String(400), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("seen_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_cluster_workers_seen_at", "cluster_workers", ["seen_at"])
    op.create_table(
        "partition_leases",
        sa.Column("partition", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("owner", sa.String(100), nullable=True),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
    )
    op.create_table(
        "partition_marks",
        sa.Column("partition", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("alarm_seq", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("stored_seq", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.create_table(
        "cluster_snapshots",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("owner", sa.String(100), nullable=False),
        sa.Column("saved_at", sa.Float(), nullable=False),
        sa.Column("blob", sa.LargeBinary(), nullable=False),
    )
    op.create_table(
        "partition_snapshots",
        sa.Column("partition", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("snapshot_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("saved_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_partition_snapshots_snapshot_id", "partition_snapshots", ["snapshot_id"])
    op.create_table(
        "readings",
        sa.Column("device_id", sa.String(128), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("device_id", "channel", "ts"),
    )
    op.create_table(
        "device_event_log",
        sa.Column("device_id", sa.String(128), nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("code_key", sa.BigInteger(), nullable=False),
        sa.Column("channel_key", sa.String(64), nullable=False),
        sa.Column("received", sa.Float(), nullable=False),
        sa.Column("frame", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("device_id", "ts", "kind", "code_key", "channel_key"),
    )


def downgrade() -> None:
    op.drop_table("device_event_log")
    op.drop_table("readings")
    op.drop_index("ix_partition_snapshots_snapshot_id", "partition_snapshots")
    op.drop_table("partition_snapshots")
    op.drop_table("cluster_snapshots")
    op.drop_table("partition_marks")
    op.drop_table("partition_leases")
    op.drop_index("ix_cluster_workers_seen_at", "cluster_workers")
    op.drop_table("cluster_workers")
