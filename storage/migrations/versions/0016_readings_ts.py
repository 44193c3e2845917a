"""readings, device_event_log: an index by time, for retention's deletes

Revision ID: 0016
Revises: 0015
"""

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_readings_ts", "readings", ["ts"])
    op.create_index("ix_device_event_log_ts", "device_event_log", ["ts"])


def downgrade() -> None:
    op.drop_index("ix_device_event_log_ts", "device_event_log")
    op.drop_index("ix_readings_ts", "readings")
