"""Clustered telemetry into PostgreSQL (storage/pg_telemetry.py): rows/s of two ways to insert a
batch's readings with ON CONFLICT DO NOTHING, for new readings and for a replay of them.

    flock /tmp/bench-heavy.lock python3 -m bench.pg_telemetry [--devices 20000] [--batches 100] \
        [--batch 5000] [--rounds 3] [--postgres-url URL]

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
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import psycopg
from rich.console import Console
from rich.table import Table
from sqlalchemy import Connection, Engine, text

from storage.db import open_store
from storage.pg_telemetry import ClusterTelemetry
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
                "INSERT INTO readings(device_id, channel, ts, value) SELECT * FROM unnest("
                "CAST(:d AS text[]), CAST(:c AS text[]), CAST(:ts AS float8[]), CAST(:v AS float8[])) "
                "ON CONFLICT DO NOTHING"
            ),
            {"d": device.tolist(), "c": channel.tolist(), "ts": ts.tolist(), "v": value.tolist()},
        )


def batches(devices: int, n: int, size: int, seed: int) -> list[Batch]:
    """`n` batches of `size` samples of random slots, at increasing times (20,000 samples/s)."""
    rng = np.random.default_rng(seed)
    out = []
    for b in range(n):
        slot = rng.integers(0, 2 * devices, size).astype(np.int32)
        ts = 1.7e9 + (b * size + np.arange(size)) / 20_000.0
        out.append((slot, ts, rng.normal(20.0, 5.0, size)))
    return out


def timed(store: ClusterTelemetry, work: list[Batch]) -> float:
    """Rows per second of writing `work`, a transaction per batch."""
    started = time.perf_counter()
    for slot, ts, value in work:
        store.write(slot, ts, value, [])
    return sum(b[1].size for b in work) / (time.perf_counter() - started)


def run(engine: Engine, args: argparse.Namespace, tmp: Path) -> dict[str, dict[str, list[float]]]:
    makers: dict[str, Callable[[TelemetryStore, Engine], ClusterTelemetry]] = {
        "copy": ClusterTelemetry,
        "unnest": UnnestTelemetry,
    }
    ids = [f"dev-{i:07d}" for i in range(args.devices)]
    results: dict[str, dict[str, list[float]]] = {m: {"new": [], "replay": []} for m in makers}
    for r in range(args.rounds):
        work = batches(args.devices, args.batches, args.batch, seed=r)
        for name, make in makers.items():
            with engine.begin() as conn:
                conn.execute(text("TRUNCATE readings"))
            store = make(TelemetryStore(tmp / f"{name}-{r}.sqlite"), engine)
            store.bind_devices(ids, [("smoke", "temp")] * args.devices)
            results[name]["new"].append(timed(store, work))
            results[name]["replay"].append(timed(store, work))
            assert store.count() == args.batches * args.batch  # every sample once (times all differ)
            store.close()
            console.print(
                f"round {r + 1} {name}: {results[name]['new'][-1]:,.0f} rows/s new, "
                f"{results[name]['replay'][-1]:,.0f} rows/s replay"
            )
    return results


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
    args = p.parse_args()
    private = None
    url = args.postgres_url
    if not url:
        private = PrivatePostgres(durable=True).start()
        url = private.url(private.create_database())
    engine, _ = open_store(url)
    try:
        with engine.connect() as conn:
            server = conn.execute(text("SHOW server_version")).scalar_one()
            fsync = conn.execute(text("SHOW fsync")).scalar_one()
        with tempfile.TemporaryDirectory() as tmp:
            results = run(engine, args, Path(tmp))
    finally:
        engine.dispose()
        if private is not None:
            private.close()
    table = Table(
        title=f"{args.batches} batches of {args.batch:,} samples, {args.devices:,} devices x 2 channels"
    )
    table.add_column("method")
    table.add_column("new rows/s (median of rounds)", justify="right")
    table.add_column("replay rows/s (median)", justify="right")
    for name, r in results.items():
        table.add_row(name, f"{statistics.median(r['new']):,.0f}", f"{statistics.median(r['replay']):,.0f}")
    console.print(table)
    console.print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {cpu()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, PostgreSQL {server} (fsync {fsync}), "
        f"psycopg {psycopg.__version__}"
    )


if __name__ == "__main__":
    main()
