"""The local telemetry store: sustained write rate as it fills, and a 30-day history query, for the
chunked layout (storage/telemetry.py) against one indexed row per sample, in the same run.

    python3 -m bench.telemetry_store [--samples 6000000] [--series 4800] [--days 30] [--queries 200]

1. Writes: batches of 5,000 samples (ingest's batch_max) from `--series` random series, stamped as
   if arriving at 20,000 samples/s, each with the de-duplication upsert of 2,400 devices, until
   `--samples`. The chunked store is compacted every 20 batches (5 s at that rate, the service's
   default `telemetry.compact_every_s`) and the compaction time is counted with the writes (in the
   service it runs in a process of its own). Reported per million samples, so a
   rate that falls as the store grows shows.
2. History: ten series at one reading per 10 s for `--days` days, written as the service would (a
   compaction every 5 s: a chunk per reading, the worst case for chunk count), then `--queries`
   queries of one series over the whole span downsampled to 1,000 buckets (min/max/mean/count).
   The row layout answers the same query with one SQL GROUP BY over its (series, ts) index.

Files go to a temporary directory on the same disk as /tmp. Results: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import platform
import sqlite3
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from storage.telemetry import TelemetryStore

console = Console()
BATCH = 5_000
RATE = 20_000.0  # samples/s the timestamps pretend to arrive at
SEQ_DEVICES = 2_400
T0 = 1_800_000_000.0


class RowStore:
    """The layout this store replaced: one row per sample under a (series, ts) index."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(
            "CREATE TABLE samples(series INTEGER NOT NULL, ts REAL NOT NULL, value REAL NOT NULL);"
            "CREATE INDEX samples_series_ts ON samples(series, ts);"
            "CREATE TABLE device_seq(device_id TEXT PRIMARY KEY, max_seq INTEGER NOT NULL,"
            " bits INTEGER NOT NULL, last_ts REAL NOT NULL);"
        )

    def write(
        self,
        series: np.ndarray,
        ts: np.ndarray,
        value: np.ndarray,
        seq: list[tuple[str, int, int, float, bytes]],
    ) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        self.db.executemany(
            "INSERT INTO samples VALUES (?, ?, ?)",
            zip(series.tolist(), ts.tolist(), value.tolist(), strict=True),
        )
        self.db.executemany(
            "INSERT INTO device_seq VALUES (?, ?, ?, ?) ON CONFLICT(device_id) DO UPDATE SET "
            "max_seq=excluded.max_seq, bits=excluded.bits, last_ts=excluded.last_ts",
            [row[:4] for row in seq],
        )
        self.db.execute("COMMIT")

    def history(self, sid: int, start: float, end: float, buckets: int) -> int:
        width = (end - start) / buckets
        rows = self.db.execute(
            "SELECT CAST((ts - ?) / ? AS INTEGER) AS b, MIN(value), MAX(value), AVG(value), COUNT(*) "
            "FROM samples WHERE series=? AND ts>=? AND ts<? GROUP BY b ORDER BY b",
            (start, width, sid, start, end),
        ).fetchall()
        return len(rows)


def seq_rows(k: int) -> list[tuple[str, int, int, float, bytes]]:
    return [(f"d{d:05d}", k, (1 << 62) - 1, T0 + k, bytes(128)) for d in range(SEQ_DEVICES)]


