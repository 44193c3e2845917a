"""Telemetry in the shared PostgreSQL when clustered: readings and device events stored once however
often a batch is written (a replay after a takeover, a device's resend), read back as the local store
reads them, pruned by age; the journal and seq state stay in the worker's local file, which a
PostgreSQL failure leaves untouched."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import orjson
import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import DataError, OperationalError

from core.settings import MqttSettings, Settings
from firewatch.broker import free_port
from firewatch.faults import is_unavailable
from firewatch.service import Service
from ingest.envelope import Message
from storage import pg_telemetry
from storage.db import make_engine, open_store
from storage.pg_spool import ReadingBatch, Spool
from storage.pg_telemetry import ClusterTelemetry, SpoolStatus
from storage.telemetry import EventRecord, TelemetryStore
from tests.conftest import PROFILES, small_registry
from tests.mqtt_helpers import reading
from tests.postgres import PrivatePostgres

DEVICES = [f"smk-{i}" for i in range(20)]
CHANNELS = ("smoke", "temp")


def batch(
    b: int, per_batch: int = 100, t0: float = 1e9
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The b-th batch: `per_batch` samples over every slot in turn, one every 0.01 s, value = -ts."""
    i = np.arange(b * per_batch, (b + 1) * per_batch)
    slot = (i % (len(DEVICES) * len(CHANNELS))).astype(np.int32)
    ts = (t0 + i * 0.01).astype(np.float64)
    return slot, ts, -ts


@pytest.fixture
def engine(postgres_url: str) -> Iterator[Engine]:
    engine, _ = open_store(postgres_url)  # migrated, as the service opens it
    yield engine
    engine.dispose()


@pytest.fixture
def shared(engine: Engine, tmp_path: Path) -> Iterator[ClusterTelemetry]:
    store = ClusterTelemetry(TelemetryStore(tmp_path / "local.sqlite"), engine)
    store.bind_devices(DEVICES, [CHANNELS] * len(DEVICES))
    yield store
    store.close()


def local_store(path: Path) -> TelemetryStore:
    store = TelemetryStore(path)
    store.bind_devices(DEVICES, [CHANNELS] * len(DEVICES))
    return store


def test_a_batch_written_twice_is_stored_once(shared: ClusterTelemetry) -> None:
    for _ in range(2):  # the batch again: a replay after a takeover
        shared.write(*batch(0), [])
    slot, ts, value = batch(0)
    shared.write(slot[:10], ts[:10], value[:10], [])  # a device's resend of part of it
    assert shared.count() == 100
    h = shared.history("smk-1", "temp", 0, 2e9)  # slot 3
    np.testing.assert_array_equal(h.ts, ts[slot == 3])
    np.testing.assert_array_equal(h.value, value[slot == 3])


def test_history_reads_back_what_the_local_store_returns(shared: ClusterTelemetry, tmp_path: Path) -> None:
    local = local_store(tmp_path / "single.sqlite")
    # Written newest batch first, and half of the local store's compacted: order is by time.
    for b in reversed(range(6)):
        shared.write(*batch(b), [])
        local.write(*batch(b), [])
        if b % 2:
            local.compact()
    for device, channel in (("smk-0", "smoke"), ("smk-7", "temp"), ("smk-19", "temp")):
        for start, end in ((0.0, 2e9), (1e9 + 1.0, 1e9 + 4.5), (1e9 + 2.0, 1e9 + 2.0)):
            mine = shared.history(device, channel, start, end)
            theirs = local.history(device, channel, start, end)
            np.testing.assert_array_equal(mine.ts, theirs.ts)
            np.testing.assert_array_equal(mine.value, theirs.value)
        mine, theirs = (s.history(device, channel, 1e9, 1e9 + 6, buckets=7) for s in (shared, local))
        for field in ("ts", "min", "max", "count"):
            np.testing.assert_array_equal(getattr(mine, field), getattr(theirs, field))
        np.testing.assert_allclose(mine.value, theirs.value, rtol=1e-12)  # means: summed in another order
    assert shared.history("smk-0", "humidity", 0, 2e9).ts.size == 0  # no such series: empty, no error
    nothing = shared.history("smk-0", "smoke", 1e9 + 2.0, 1e9 + 2.0, buckets=10)  # an empty range
    assert nothing.ts.size == 0
    assert nothing.count is not None
    assert nothing.count.size == 0
    assert shared.count() == local.count() == 600
    local.close()


