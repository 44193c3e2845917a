"""Long device histories from the clustered store's rollups (storage/pg_telemetry.py): each series'
count, sum, least and greatest per 64-second interval, kept with its readings. A history whose
buckets span whole intervals merges their rollups and reads only the samples of the intervals a
bucket edge splits, and answers exactly what the samples themselves give (`downsample`, the single
node's computation): the same buckets, stamps, least, greatest and counts, the mean to rounding.
A replay rolls up nothing twice, and retention deletes rollups with their readings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from alembic import command
from sqlalchemy import Engine, text

from storage.db import alembic_config, make_engine, migrate, open_store
from storage.pg_telemetry import ROLLUP_S, ClusterTelemetry, rollup_plan
from storage.telemetry import History, TelemetryStore, downsample

SERIES = [("d-1", "smoke"), ("d-1", "temp"), ("d-2", "smoke")]
T0 = 1.7e9  # a multiple of 64 s: ranges from here start on an interval's edge
Samples = tuple[npt.NDArray[np.int32], npt.NDArray[np.float64], npt.NDArray[np.float64]]


@pytest.fixture
def engine(postgres_url: str) -> Iterator[Engine]:
    engine, _ = open_store(postgres_url)
    yield engine
    engine.dispose()


@pytest.fixture
def shared(engine: Engine, tmp_path: Path) -> Iterator[ClusterTelemetry]:
    store = ClusterTelemetry(TelemetryStore(tmp_path / "local.sqlite"), engine)
    store.bind(SERIES)
    yield store
    store.close()


def random_samples(rng: np.random.Generator, n: int, span: float) -> Samples:
    """`n` samples of random series at random times in [T0, T0 + span): some exactly on interval
    edges and just below them, where rounding would decide an interval if anything did."""
    ts = T0 + rng.uniform(0.0, span, n)
    edges = T0 + np.unique(rng.integers(0, int(span // ROLLUP_S), n // 10)) * float(ROLLUP_S)
    ts = np.concatenate([ts, edges, np.nextafter(edges, -np.inf)])
    slot = rng.integers(0, len(SERIES), ts.size).astype(np.int32)
    return slot, ts, rng.normal(20.0, 5.0, ts.size)


def write_in_batches(
    store: ClusterTelemetry, samples: Samples, rng: np.random.Generator, batches: int
) -> None:
    """In random order, in `batches` batches: samples arrive late and out of order."""
    order = rng.permutation(samples[1].size)
    for part in np.array_split(order, batches):
        store.write(samples[0][part], samples[1][part], samples[2][part], [])


def stored(samples: Samples, slot: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """One series' samples as stored: the first value of each time (a key is stored once), by time."""
    mine = samples[0] == slot
    ts, first = np.unique(samples[1][mine], return_index=True)
    return ts, samples[2][mine][first]


def assert_same(mine: History, theirs: History) -> None:
    for field in ("ts", "min", "max", "count"):
        np.testing.assert_array_equal(getattr(mine, field), getattr(theirs, field), err_msg=field)
    # Means: the same samples summed in another order (rollups first).
    np.testing.assert_allclose(mine.value, theirs.value, rtol=1e-12)


def expected(samples: Samples, slot: int, start: float, end: float, buckets: int) -> History:
    ts, value = stored(samples, slot)
    keep = (ts >= start) & (ts < end)
    return downsample(ts[keep], value[keep], start, end, buckets)


def rollups_match_readings(engine: Engine) -> None:
    """Every rollup is what its interval's readings add up to, and every interval with readings
    has one."""
    with engine.connect() as conn:
        rolled = conn.execute(
            text("SELECT device_id, channel, t0, n, total, low, high FROM reading_rollups ORDER BY 1, 2, 3")
        ).all()
        raw = conn.execute(
            text(
                "SELECT device_id, channel, floor(ts / 64) * 64, count(*), sum(value), min(value), "
                "max(value) FROM readings GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
            )
        ).all()
    assert [r[:4] + r[5:] for r in rolled] == [r[:4] + r[5:] for r in raw]
    np.testing.assert_allclose([r[4] for r in rolled], [r[4] for r in raw], rtol=1e-12)


def test_a_long_history_from_rollups_equals_the_samples_own_buckets_for_random_data(
    shared: ClusterTelemetry, engine: Engine
) -> None:
    rng = np.random.default_rng(7)
    span = 3 * 86_400.0
    samples = random_samples(rng, 20_000, span)
    write_in_batches(shared, samples, rng, 17)
    rollups_match_readings(engine)
    # Ranges starting and ending on interval edges and between them, buckets whose edges fall on
    # interval edges (width a multiple of 64 s) and those that do not, down to two intervals wide.
    ranges = [(T0, T0 + span, 1000), (T0, T0 + 64.0 * 1000, 500), (T0 - 10_000.0, T0 + span + 5.0, 7)]
    for _ in range(12):
        start = T0 + rng.uniform(-1_000.0, span / 2)
        ranges.append((start, start + rng.uniform(1.0, 1.6) * span / 2, int(rng.integers(1, 1000))))
    ranges += [(T0 + 0.25, T0 + 0.25 + 128.0 * 300, 300), (T0 + 100.0, T0 + 100.0 + 128.0 * 300 + 1e-6, 300)]
    for start, end, buckets in ranges:
        assert rollup_plan(start, end, buckets) is not None  # the rollups are read
        for slot, (device, channel) in enumerate(SERIES):
            assert_same(
                shared.history(device, channel, start, end, buckets=buckets),
                expected(samples, slot, start, end, buckets),
            )


