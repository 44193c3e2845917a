"""The tables of a clustered deployment (docs/scale.md): worker heartbeats, partition leases, how
far each partition's alarms are recorded, detector snapshots per partition, and the telemetry that
goes to PostgreSQL instead of a worker's local file, the sign-in failures and the rate limit's
admissions the workers count together.

A module of its own, as the duty and drill tables are: storage/models.py keeps the alarm path's
tables. The tables exist on every store (one migration chain) but are used only when clustered.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base


class ClusterWorkerRow(Base):
    """A live worker says so here every heartbeat; one not seen for a lease's length is gone.
    Times are the database server's clock, so workers' clocks never decide ownership."""

    __tablename__ = "cluster_workers"
    worker_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    api_url: Mapped[str] = mapped_column(String(400), default="")
    started_at: Mapped[float] = mapped_column(Float)
    seen_at: Mapped[float] = mapped_column(Float, index=True)


class PartitionLeaseRow(Base):
    """Who owns a partition, until when (server clock), and the how-many-th claim this is: the
    epoch rises with every change of owner, so a worker whose lease was taken knows it."""

    __tablename__ = "partition_leases"
    partition: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    owner: Mapped[str | None] = mapped_column(String(100))
    epoch: Mapped[int] = mapped_column(BigInteger, default=0)
    expires_at: Mapped[float] = mapped_column(Float, default=0.0)


class PartitionMarkRow(Base):
    """The last stream sequence of the partition whose alarm events are recorded, written in the
    same transaction as those events: a worker taking the partition over replays what follows
    the snapshot, and events of messages up to the mark are not raised again."""

    __tablename__ = "partition_marks"
    partition: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    alarm_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    # The last stream sequence whose telemetry the owner has stored (written every heartbeat, so it
    # may lag): a takeover stores again what follows it, by key, so no reading is lost.
    stored_seq: Mapped[int] = mapped_column(BigInteger, default=0)


class ClusterSnapshotRow(Base):
    """One detector snapshot of a worker (np.savez bytes of `Engine.snapshot()`)."""

    __tablename__ = "cluster_snapshots"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(100))
    saved_at: Mapped[float] = mapped_column(Float)
    blob: Mapped[bytes] = mapped_column(LargeBinary)


class PartitionSnapshotRow(Base):
    """The latest snapshot holding a partition's detector state, and the stream sequence it was
    taken at (every message of the partition up to it is in the state and stored)."""

    __tablename__ = "partition_snapshots"
    partition: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    snapshot_id: Mapped[int] = mapped_column(Integer, index=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    saved_at: Mapped[float] = mapped_column(Float)


class ReadingRow(Base):
    """A sample, keyed by what it is (device, channel, timestamp): storing one twice — a replay after
    a takeover, a device's resend — is a no-op, never a second row."""

    __tablename__ = "readings"
    # By time too: retention deletes the oldest rows a chunk at a time (storage/pg_telemetry.py),
    # each chunk found by this index rather than a scan past the rows deleted before. Samples
    # arrive roughly in time order, so its inserts land on its rightmost pages.
    __table_args__ = (PrimaryKeyConstraint("device_id", "channel", "ts"), Index("ix_readings_ts", "ts"))
    device_id: Mapped[str] = mapped_column(String(128))
    channel: Mapped[str] = mapped_column(String(64))
    ts: Mapped[float] = mapped_column(Float)
    value: Mapped[float] = mapped_column(Float)


class ReadingRollupRow(Base):
    """What `readings` holds of one series in one 64-second interval [t0, t0 + 64): how many
    samples, their sum, least and greatest, kept with the readings in the same transaction
    (storage/pg_telemetry.py), so a long history merges these instead of visiting every sample.
    64 s, a power of two: ts / 64 is exact in floating point, so which interval a sample is in
    never depends on rounding."""

    __tablename__ = "reading_rollups"
    __table_args__ = (PrimaryKeyConstraint("device_id", "channel", "t0"),)
    device_id: Mapped[str] = mapped_column(String(128))
    channel: Mapped[str] = mapped_column(String(64))
    t0: Mapped[float] = mapped_column(Float)
    n: Mapped[int] = mapped_column(Integer)
    total: Mapped[float] = mapped_column(Float)
    low: Mapped[float] = mapped_column(Float)
    high: Mapped[float] = mapped_column(Float)