def test_slots_name_the_series_of_the_latest_binding(shared: ClusterTelemetry) -> None:
    # A registry change binds the series again, appending new ones after the old slots.
    keys = [(d, c) for d in DEVICES for c in CHANNELS] + [("prs-1", "pressure")]
    shared.bind(keys)
    shared.write(np.array([40, 0], np.int32), np.array([5.0, 5.0]), np.array([0.3, 0.01]), [])
    assert shared.history("prs-1", "pressure", 0, 10).value.tolist() == [0.3]
    assert shared.history("smk-0", "smoke", 0, 10).value.tolist() == [0.01]


EVENTS: list[EventRecord] = [
    ("smk-1", 100.0, 100.5, "fault", 3, "smoke", "4040aa"),
    ("smk-1", 100.0, 100.6, "alarm", None, None, None),  # the same instant, another event
    ("smk-1", 200.0, 200.5, "tamper", None, "temp", None),
    ("smk-2", 150.0, 150.5, "alarm", 1, None, "4040bb"),
]


def test_device_events_round_trip_once_with_none_kept_apart_from_codes(
    shared: ClusterTelemetry, tmp_path: Path
) -> None:
    local = local_store(tmp_path / "single.sqlite")
    empty = batch(0, per_batch=0)
    for _ in range(2):  # stored twice: kept once
        shared.write(*empty, [], events=EVENTS)
    local.write(*empty, [], events=EVENTS)
    assert shared.device_events("smk-1", 0, 1000) == [EVENTS[2], EVENTS[1], EVENTS[0]]
    assert shared.device_events("smk-1", 0, 1000) == local.device_events("smk-1", 0, 1000)
    assert shared.device_events("smk-1", 100.0, 200.0, limit=1) == [EVENTS[1]]
    assert shared.device_events("smk-1", 0, 100.0) == []  # half-open
    both = shared.events_of(["smk-1", "smk-2", "smk-9"], 0, 1000, {"alarm", "fault"})
    assert both == [EVENTS[0], EVENTS[1], EVENTS[3]]
    assert both == local.events_of(["smk-1", "smk-2", "smk-9"], 0, 1000, {"alarm", "fault"})
    assert shared.events_of(["smk-1", "smk-2"], 0, 1000, {"alarm"}, limit=1) == [EVENTS[1]]
    assert shared.events_of([], 0, 1000, {"alarm"}) == []
    local.close()


def test_journal_and_seq_state_go_to_the_local_file_and_samples_do_not(
    shared: ClusterTelemetry, tmp_path: Path
) -> None:
    bits = (1 << 64) - 3
    shared.write(*batch(0), [("smk-0", 812, bits, 1.0, b"fp")], [("events", b"body")], now=42.0)
    assert shared.seq_state() == [("smk-0", 812, bits, 1.0, b"fp")]
    (entry,) = shared.journal()
    assert (entry.kind, entry.body, entry.created) == ("events", b"body", 42.0)
    assert shared.journal_kinds() == {"events": 1}
    assert shared.journal_size() == (1, 42.0)
    shared.journal_done([entry.id])
    assert shared.journal_size() == (0, None)
    assert shared.local.count() == 0  # readings only in PostgreSQL
    assert shared.staged_batches() == 0
    assert shared.count() == 100
    assert shared.compact().samples == 0  # nothing to compact
    shared.close()
    reopened = TelemetryStore(tmp_path / "local.sqlite")  # the local file is the same store
    assert reopened.journal_id == shared.journal_id
    assert reopened.seq_state() == [("smk-0", 812, bits, 1.0, b"fp")]
    reopened.close()


