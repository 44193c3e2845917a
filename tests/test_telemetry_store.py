"""The local telemetry store: what is written is read back, exactly once, in time order, whether it
sits in a staged batch, a chunk, or a merged chunk, and across restarts. Tests of reading back that
hold for any store run on the clustered one too (storage/pg_telemetry.py; more in test_pg_telemetry)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from storage.compactor import Compactor
from storage.db import open_store as open_db
from storage.pg_telemetry import ClusterTelemetry
from storage.telemetry import FANOUT, TelemetryStore, downsample
from storage.telemetry_api import Telemetry

DEVICES = [f"smk-{i}" for i in range(20)]


def open_store(path: Path) -> TelemetryStore:
    store = TelemetryStore(path)
    store.bind([(d, "smoke") for d in DEVICES])
    return store


@pytest.fixture(params=["local", "cluster"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Telemetry]:
    """The local store, and the clustered one (readings in a private PostgreSQL database): what a
    test using this says of reading back holds for both."""
    if request.param == "local":
        store: Telemetry = open_store(tmp_path / "t.sqlite")
        yield store
        store.close()
        return
    engine, _ = open_db(request.getfixturevalue("postgres_url"))
    store = ClusterTelemetry(TelemetryStore(tmp_path / "t.sqlite"), engine)
    store.bind([(d, "smoke") for d in DEVICES])
    yield store
    store.close()
    engine.dispose()


def write_batches(store: TelemetryStore, batches: int, per_batch: int = 100, t0: float = 1e9) -> None:
    """`per_batch` readings per batch, round-robin over the devices, one every 0.01 s, value = ts."""
    for b in range(batches):
        i = np.arange(b * per_batch, (b + 1) * per_batch)
        slot = (i % len(DEVICES)).astype(np.int32)
        ts = (t0 + i * 0.01).astype(np.float64)
        store.write(slot, ts, ts.copy(), [])


def expected_ts(device: int, batches: int, per_batch: int = 100, t0: float = 1e9) -> npt.NDArray[np.float64]:
    i = np.arange(batches * per_batch)
    mine: npt.NDArray[np.float64] = (t0 + i[i % len(DEVICES) == device] * 0.01).astype(np.float64)
    return mine


def levels(path: Path) -> dict[int, int]:
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT level, COUNT(*) FROM chunks GROUP BY level").fetchall())


def test_a_written_batch_is_readable_at_once_and_unchanged_by_compaction(tmp_path: Path) -> None:
    store = open_store(tmp_path / "t.sqlite")
    write_batches(store, 3)
    staged = store.history("smk-3", "smoke", 0, 2e9)
    np.testing.assert_array_equal(staged.ts, expected_ts(3, 3))
    np.testing.assert_array_equal(staged.value, staged.ts)

    result = store.compact()
    assert result.samples == 300
    assert store.staged_batches() == 0
    compacted = store.history("smk-3", "smoke", 0, 2e9)
    np.testing.assert_array_equal(compacted.ts, staged.ts)
    assert store.count() == 300


def test_a_range_is_half_open_and_in_time_order(any_store: Telemetry) -> None:
    store = any_store
    # Written newest first: the store orders by time, not by arrival.
    for k in reversed(range(10)):
        store.write(np.zeros(1, np.int32), np.array([100.0 + k]), np.array([float(k)]), [])
        if k % 3 == 0:
            store.compact()
    h = store.history("smk-0", "smoke", 102.0, 107.0)
    assert h.ts.tolist() == [102.0, 103.0, 104.0, 105.0, 106.0]
    assert h.value.tolist() == [2.0, 3.0, 4.0, 5.0, 6.0]


def test_full_levels_merge_and_reads_stay_exact(tmp_path: Path) -> None:
    store = open_store(tmp_path / "t.sqlite")
    for k in range(FANOUT * FANOUT + 3):
        write_batches(store, 1, t0=1e9 + k * 10)
        store.compact()
    assert levels(tmp_path / "t.sqlite").get(3, 0) >= 1  # 256 compactions: merged twice over
    h = store.history("smk-5", "smoke", 0, 2e9)
    expected = np.sort(
        np.concatenate([expected_ts(5, 1, t0=1e9 + k * 10) for k in range(FANOUT * FANOUT + 3)])
    )
    np.testing.assert_array_equal(h.ts, expected)
    assert store.count() == (FANOUT * FANOUT + 3) * 100


def test_a_reader_never_sees_a_sample_twice_or_misses_one_while_compaction_runs(tmp_path: Path) -> None:
    store = open_store(tmp_path / "t.sqlite")
    write_batches(store, 200)
    want = expected_ts(7, 200)
    stop = threading.Event()

    def compact_in_slices() -> None:
        while not stop.is_set() and store.compact().samples:
            pass

    seen: list[int] = []
    compactor = threading.Thread(target=compact_in_slices)
    compactor.start()
    try:
        for _ in range(50):
            h = store.history("smk-7", "smoke", 0, 2e9)
            seen.append(h.ts.size)
            np.testing.assert_array_equal(h.ts, want)
    finally:
        stop.set()
        compactor.join()
    assert set(seen) == {want.size}


def test_staged_batches_survive_a_restart(tmp_path: Path) -> None:
    store = open_store(tmp_path / "t.sqlite")
    write_batches(store, 4)
    store.close()  # no compaction before the "crash"
    again = open_store(tmp_path / "t.sqlite")
    assert again.count() == 400
    again.compact()
    np.testing.assert_array_equal(again.history("smk-1", "smoke", 0, 2e9).ts, expected_ts(1, 4))


def test_seq_state_is_committed_with_the_batch_and_keeps_all_64_bits(tmp_path: Path) -> None:
    store = open_store(tmp_path / "t.sqlite")
    bits = (1 << 64) - 1
    fps = bytes(range(128))
    store.write(np.zeros(1, np.int32), np.array([1.0]), np.array([2.0]), [("smk-0", 812, bits, 1.0, fps)])
    store.close()
    assert open_store(tmp_path / "t.sqlite").seq_state() == [("smk-0", 812, bits, 1.0, fps)]


def test_downsampling_gives_min_max_mean_and_count_per_non_empty_bucket(any_store: Telemetry) -> None:
    rng = np.random.default_rng(1)
    ts = np.sort(rng.uniform(0, 1000, 5_000))
    ts = ts[(ts < 400) | (ts >= 500)]  # a gap: those buckets are left out, not zero-filled
    value = rng.normal(20, 5, ts.size)
    store = any_store
    store.write(np.zeros(ts.size, np.int32), ts, value, [])
    store.compact()
    h = store.history("smk-0", "smoke", 0, 1000, buckets=100)
    assert h.min is not None
    assert h.max is not None
    assert h.count is not None
    assert h.ts.size == 90
    assert h.count.sum() == ts.size
    for k, mid in enumerate(h.ts):
        inside = (ts >= mid - 5) & (ts < mid + 5)
        assert h.count[k] == inside.sum()
        assert h.min[k] == value[inside].min()
        assert h.max[k] == value[inside].max()
        assert h.value[k] == pytest.approx(value[inside].mean())


def test_the_last_instant_of_a_range_falls_in_the_last_bucket() -> None:
    ts = np.array([0.0, 9.999999999])
    h = downsample(ts, np.array([1.0, 2.0]), 0.0, 10.0, 10)
    assert h.ts.tolist() == [0.5, 9.5]


def test_retention_drops_whole_chunks_older_than_the_cutoff(tmp_path: Path) -> None:
    store = open_store(tmp_path / "t.sqlite")
    write_batches(store, 1, t0=1_000.0)
    store.compact()
    write_batches(store, 1, t0=2_000.0)
    store.compact()
    assert store.prune(before=1_500.0) == 100
    h = store.history("smk-0", "smoke", 0, 1e4)
    assert h.ts.min() >= 2_000.0
    assert store.count() == 100


def test_a_store_in_the_earlier_row_per_sample_layout_is_adopted(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(
            """
            CREATE TABLE series(id INTEGER PRIMARY KEY, device_id TEXT NOT NULL, channel TEXT NOT NULL,
                                UNIQUE(device_id, channel));
            CREATE TABLE samples(series INTEGER NOT NULL, ts REAL NOT NULL, value REAL NOT NULL);
            INSERT INTO series VALUES (1, 'smk-0', 'smoke'), (2, 'smk-1', 'smoke');
            INSERT INTO samples VALUES (1, 10.0, 0.1), (2, 11.0, 0.2), (1, 12.0, 0.3);
            """
        )
    store = open_store(path)
    h = store.history("smk-0", "smoke", 0, 100)
    assert h.ts.tolist() == [10.0, 12.0]
    assert h.value.tolist() == [0.1, 0.3]
    assert store.count() == 3
    with sqlite3.connect(path) as db:
        assert not db.execute("SELECT 1 FROM sqlite_master WHERE name='samples'").fetchone()


def test_the_compactor_process_moves_staged_batches_into_chunks_beside_the_writer(tmp_path: Path) -> None:
    store = open_store(tmp_path / "t.sqlite")
    compactor = Compactor(tmp_path / "t.sqlite", every_s=0.05, retention_s=0)
    compactor.start()
    try:
        for k in range(20):  # the writer keeps writing while the other process compacts
            write_batches(store, 1, t0=1e9 + k * 10)
            time.sleep(0.02)
        deadline = time.monotonic() + 20
        while store.staged_batches() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert compactor.alive()
    finally:
        compactor.stop()
    assert store.staged_batches() == 0
    assert levels(tmp_path / "t.sqlite")
    assert store.count() == 2_000
    want = np.sort(np.concatenate([expected_ts(4, 1, t0=1e9 + k * 10) for k in range(20)]))
    np.testing.assert_array_equal(store.history("smk-4", "smoke", 0, 2e9).ts, want)


def test_binding_keeps_each_series_id_and_numbers_new_series_after_them(tmp_path: Path) -> None:
    store = open_store(tmp_path / "t.sqlite")
    first = store.slot_series.copy()
    assert len(set(first.tolist())) == len(DEVICES)
    # A registry change: a device gone, two new ones, another channel; slots in a new order.
    keys = [
        ("smk-new-1", "smoke"),
        *[(d, "smoke") for d in reversed(DEVICES[1:])],
        ("smk-3", "temp"),
        ("smk-new-2", "smoke"),
    ]
    store.bind(keys)
    ids = dict(zip(keys, store.slot_series.tolist(), strict=True))
    assert [ids[(d, "smoke")] for d in DEVICES[1:]] == first[1:].tolist()
    new = [ids[("smk-new-1", "smoke")], ids[("smk-3", "temp")], ids[("smk-new-2", "smoke")]]
    assert len(set(new)) == 3
    assert min(new) > int(first.max())
    store.close()
    reopened = TelemetryStore(tmp_path / "t.sqlite")
    reopened.bind(keys)
    assert reopened.slot_series.tolist() == [ids[k] for k in keys]
    reopened.close()


def test_history_reads_a_series_of_an_earlier_run_that_this_run_has_not_bound(tmp_path: Path) -> None:
    """A removed device's history stays readable after a restart: series are found in the store,
    not only among the slots bound since it was opened."""
    store = open_store(tmp_path / "t.sqlite")
    write_batches(store, 2)
    store.close()
    reopened = TelemetryStore(tmp_path / "t.sqlite")
    reopened.bind([(d, "smoke") for d in DEVICES[1:]])  # smk-0 is no longer registered
    np.testing.assert_array_equal(reopened.history("smk-0", "smoke", 0, 2e9).ts, expected_ts(0, 2))
    assert reopened.history("smk-0", "temp", 0, 2e9).ts.size == 0  # never stored: empty
    reopened.close()


def test_binding_device_by_device_gives_the_ids_binding_keys_gives_on_a_new_and_on_an_existing_store(
    tmp_path: Path,
) -> None:
    """`bind_devices` (each device's channels, in order) numbers a new store's series 1..n in slot
    order and, on a store with series, finds theirs: the same ids as `bind` of the same keys."""
    smoke, pressure = ["smoke", "temp"], ["pressure"]
    device_ids = ["smk-b", "smk-a", "prs-1"]
    channels = [smoke, smoke, pressure]  # devices of one profile share its list
    keys = [(d, c) for d, chans in zip(device_ids, channels, strict=True) for c in chans]

    by_keys = TelemetryStore(tmp_path / "keys.sqlite")
    by_keys.bind(keys)
    by_devices = TelemetryStore(tmp_path / "devices.sqlite")
    by_devices.bind_devices(device_ids, channels)
    assert by_devices.slot_series.tolist() == by_keys.slot_series.tolist() == [1, 2, 3, 4, 5]
    by_devices.write(np.array([0, 4], dtype=np.int32), np.array([1e9, 1e9]), np.array([0.5, 0.2]), [])
    np.testing.assert_array_equal(by_devices.history("prs-1", "pressure", 0, 2e9).value, [0.2])
    np.testing.assert_array_equal(by_devices.history("smk-b", "smoke", 0, 2e9).value, [0.5])

    # A registry change on the existing store: devices reordered, one new, one gone, a new channel.
    changed_ids = ["prs-1", "smk-a", "smk-c"]
    changed_channels = [pressure, ["smoke", "temp", "co"], ["smoke"]]
    changed_keys = [(d, c) for d, chans in zip(changed_ids, changed_channels, strict=True) for c in chans]
    by_keys.bind(changed_keys)
    by_devices.bind_devices(changed_ids, changed_channels)
    assert by_devices.slot_series.tolist() == by_keys.slot_series.tolist() == [5, 3, 4, 6, 7]
    np.testing.assert_array_equal(by_devices.history("prs-1", "pressure", 0, 2e9).value, [0.2])

    # A key twice on a new store (not made by an index, but allowed): both get the first's series.
    twice = TelemetryStore(tmp_path / "twice.sqlite")
    twice.bind_devices(["smk-a", "smk-a"], [smoke, ["smoke"]])
    assert twice.slot_series.tolist() == [1, 2, 1]
    for store in (by_keys, by_devices, twice):
        store.close()
