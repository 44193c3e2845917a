"""What a worker taking a partition over needs from the one before: the detector state of the
partition's devices as of a stream sequence (a snapshot), and how far the partition's alarm events
are recorded (its mark). PostgreSQL only (clustered deployments).

The takeover (docs/scale.md, "Leases and takeover"): load the partition's snapshot and restore its
devices' units from it, replay the stream from the snapshot's seq + 1, and skip the alarm events of
messages up to the mark, which are recorded already; readings replayed are stored by key, so
storing them again is a no-op.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import delete, exists, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker

from storage.cluster_models import ClusterSnapshotRow, PartitionMarkRow, PartitionSnapshotRow
from storage.marks import PartitionMark

SERVER_NOW = text("SELECT extract(epoch FROM clock_timestamp())::float8")


def save_snapshot(sessions: sessionmaker[Session], owner: str, blob: bytes, seqs: Mapping[int, int]) -> int:
    """Store one snapshot of `owner`'s detectors holding the partitions of `seqs` (partition ->
    the stream sequence the state includes) and point those partitions at it, in one transaction.

    A partition's pointer never moves back: a snapshot at an older seq than the one recorded (a
    former owner's late save) leaves it alone; one at the same seq replaces it (same messages, newer
    state, e.g. an alarm a person cleared since). Snapshots no partition points at any more are
    deleted. Returns the new snapshot's id.
    """
    with sessions.begin() as s:
        now = float(s.execute(SERVER_NOW).scalar_one())
        row = ClusterSnapshotRow(owner=owner, saved_at=now, blob=blob)
        s.add(row)
        s.flush()
        for p in sorted(seqs):  # ascending, as every writer: no lock cycles between two savers
            stmt = insert(PartitionSnapshotRow).values(
                partition=p, snapshot_id=row.id, seq=seqs[p], saved_at=now
            )
            s.execute(
                stmt.on_conflict_do_update(
                    index_elements=["partition"],
                    set_={"snapshot_id": row.id, "seq": seqs[p], "saved_at": now},
                    where=PartitionSnapshotRow.seq <= stmt.excluded.seq,
                )
            )
        # SKIP LOCKED: two savers deleting the same orphans never wait on each other (the one
        # that skips a row leaves it to the other, or to the next save).
        orphans = (
            select(ClusterSnapshotRow.id)
            .where(~exists().where(PartitionSnapshotRow.snapshot_id == ClusterSnapshotRow.id))
            .with_for_update(skip_locked=True)
        )
        s.execute(
            delete(ClusterSnapshotRow)
            .where(ClusterSnapshotRow.id.in_(orphans.scalar_subquery()))
            .execution_options(synchronize_session=False)
        )
        return row.id


def load_snapshot(sessions: sessionmaker[Session], partition: int) -> tuple[bytes, int] | None:
    """The latest snapshot holding `partition` and the seq it was taken at; None if there is none
    (the partition's devices then start cold and the stream is replayed from its start)."""
    with sessions() as s:
        found = s.execute(
            select(ClusterSnapshotRow.blob, PartitionSnapshotRow.seq)
            .join(ClusterSnapshotRow, ClusterSnapshotRow.id == PartitionSnapshotRow.snapshot_id)
            .where(PartitionSnapshotRow.partition == partition)
        ).first()
    return None if found is None else (bytes(found[0]), int(found[1]))


def record_marks(session: Session, seqs: Mapping[int, int]) -> None:
    """Inside the transaction that records alarm events: partition -> the last stream seq whose
    events that transaction records. A mark only rises (greatest of the two), so a late or
    replayed write never moves it back (the alarm write passes the same `PartitionMark` to
    `AlarmService.apply`)."""
    PartitionMark(seqs).write(session, 0.0)


def marks(sessions: sessionmaker[Session], partitions: Iterable[int]) -> dict[int, int]:
    """Each partition's mark: the last stream seq whose alarm events are recorded (0: none)."""
    wanted = sorted(set(partitions))
    query = select(PartitionMarkRow.partition, PartitionMarkRow.alarm_seq).where(
        PartitionMarkRow.partition.in_(wanted)
    )
    with sessions() as s:
        found = {int(p): int(seq) for p, seq in s.execute(query)}
    return {p: found.get(p, 0) for p in wanted}