def test_retention_deletes_old_readings_and_events_chunk_by_chunk(
    shared: ClusterTelemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg_telemetry, "PRUNE_CHUNK", 7)  # many statements: each deletes at most 7
    shared.write(*batch(0, t0=1_000.0), [], events=[("smk-1", 1_000.0, 1_000.5, "fault", 3, None, None)])
    shared.write(*batch(1, t0=2_000.0), [], events=[("smk-1", 2_500.0, 2_500.5, "fault", 3, None, None)])
    assert shared.prune(before=1_500.0) == 100
    assert shared.count() == 100
    assert shared.history("smk-0", "smoke", 0, 1e4).ts.min() >= 2_000.0
    assert [e[1] for e in shared.device_events("smk-1", 0, 1e4)] == [2_500.0]
    assert shared.prune(before=1_500.0) == 0


def test_with_postgresql_unreachable_a_write_fails_as_unavailable_and_leaves_the_local_file_alone(
    tmp_path: Path,
) -> None:
    local = TelemetryStore(tmp_path / "local.sqlite")
    local.write(*batch(0, per_batch=0), [("smk-0", 5, 1, 1.0, b"")], [("events", b"older")], now=1.0)
    gone = make_engine(f"postgresql://postgres@127.0.0.1:{free_port()}/firewatch")  # nobody listens
    shared = ClusterTelemetry(local, gone)
    shared.bind_devices(DEVICES, [CHANNELS] * len(DEVICES))
    for events in (None, EVENTS):
        with pytest.raises(OperationalError, match=r"127\.0\.0\.1") as failed:
            shared.write(*batch(0), [("smk-0", 9, 7, 2.0, b"")], [("events", b"newer")], 2.0, events)
        assert is_unavailable(failed.value)
    assert local.seq_state() == [("smk-0", 5, 1, 1.0, b"")]
    assert [e.body for e in local.journal()] == [b"older"]
    shared.close()
    gone.dispose()


def test_a_state_store_on_sqlite_is_refused(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'state.sqlite'}")
    with pytest.raises(ValueError, match="PostgreSQL"):
        ClusterTelemetry(TelemetryStore(tmp_path / "local.sqlite"), engine)


