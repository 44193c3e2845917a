"""A device's history through the API: one device, one channel, 30 days at one reading per 10 s,
downsampled to 1,000 buckets (min/max/mean/count), over real HTTP, on SQLite.

    python3 -m bench.history_api [--days 30] [--queries 200]

The service's own telemetry store is filled as the pipeline fills it (a staged batch per hour of
readings, compacted as it goes), then `GET /api/v1/devices/{id}/history` is asked `--queries` times
through uvicorn on a loopback port, and the store's `history()` the same number of times in the
same run, so the API's share (routing, validation, JSON of 4 x 1,000 numbers, HTTP) shows as a
difference, sign-in included: the API answers only signed-in callers, so the bench mints a viewer's
API key in its own throwaway store and sends it as `Authorization: Bearer <key>` on every query (a
resolved token is cached, as in production). No token is needed to run it. Results:
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from bench.serving import serving
from core.domain import Role
from core.settings import MqttSettings, Settings
from firewatch.service import Service

console = Console()
DEVICE, CHANNEL = "b2-f3-z1-r303-smk", "smoke"
PER_BATCH = 360  # an hour of one reading per 10 s


def fill(service: Service, days: float, progress: Progress) -> tuple[float, float]:
    index = service.index
    dev = index.dev_of[DEVICE]
    slot = np.array([int(index.slot_base[dev]) + index.channel_offsets[dev][CHANNEL]], dtype=np.int32)
    readings = int(days * 86_400 / 10)
    end = time.time()
    start = end - readings * 10.0
    rng = np.random.default_rng(1)
    task = progress.add_task(f"writing {days:g} days of {DEVICE}/{CHANNEL}", total=readings)
    for first in range(0, readings, PER_BATCH):
        k = np.arange(first, min(first + PER_BATCH, readings))
        ts = (start + k * 10.0).astype(np.float64)
        value = np.round(0.02 + rng.normal(0, 0.0015, k.size), 3).astype(np.float64)
        service.telemetry.write(np.repeat(slot, k.size), ts, value, [])
        service.telemetry.compact()
        progress.advance(task, k.size)
    return start, end


def timed(call: object, n: int) -> np.ndarray:
    assert callable(call)
    out = []
    for _ in range(n):
        began = time.perf_counter()
        call()
        out.append((time.perf_counter() - began) * 1000)
    return np.array(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Progress(console=console) as progress:
        # A broker URL that is never dialled: only the API and the stores are exercised.
        service = Service(Settings(data_dir=Path(tmp), mqtt=MqttSettings(url="mqtt://127.0.0.1:9")))
        start, end = fill(service, args.days, progress)
        with serving(service.app_context()) as base:
            url = f"{base}/api/v1/devices/{DEVICE}/history"
            params: dict[str, str | float] = {"channel": CHANNEL, "start": start, "end": end, "buckets": 1000}
            key, _ = service.accounts.create_api_key("bench-history", [Role.VIEWER], by="bench")
            with httpx.Client(headers={"Authorization": f"Bearer {key.token}"}) as client:
                body = client.get(url, params=params).json()
                assert len(body["ts"]) == 1000, len(body["ts"])
                assert sum(body["count"]) == int(args.days * 8640), sum(body["count"])

                def api() -> None:
                    client.get(url, params=params).raise_for_status()

                def store() -> None:
                    service.telemetry.history(DEVICE, CHANNEL, start, end, buckets=1000)

                timed(api, 20)  # warm-up
                results = {
                    "API over HTTP": timed(api, args.queries),
                    "store.history()": timed(store, args.queries),
                }
        service.telemetry.close()
    table = Table(
        title=f"history of one channel: {args.days:g} days at 1 reading / 10 s "
        f"({int(args.days * 8640):,} readings), 1,000 buckets, ms per query"
    )
    for col in ("path", "p50", "p90", "p99", "max"):
        table.add_column(col, justify="right" if col != "path" else "left")
    for name, ms in results.items():
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        table.add_row(name, f"{p50:.1f}", f"{p90:.1f}", f"{p99:.1f}", f"{ms.max():.1f}")
    console.print(table)
    console.print(
        f"{args.queries} queries each; {platform.processor() or platform.machine()}, "
        f"{datetime.now(UTC):%Y-%m-%d}; quality bar: p99 < 100 ms (issue 7)"
    )


if __name__ == "__main__":
    main()