def test_samples_on_bucket_edges_and_in_partial_buckets_land_where_the_samples_alone_put_them(
    shared: ClusterTelemetry,
) -> None:
    # Buckets of 200 s from an unaligned start: their edges split intervals. Samples on each edge
    # (as the bucket arithmetic places it), just below, at the start (in) and at the end (out).
    start, buckets = T0 + 37.5, 50
    end = start + 200.0 * buckets
    width = (end - start) / buckets
    edges = start + np.arange(buckets + 1) * width
    every_10s = np.arange(start - 1.0, end, 10.0)
    near = [edges, np.nextafter(edges, -np.inf), edges + 1e-3, [start, end - 1e-6]]
    ts = np.unique(np.concatenate([every_10s, *near]))
    ts = ts[(ts >= start - 1.0) & (ts <= end)]
    value = np.arange(ts.size, dtype=np.float64)  # each sample's own value: a misplaced one shows
    shared.write(np.zeros(ts.size, np.int32), ts, value, [])
    samples: Samples = (np.zeros(ts.size, np.int32), ts, value)
    for s, e, b in ((start, end, buckets), (start + 100.0, end - 50.0, 24), (start, end, 1)):
        assert rollup_plan(s, e, b) is not None
        assert_same(shared.history("d-1", "smoke", s, e, buckets=b), expected(samples, 0, s, e, b))
    # Short ranges (buckets narrower than two intervals) read the samples, as before.
    assert rollup_plan(start, start + 3600.0, 100) is None
    assert_same(
        shared.history("d-1", "smoke", start, start + 3600.0, buckets=100),
        expected(samples, 0, start, start + 3600.0, 100),
    )


def test_a_long_history_is_answered_from_the_rollups(shared: ClusterTelemetry, engine: Engine) -> None:
    # What proves the rollups are read: a rollup changed behind the store's back shows.
    ts = T0 + np.arange(0.0, 86_400.0, 10.0)
    shared.write(np.zeros(ts.size, np.int32), ts, np.ones(ts.size), [])
    with engine.begin() as conn:
        conn.execute(text("UPDATE reading_rollups SET high = 99 WHERE t0 = :t0"), {"t0": T0 + 6400.0})
    h = shared.history("d-1", "smoke", T0, T0 + 86_400.0, buckets=100)
    assert h.max is not None
    assert h.max.tolist().count(99.0) == 1
    assert h.count is not None
    assert h.count.sum() == ts.size


def test_a_replayed_or_resent_batch_rolls_up_nothing_twice(shared: ClusterTelemetry, engine: Engine) -> None:
    rng = np.random.default_rng(11)
    samples = random_samples(rng, 3_000, 20_000.0)
    write_in_batches(shared, samples, rng, 5)
    write_in_batches(shared, samples, rng, 3)  # a replay after a takeover, batched otherwise
    slot, ts, value = samples
    resent = slice(0, 500)  # a device's resend with other values: the first stays
    shared.write(slot[resent], ts[resent], value[resent] + 1000.0, [])
    both = (
        np.concatenate([slot, slot[:700]]),
        np.concatenate([ts, ts[:700]]),
        np.concatenate([value, -value[:700]]),
    )
    shared.write(*both, [])  # one batch holding old samples, some of them twice
    rollups_match_readings(engine)
    for s, (device, channel) in enumerate(SERIES):
        assert_same(
            shared.history(device, channel, T0, T0 + 20_000.0, buckets=40),
            expected(samples, s, T0, T0 + 20_000.0, 40),
        )


def test_retention_deletes_whole_intervals_readings_and_rollups_together(
    shared: ClusterTelemetry, engine: Engine
) -> None:
    rng = np.random.default_rng(5)
    before = T0 + 10_000.0  # inside an interval: it is kept whole
    slot, ts, value = random_samples(rng, 5_000, 40_000.0)
    # And in every series, a sample in that interval's part before `before`.
    samples: Samples = (
        np.r_[slot, 0, 1, 2].astype(np.int32),
        np.r_[ts, [before - 1.0] * 3],
        np.r_[value, 1, 2, 3],
    )
    write_in_batches(shared, samples, rng, 4)
    cut = np.floor(before / ROLLUP_S) * ROLLUP_S
    old = samples[1] < cut
    kept: Samples = (samples[0][~old], samples[1][~old], samples[2][~old])
    count = sum(stored(samples, s)[0].size - stored(kept, s)[0].size for s in range(len(SERIES)))
    assert shared.prune(before) == count > 0
    assert shared.prune(before) == 0
    rollups_match_readings(engine)
    for s, (device, channel) in enumerate(SERIES):
        h = shared.history(device, channel, T0 - 640.0, T0 + 40_000.0, buckets=30)
        assert_same(h, expected(kept, s, T0 - 640.0, T0 + 40_000.0, 30))
        assert shared.history(device, channel, T0, cut).ts.size == 0
        assert shared.history(device, channel, cut, before).ts.size > 0  # the interval's earlier part


@pytest.mark.fresh_migrations
def test_the_migration_rolls_up_the_readings_stored_before_it(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    command.upgrade(alembic_config(engine), "0017")
    ts = T0 + np.arange(0.0, 1000.0, 7.0)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO readings SELECT 'd-1', 'smoke', t, t - :t0 "
                "FROM unnest(CAST(:ts AS float8[])) AS t"
            ),
            {"ts": ts.tolist(), "t0": T0},
        )
    migrate(engine)
    rollups_match_readings(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT sum(n) FROM reading_rollups")).scalar_one() == ts.size
    engine.dispose()