class DeviceEventLogRow(Base):
    """A device's logged event (storage.telemetry.EventRecord), keyed like a reading."""

    __tablename__ = "device_event_log"
    __table_args__ = (
        PrimaryKeyConstraint("device_id", "ts", "kind", "code_key", "channel_key"),
        Index("ix_device_event_log_ts", "ts"),  # retention, as readings'
    )
    device_id: Mapped[str] = mapped_column(String(128))
    ts: Mapped[float] = mapped_column(Float)
    kind: Mapped[str] = mapped_column(String(32))
    code_key: Mapped[int] = mapped_column(BigInteger)  # the code, -1 for none (keys cannot be NULL)
    channel_key: Mapped[str] = mapped_column(String(64))  # the channel, "" for none
    received: Mapped[float] = mapped_column(Float)
    frame: Mapped[str | None] = mapped_column(Text)


class SharedRegistryRow(Base):
    """The cluster's registry, whole (docs/scale.md, "Registry changes"): one row, the document a
    worker's registry file holds (JSON, zlib-compressed), numbered by change. The `places` and
    `devices` mirror cannot stand for it: it leaves out what only detection and the console use
    (floor-plan positions, gateways)."""

    __tablename__ = "shared_registry"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(BigInteger)  # rises by one with every change
    fingerprint: Mapped[str] = mapped_column(String(64))  # of the document's text
    changed_at: Mapped[float] = mapped_column(Float)  # the changing worker's clock (Unix time)
    changed_by: Mapped[str] = mapped_column(String(100))
    document: Mapped[bytes] = mapped_column(LargeBinary)


class SignInFailureRow(Base):
    """A sign-in throttle key's count (accounts/throttle.py), shared by a cluster's workers
    (accounts/shared_throttle.py): `kind` is "pair" (name and address) or "address" (name "")."""

    __tablename__ = "sign_in_failures"
    __table_args__ = (
        PrimaryKeyConstraint("kind", "name", "address"),
        Index("ix_sign_in_failures_kind_last", "kind", "last"),  # the sweep finds the oldest by it
    )
    kind: Mapped[str] = mapped_column(String(8))
    name: Mapped[str] = mapped_column(Text)
    address: Mapped[str] = mapped_column(Text)
    failures: Mapped[int] = mapped_column(Integer)
    last: Mapped[float] = mapped_column(Float)  # the counting worker's clock (Unix time)
    blocked_until: Mapped[float] = mapped_column(Float)


# PostgreSQL's array of float8; the table exists on SQLite too (one migration chain), never used there.
TIMES = ARRAY(Float()).with_variant(JSON(), "sqlite")


class RateLimitRow(Base):
    """The admissions within its window of one key of a rate limit (api/rate_limit.py), shared by a
    cluster's workers: the admission times, oldest first, and whether the last call was admitted
    (each call is one INSERT ... ON CONFLICT DO UPDATE ... RETURNING)."""

    __tablename__ = "rate_limits"
    __table_args__ = (
        PrimaryKeyConstraint("scope", "key"),
        Index("ix_rate_limits_scope_last_at", "scope", "last_at"),  # the sweep finds the quiet by it
    )
    scope: Mapped[str] = mapped_column(String(40))  # which limit: "staff_report"
    key: Mapped[str] = mapped_column(Text)  # the client address
    times: Mapped[list[float]] = mapped_column(TIMES)
    admitted: Mapped[bool] = mapped_column(Boolean)
    last_at: Mapped[float] = mapped_column(Float)  # the latest call (Unix time)