def test_a_connection_lost_in_the_middle_of_a_write_fails_as_unavailable_and_the_next_write_stores_it(
    shared: ClusterTelemetry, postgres_url: str
) -> None:
    slot, ts, value = batch(0)
    with psycopg.connect(postgres_url) as other:
        # Another transaction holds one of the batch's keys uncommitted: the write waits on it, in
        # its INSERT, after the COPY; then the server drops the writer's connection.
        other.execute("INSERT INTO readings VALUES ('smk-0', 'smoke', %s, 0)", (float(ts[0]),))
        outcome: list[BaseException | None] = []
        writer = threading.Thread(
            target=lambda: outcome.append(
                _raised(lambda: shared.write(slot, ts, value, [("smk-0", 3, 1, 1.0, b"")]))
            )
        )
        writer.start()
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            pid = None
            for _ in range(3000):  # until the writer waits for the lock (bounded: 30 s)
                pid = admin.execute(
                    "SELECT pid FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                ).fetchone()
                if pid is not None or not writer.is_alive():
                    break
                time.sleep(0.01)
            assert pid is not None
            admin.execute("SELECT pg_terminate_backend(%s)", (pid[0],))
        writer.join()
        other.rollback()
    (failed,) = outcome
    assert isinstance(failed, OperationalError)
    assert is_unavailable(failed)
    assert shared.seq_state() == []  # nothing written locally
    shared.write(slot, ts, value, [("smk-0", 3, 1, 1.0, b"")])  # the pipeline's retry: a new connection
    assert shared.count() == 100
    assert shared.seq_state() == [("smk-0", 3, 1, 1.0, b"")]


def test_a_reading_the_table_refuses_is_not_taken_for_an_outage(shared: ClusterTelemetry) -> None:
    shared.bind([("smk-0", "x" * 65)])  # longer than a channel may be: a bad input, not an outage
    with pytest.raises(DataError) as refused:
        shared.write(np.zeros(1, np.int32), np.array([1.0]), np.array([2.0]), [])
    assert not is_unavailable(refused.value)  # so the pipeline stores the batch's readings one by one


def _raised(work: Callable[[], object]) -> BaseException | None:
    try:
        work()
    except BaseException as exc:
        return exc
    return None


def test_the_pipeline_stores_its_batches_through_it_once_however_often_they_are_stored(
    engine: Engine, tmp_path: Path
) -> None:
    svc = Service(
        Settings(data_dir=tmp_path / "data", mqtt=MqttSettings(url="mqtt://127.0.0.1:1", client_id="fw-pg")),
        registry=small_registry(),
        profiles=PROFILES,
    )
    shared = ClusterTelemetry(TelemetryStore(tmp_path / "worker.sqlite"), engine)
    shared.bind_devices(svc.index.device_ids, svc.index.channel_offsets)  # as the service binds its own
    pipeline = svc.pipeline
    pipeline.telemetry = pipeline.recorder.journal = shared
    now = time.time()
    messages = [
        Message(f"fw/v1/s1/smk-1-{i}/telemetry", orjson.dumps(reading(7, 0.01 * i, now)), now, 1, i)
        for i in (1, 2, 3)
    ]
    fault = {"ts": now, "seq": 8, "event": "fault", "code": 2}
    messages.append(Message("fw/v1/s1/smk-1-2/event", orjson.dumps(fault), now, 1, 4))
    decoded = pipeline.detect(messages)
    for _ in range(2):  # stored again: a retry after the local file failed, or a replay
        pipeline.store_telemetry(decoded)
    assert shared.count() == 6  # smoke and temp of three detectors
    assert shared.history("smk-1-3", "smoke", 0, 2e9).value.tolist() == [0.03]
    assert shared.history("smk-1-3", "temp", 0, 2e9).value.tolist() == [24.0]
    (event,) = shared.device_events("smk-1-2", 0, 2e9)
    assert (event[3], event[4]) == ("fault", 2)
    assert {row[0]: row[1] for row in shared.seq_state()} == {"smk-1-1": 7, "smk-1-2": 8, "smk-1-3": 7}
    assert shared.local.count() == 0


def test_with_postgresql_down_batches_wait_in_the_local_spool_and_are_stored_once_when_it_is_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing raises while the server is down (the pipeline's hand-off never fills, so detection
    never waits for PostgreSQL), the local part is written as usual, and once the server answers
    the spooled batches are written, oldest first, beside the new ones: each reading once."""
    monkeypatch.setattr(pg_telemetry, "SPOOL_RETRY_S", 0.0)  # ask the server again at every batch
    pg = PrivatePostgres(durable=True).start()  # what it committed survives the stop
    engine: Engine | None = None
    store: ClusterTelemetry | None = None
    try:
        engine, _ = open_store(pg.url(pg.create_database()))
        store = ClusterTelemetry(
            TelemetryStore(tmp_path / "local.sqlite"), engine, Spool(tmp_path / "pg_spool.sqlite")
        )
        store.bind_devices(DEVICES, [CHANNELS] * len(DEVICES))
        store.write(*batch(0), [])
        pg.halt()
        for b in (1, 2):
            store.write(
                *batch(b), [("smk-0", b, 1, float(b), b"")], None, float(b), EVENTS if b == 1 else None
            )
        assert store.spool_pending() == 2
        assert store.seq_state() == [("smk-0", 2, 1, 2.0, b"")]  # the local part went on
        pg.resume()
        for b in range(3, 10):  # the first writes may meet connections the restart closed
            store.write(*batch(b), [])
            if store.spool_pending() == 0:
                break
        assert store.spool_pending() == 0
        assert store.count() == (b + 1) * 100
        slot, ts, value = (
            np.concatenate(parts) for parts in zip(*(batch(i) for i in range(b + 1)), strict=True)
        )
        h = store.history("smk-1", "temp", 0, 2e9)
        np.testing.assert_array_equal(h.ts, ts[slot == 3])
        np.testing.assert_array_equal(h.value, value[slot == 3])
        assert set(store.device_events("smk-1", 0, 1e4)) == {e for e in EVENTS if e[0] == "smk-1"}
    finally:
        if store is not None:
            store.close()
        if engine is not None:
            engine.dispose()
        pg.close()


def test_a_spool_keeps_its_batches_across_a_restart_and_forgets_each_once_stored(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "pg_spool.sqlite")
    keys = (["smk-1", "smk-2"], ["smoke", "temp"])
    series = np.array([1, 2, 1], dtype=np.int64)
    spool.put(
        ReadingBatch(keys, series, np.array([1.0, 2.0, 3.0]), np.array([0.1, 0.2, 0.3]), list(EVENTS)),
        now=10.0,
    )
    spool.put(ReadingBatch(keys, series[:1], np.array([4.0]), np.array([0.4]), []), now=11.0)
    spool.close()
    again = Spool(tmp_path / "pg_spool.sqlite")
    assert (again.pending, again.oldest) == (2, 10.0)
    first, second = again.take(10)
    assert first.keys == keys
    np.testing.assert_array_equal(first.series, series)
    np.testing.assert_array_equal(first.ts, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(first.value, [0.1, 0.2, 0.3])
    assert first.events == list(EVENTS)
    again.done([first.id])
    assert (again.pending, again.oldest) == (1, 11.0)
    assert [b.id for b in again.take(10)] == [second.id]
    again.close()


def test_a_spooled_batch_postgresql_refuses_for_its_data_is_kept_apart_and_blocks_nothing(
    engine: Engine, tmp_path: Path
) -> None:
    spool = Spool(tmp_path / "pg_spool.sqlite")
    store = ClusterTelemetry(TelemetryStore(tmp_path / "local.sqlite"), engine, spool)
    store.bind_devices(DEVICES, [CHANNELS] * len(DEVICES))
    # Spooled during an outage: one batch whose channel the table refuses, one good one behind it.
    one = np.array([1], dtype=np.int64)
    spool.put(ReadingBatch((["smk-0"], ["x" * 65]), one, np.array([1.0]), np.array([2.0]), []), now=1.0)
    spool.put(ReadingBatch((["smk-0"], ["smoke"]), one, np.array([5.0]), np.array([0.5]), []), now=2.0)
    store.write(*batch(0), [])  # PostgreSQL answers: the spool drains behind the new batch
    assert store.spool_pending() == 0
    assert spool.refused() == 1  # kept, with its reason
    assert store.count() == 101
    assert store.history("smk-0", "smoke", 0, 10).value.tolist() == [0.5]
    assert store.spool_status(now=60.0) == SpoolStatus(pending=0, oldest_age_s=0.0, refused=1)
    store.close()
    assert Spool(tmp_path / "pg_spool.sqlite").refused() == 1  # still counted after a restart


def test_the_spool_status_says_how_many_batches_wait_and_for_how_long(engine: Engine, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "pg_spool.sqlite")
    store = ClusterTelemetry(TelemetryStore(tmp_path / "local.sqlite"), engine, spool)
    assert store.spool_status(now=100.0) == SpoolStatus(0, 0.0, 0)
    one = np.array([1], dtype=np.int64)
    spool.put(ReadingBatch((["smk-0"], ["smoke"]), one, np.array([1.0]), np.array([0.5]), []), now=40.0)
    spool.put(ReadingBatch((["smk-0"], ["smoke"]), one, np.array([2.0]), np.array([0.5]), []), now=70.0)
    assert store.spool_status(now=100.0) == SpoolStatus(pending=2, oldest_age_s=60.0, refused=0)
    store.close()
