"""Clustered telemetry into PostgreSQL (storage/pg_telemetry.py): rows/s of two ways to insert a
batch's readings with ON CONFLICT DO NOTHING, for new readings and for a replay of them.

    flock /tmp/bench-heavy.lock python3 -m bench.pg_telemetry [--devices 20000] [--batches 100] \
        [--batch 5000] [--rounds 3] [--queries 50] [--postgres-url URL]

- copy: what ClusterTelemetry does. The batch's (series, ts, value) columns as one binary COPY built
  by numpy into a temporary table, joined with the batch's distinct (device, channel) keys (two
  text arrays, unnest WITH ORDINALITY) into `readings`.
- unnest: one `INSERT INTO readings SELECT * FROM unnest(text[], text[], float8[], float8[])` with
  the device and channel of every sample (numpy columns to lists, no Python loop per reading).

Each round and method starts from an empty `readings`, writes `--batches` batches of `--batch`
samples of random series of `--devices` devices (2 channels each), each batch in its own
transaction through ClusterTelemetry.write (with no seq state or journal, so only PostgreSQL is
timed), then writes the same batches again (a replay after a takeover: every row a conflict).
Methods alternate within a round, so a busy neighbour on a shared machine hits both alike.

Both keep the rollups of what they insert (`with_rollups`), as every write does.

Rows/s depend on what else the machine runs; CPU per row (this process's, and the private server's
processes' from /proc) less so. Then `--queries` history queries (`history(buckets=1000)`) of one
series' 30 days at one reading per 10 s, written interleaved with three other series: from the
rollups (what ClusterTelemetry does) and, alternately, from every sample of the range.

Without `--postgres-url` a private PostgreSQL is started on a free loopback port (tests/postgres.py)
with fsync and synchronous commit on, as in production, and removed afterwards. Results:
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import psycopg
from rich.console import Console
from rich.table import Table
from sqlalchemy import Connection, Engine, text

from storage.db import open_store
from storage.pg_telemetry import ClusterTelemetry, with_rollups
from storage.telemetry import TelemetryStore
from tests.postgres import PrivatePostgres

console = Console()

Batch = tuple[npt.NDArray[np.int32], npt.NDArray[np.float64], npt.NDArray[np.float64]]


class UnnestTelemetry(ClusterTelemetry):
    """ClusterTelemetry with its readings inserted by one INSERT ... SELECT FROM unnest(arrays)."""

    def _insert_readings(
        self,
        conn: Connection,
        keys: tuple[list[str], list[str]],
        series: npt.NDArray[np.int64],
        ts: npt.NDArray[np.float64],
        value: npt.NDArray[np.float64],
    ) -> None:
        device = np.array(keys[0], dtype=object)[series - 1]
        channel = np.array(keys[1], dtype=object)[series - 1]
        conn.execute(
            text(
                with_rollups(
                    "INSERT INTO readings(device_id, channel, ts, value) SELECT * FROM unnest("
                    "CAST(:d AS text[]), CAST(:c AS text[]), CAST(:ts AS float8[]), CAST(:v AS float8[])) "
                    "ON CONFLICT DO NOTHING"
                )
            ),
            {"d": device.tolist(), "c": channel.tolist(), "ts": ts.tolist(), "v": value.tolist()},
        )


class SampleHistory(ClusterTelemetry):
    """ClusterTelemetry whose histories read every sample of the range, as before the rollups."""

    def _rollup_plan(
        self, start: float, end: float, buckets: int
    ) -> tuple[npt.NDArray[np.float64], ...] | None:
        return None


def batches(devices: int, n: int, size: int, seed: int) -> list[Batch]:
    """`n` batches of `size` samples of random slots, at increasing times (20,000 samples/s)."""
    rng = np.random.default_rng(seed)
    out = []
    for b in range(n):
        slot = rng.integers(0, 2 * devices, size).astype(np.int32)
        ts = 1.7e9 + (b * size + np.arange(size)) / 20_000.0
        out.append((slot, ts, rng.normal(20.0, 5.0, size)))
    return out


@dataclass
class Measure:
    rows_per_s: float
    client_us: float  # CPU of this process per row, microseconds
    server_us: float | None  # CPU of the PostgreSQL server's processes per row (a private server only)


def server_cpu(postmaster: int | None) -> float | None:
    """CPU seconds used so far by the server's postmaster and its live children (backends, WAL
    writer, checkpointer), from /proc; None without a private server."""
    if postmaster is None:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        pid, ppid = int(stat.parent.name), int(fields[1])
        if postmaster in (pid, ppid):
            total += int(fields[11]) + int(fields[12])  # utime, stime (proc(5))
    return total / tick


def timed(store: ClusterTelemetry, work: list[Batch], postmaster: int | None) -> Measure:
    """Rows per second and CPU per row of writing `work`, a transaction per batch."""
    rows = sum(b[1].size for b in work)
    server0, cpu0, started = server_cpu(postmaster), time.process_time(), time.perf_counter()
    for slot, ts, value in work:
        store.write(slot, ts, value, [])
    wall, client, server1 = time.perf_counter() - started, time.process_time() - cpu0, server_cpu(postmaster)
    server = None if server0 is None or server1 is None else (server1 - server0) / rows * 1e6
    return Measure(rows / wall, client / rows * 1e6, server)


def run(
    engine: Engine, args: argparse.Namespace, tmp: Path, postmaster: int | None
) -> dict[str, dict[str, list[Measure]]]:
    makers: dict[str, Callable[[TelemetryStore, Engine], ClusterTelemetry]] = {
        "copy": ClusterTelemetry,
        "unnest": UnnestTelemetry,
    }
    ids = [f"dev-{i:07d}" for i in range(args.devices)]
    results: dict[str, dict[str, list[Measure]]] = {m: {"new": [], "replay": []} for m in makers}
    for r in range(args.rounds):
        work = batches(args.devices, args.batches, args.batch, seed=r)
        for name, make in makers.items():
            with engine.begin() as conn:
                conn.execute(text("TRUNCATE readings, reading_rollups"))
            store = make(TelemetryStore(tmp / f"{name}-{r}.sqlite"), engine)
            store.bind_devices(ids, [("smoke", "temp")] * args.devices)
            results[name]["new"].append(timed(store, work, postmaster))
            results[name]["replay"].append(timed(store, work, postmaster))
            assert store.count() == args.batches * args.batch  # every sample once (times all differ)
            store.close()
            new, replay = results[name]["new"][-1], results[name]["replay"][-1]
            console.print(f"round {r + 1} {name}: new {show(new)}; replay {show(replay)}")
    return results


def history(engine: Engine, tmp: Path, queries: int) -> dict[str, list[float]]:
    """Seconds per `history(buckets=1000)` of one series' 30 days at one reading per 10 s
    (259,200 samples), written as four series interleaved, an hour of each per batch: from the
    rollups (what ClusterTelemetry does) and from every sample, alternately; both answer the same."""
    store = ClusterTelemetry(TelemetryStore(tmp / "history.sqlite"), engine)
    store.bind([(f"hist-{d}", "smoke") for d in range(4)])
    n = 30 * 86_400 // 10
    for a in range(0, n, 360):
        i = np.arange(a, min(n, a + 360))
        for d in range(4):
            ts = (1.7e9 + i * 10.0).astype(np.float64)
            store.write(np.full(i.size, d, np.int32), ts, np.sin(i / 100.0).astype(np.float64), [])
    samples = SampleHistory(store.local, engine)
    took: dict[str, list[float]] = {"rollups": [], "samples": []}
    counts = {}
    for _ in range(queries):
        for name, reader in (("rollups", store), ("samples", samples)):
            started = time.perf_counter()
            h = reader.history("hist-2", "smoke", 1.7e9, 1.7e9 + n * 10.0, buckets=1000)
            took[name].append(time.perf_counter() - started)
            assert h.count is not None
            assert int(h.count.sum()) == n
            counts[name] = h.count
    assert (counts["rollups"] == counts["samples"]).all()
    store.close()
    return took


def show(m: Measure) -> str:
    server = "" if m.server_us is None else f", server {m.server_us:.1f} us"
    return f"{m.rows_per_s:,.0f} rows/s, CPU per row: client {m.client_us:.1f} us{server}"


def cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", type=int, default=20_000)
    p.add_argument("--batches", type=int, default=100)
    p.add_argument("--batch", type=int, default=5_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--postgres-url", default="")
    p.add_argument("--queries", type=int, default=50, help="history queries (0: none)")
    args = p.parse_args()
    private = None
    url = args.postgres_url
    if not url:
        private = PrivatePostgres(durable=True).start()
        url = private.url(private.create_database())
    postmaster = int((private.data / "postmaster.pid").read_text().split()[0]) if private else None
    engine, _ = open_store(url)
    try:
        with engine.connect() as conn:
            server = conn.execute(text("SHOW server_version")).scalar_one()
            fsync = conn.execute(text("SHOW fsync")).scalar_one()
        with tempfile.TemporaryDirectory() as tmp:
            results = run(engine, args, Path(tmp), postmaster)
            took = history(engine, Path(tmp), args.queries) if args.queries else {}
    finally:
        engine.dispose()
        if private is not None:
            private.close()
    table = Table(
        title=f"{args.batches} batches of {args.batch:,} samples, {args.devices:,} devices x 2 channels"
    )
    table.add_column("method")
    for what in ("new", "replay"):
        table.add_column(f"{what}: rows/s", justify="right")
        table.add_column("client us/row", justify="right")
        table.add_column("server us/row", justify="right")
    for name, r in results.items():
        cells = []
        for what in ("new", "replay"):
            ms = r[what]
            servers = [m.server_us for m in ms if m.server_us is not None]
            cells += [
                f"{statistics.median(m.rows_per_s for m in ms):,.0f}",
                f"{statistics.median(m.client_us for m in ms):.1f}",
                f"{statistics.median(servers):.1f}" if servers else "-",
            ]
        table.add_row(name, *cells)
    console.print(table)
    console.print("medians of the rounds; CPU in microseconds per row")
    for name, seconds in took.items():
        q = np.array(seconds) * 1000.0
        console.print(
            f"history from {name}, 30 days of one series (259,200 samples) in 1,000 buckets, "
            f"{len(q)} queries: p50 {np.percentile(q, 50):.1f} ms, p99 {np.percentile(q, 99):.1f} ms, "
            f"max {q.max():.1f} ms"
        )
    console.print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {cpu()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, PostgreSQL {server} (fsync {fsync}), "
        f"psycopg {psycopg.__version__}"
    )


if __name__ == "__main__":
    main()