def bench_writes(directory: Path, samples: int, n_series: int, progress: Progress) -> dict[str, list[float]]:
    """Samples/s per million written, compaction included, for both layouts."""
    rng = np.random.default_rng(0)
    chunked = TelemetryStore(directory / "chunked.sqlite")
    chunked.bind([(f"d{i:05d}", "smoke") for i in range(n_series)])
    rows = RowStore(directory / "rows.sqlite")
    batches = samples // BATCH
    per_million = max(1, 1_000_000 // BATCH)
    spent = {"chunked": 0.0, "rows": 0.0}
    rates: dict[str, list[float]] = {"chunked": [], "rows": []}
    task = progress.add_task("writes (both layouts)", total=batches)
    for k in range(batches):
        slot = rng.integers(0, n_series, BATCH).astype(np.int32)
        ts = T0 + (k * BATCH + np.arange(BATCH)) / RATE
        value = rng.normal(0.03, 0.005, BATCH)
        seq = seq_rows(k)
        started = time.perf_counter()
        chunked.write(slot, ts, value, seq)
        if k % 20 == 19:
            chunked.compact()
        spent["chunked"] += time.perf_counter() - started
        started = time.perf_counter()
        rows.write(chunked.slot_series[slot], ts, value, seq)
        spent["rows"] += time.perf_counter() - started
        if (k + 1) % per_million == 0:
            for name in spent:
                rates[name].append(per_million * BATCH / spent[name])
                spent[name] = 0.0
        progress.advance(task)
    chunked.close()
    rows.db.close()
    return rates


def bench_history(directory: Path, days: float, queries: int, progress: Progress) -> dict[str, np.ndarray]:
    """Milliseconds per 1,000-bucket query over `days` of one series at one reading per 10 s."""
    n_series = 10
    readings = int(days * 86_400 / 10)
    chunked = TelemetryStore(directory / "history.sqlite")
    chunked.bind([(f"h{i}", "temp") for i in range(n_series)])
    rows = RowStore(directory / "history-rows.sqlite")
    rng = np.random.default_rng(1)
    task = progress.add_task(f"history: {days:g} days x {n_series} series", total=readings)
    slot = np.arange(n_series, dtype=np.int32)
    block = 5_000
    for start in range(0, readings, block):
        stop = min(start + block, readings)
        for k in range(start, stop):  # one staged batch and one compaction per 10 s reading
            ts = (T0 + k * 10.0 + slot * 0.5).astype(np.float64)
            value = 20.0 + rng.normal(0, 0.2, n_series)
            chunked.write(slot, ts, value, [])
            chunked.compact()
        ks = np.arange(start, stop)
        ts_all = (T0 + ks[:, None] * 10.0 + slot[None, :] * 0.5).ravel()
        rows.db.execute("BEGIN")
        rows.db.executemany(
            "INSERT INTO samples VALUES (?, ?, ?)",
            zip(
                np.tile(chunked.slot_series[slot], stop - start).tolist(),
                ts_all.tolist(),
                (20.0 + rng.normal(0, 0.2, ts_all.size)).tolist(),
                strict=True,
            ),
        )
        rows.db.execute("COMMIT")
        progress.advance(task, stop - start)
    end = T0 + readings * 10.0
    sid = int(chunked.slot_series[3])
    timings: dict[str, list[float]] = {"chunked": [], "rows": []}
    calls: dict[str, Callable[[], int]] = {
        "chunked": lambda: int(chunked.history("h3", "temp", T0, end, buckets=1_000).ts.size),
        "rows": lambda: rows.history(sid, T0, end, 1_000),
    }
    sizes = {name: call() for name, call in calls.items()}  # warm the page cache for both
    assert sizes["chunked"] == sizes["rows"] == 1_000, sizes
    qtask = progress.add_task("history queries", total=queries)
    for _ in range(queries):
        for name, call in calls.items():  # interleaved: both see the same machine load
            started = time.perf_counter()
            call()
            timings[name].append((time.perf_counter() - started) * 1000)
        progress.advance(qtask)
    with sqlite3.connect(directory / "history.sqlite") as db:
        (n_chunks,) = db.execute("SELECT COUNT(*) FROM chunks WHERE series=?", (sid,)).fetchone()
    console.print(f"the queried series: {readings:,} samples in {n_chunks} chunks")
    chunked.close()
    rows.db.close()
    return {name: np.array(t) for name, t in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=6_000_000, help="samples written per layout")
    parser.add_argument("--series", type=int, default=4_800, help="series the writes spread over")
    parser.add_argument("--days", type=float, default=30.0, help="span of the history query")
    parser.add_argument("--queries", type=int, default=200, help="history queries per layout")
    args = parser.parse_args()
    console.print(
        f"{datetime.now(UTC):%Y-%m-%d}, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, numpy {np.__version__}"
    )
    with tempfile.TemporaryDirectory(prefix="fw-bench-telemetry-") as tmp, Progress(console=console) as bar:
        rates = bench_writes(Path(tmp), args.samples, args.series, bar)
        history = bench_history(Path(tmp), args.days, args.queries, bar)

    table = Table(title="sustained writes, samples/s (compaction included), per million written")
    table.add_column("layout")
    for i in range(len(rates["chunked"])):
        table.add_column(f"{i + 1}M", justify="right")
    for name, values in rates.items():
        table.add_row(name, *(f"{v:,.0f}" for v in values))
    table.add_row("ratio", *(f"{c / r:.1f}x" for c, r in zip(rates["chunked"], rates["rows"], strict=True)))
    console.print(table)

    table = Table(title=f"history: {args.days:g} days at 1 reading / 10 s, 1,000 buckets, ms per query")
    for col in ("layout", "p50", "p99", "max"):
        table.add_column(col, justify="right")
    for name, ms in history.items():
        table.add_row(name, *(f"{v:.1f}" for v in np.percentile(ms, [50, 99, 100])))
    ratio = np.median(history["rows"]) / np.median(history["chunked"])
    console.print(table)
    console.print(f"row layout / chunked at the median: {ratio:.1f}x")


if __name__ == "__main__":
    main()
