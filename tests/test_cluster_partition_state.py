"""The state a takeover needs, on a real PostgreSQL: each partition's latest detector snapshot and
the stream seq it was taken at, and how far its alarm events are recorded (a mark that only rises)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from detectors.engine import Engine
from detectors.samples import Samples
from firewatch.cluster.partition_state import load_snapshot, marks, record_marks, save_snapshot
from ingest.index import DeviceIndex
from storage.cluster_models import ClusterSnapshotRow, PartitionSnapshotRow
from storage.db import make_engine, open_store
from tests.conftest import PROFILES, small_registry

pytestmark = pytest.mark.integration

T0 = 1_800_000_000.0


@pytest.fixture
def sessions(postgres_url: str) -> sessionmaker[Session]:
    _, made = open_store(postgres_url)
    return made


def stored_snapshots(sessions: sessionmaker[Session]) -> int:
    with sessions() as s:
        return int(s.scalar(select(func.count()).select_from(ClusterSnapshotRow)) or 0)


def test_marks_only_rise_and_a_partition_without_one_is_at_zero(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        record_marks(s, {0: 10, 1: 5})
    with sessions.begin() as s:
        record_marks(s, {0: 7, 1: 9})  # a late or replayed write for partition 0
    assert marks(sessions, [2, 1, 0]) == {0: 10, 1: 9, 2: 0}


def test_a_mark_is_part_of_the_transaction_that_records_the_events(sessions: sessionmaker[Session]) -> None:
    def failing_alarm_write() -> None:
        with sessions.begin() as s:
            record_marks(s, {3: 40})
            raise RuntimeError("the alarm write failed")

    with pytest.raises(RuntimeError):
        failing_alarm_write()
    assert marks(sessions, [3]) == {3: 0}


def test_snapshots_round_trip_and_one_no_partition_points_at_is_deleted(
    sessions: sessionmaker[Session],
) -> None:
    assert load_snapshot(sessions, 0) is None
    save_snapshot(sessions, "w1", b"first", {0: 100, 1: 100})
    save_snapshot(sessions, "w2", b"second", {0: 150})
    assert load_snapshot(sessions, 0) == (b"second", 150)
    assert load_snapshot(sessions, 1) == (b"first", 100)
    assert stored_snapshots(sessions) == 2
    save_snapshot(sessions, "w2", b"third", {1: 120})  # nothing points at "first" any more
    assert load_snapshot(sessions, 1) == (b"third", 120)
    assert stored_snapshots(sessions) == 2


def test_a_snapshot_never_moves_a_partition_back_to_an_older_seq(sessions: sessionmaker[Session]) -> None:
    save_snapshot(sessions, "new-owner", b"new", {0: 150})
    save_snapshot(sessions, "former-owner", b"late", {0: 120})  # a fenced-out owner's late save
    assert load_snapshot(sessions, 0) == (b"new", 150)
    assert stored_snapshots(sessions) == 1  # the late one was never pointed at: gone at once
    save_snapshot(sessions, "new-owner", b"newer state", {0: 150})  # same messages, newer state
    assert load_snapshot(sessions, 0) == (b"newer state", 150)


def test_a_partitions_devices_resume_from_a_snapshot_another_worker_saved(
    sessions: sessionmaker[Session],
) -> None:
    index = DeviceIndex.build(small_registry(), PROFILES)
    previous = Engine(index, start=T0)
    slot = np.array([index.slot("smk-1-1", "smoke")], dtype=np.int32)
    previous.process_samples(Samples(slot, np.array([T0]), np.array([0.3])))
    save_snapshot(sessions, "w1", previous.snapshot_bytes(), {4: 77})
    found = load_snapshot(sessions, 4)
    assert found is not None
    blob, seq = found
    taker = Engine(index, start=T0)
    assert taker.restore_bytes(blob, devices=["smk-1-1"]) > 0
    assert taker.is_active("smk-1-1", "smoke.alarm")
    assert seq == 77  # the replay starts after it


def test_owners_saving_at_once_leave_every_partition_at_its_newest_seq_pointing_at_a_stored_snapshot(
    sessions: sessionmaker[Session], postgres_url: str
) -> None:
    # During a hand-over the former and the new owner may both save snapshots of the same partitions.
    saves = 25
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def owner(name: str, offset: int) -> None:
        own = sessionmaker(make_engine(postgres_url))  # its own connections, as a worker's
        try:
            start.wait()
            for i in range(saves):
                seq = 10 * i + offset
                save_snapshot(own, name, f"{name}@{seq}".encode(), {p: seq for p in range(4)})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=owner, args=(name, offset)) for name, offset in (("a", 0), ("b", 5))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    newest = 10 * (saves - 1) + 5
    for p in range(4):
        assert load_snapshot(sessions, p) == (f"b@{newest}".encode(), newest)
    with sessions() as s:
        pointed = set(s.scalars(select(PartitionSnapshotRow.snapshot_id)))
        stored = set(s.scalars(select(ClusterSnapshotRow.id)))
    assert pointed <= stored
