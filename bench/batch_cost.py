"""CPU per batch and per message of the pipeline's two steps, by batch size: detection (decode,
detect, alarms: `Pipeline.detect_deferring`) and storage (`Pipeline.store_telemetry`).

    python3 -m bench.batch_cost --sizes 10 50 100 250 1000 5000

The service as `bench.alarm_latency` builds it (5,000 smoke detectors, SQLite stores in a temporary
directory), driven directly in this thread, no broker: normal readings of the background devices,
round-robin, each device's seq going up. CPU time (`time.process_time`) rather than wall time, so
other work on a shared machine changes the figures less. A fit of CPU per batch against batch size
splits it into a fixed cost per batch and a cost per message: with the small batches of a live
load, the fixed cost is what a message pays most (docs/benchmarks.md, "Alarm latency under load").
"""

from __future__ import annotations

import argparse
import logging
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from bench.alarm_latency import SITE, alarm_device_indexes, device_id, registry
from core.settings import MqttSettings, Settings
from device_profiles.loader import load_profiles
from firewatch.service import Service
from ingest.envelope import Message

console = Console()


class Readings:
    """Normal readings of the background devices, round-robin, as the latency bench publishes them."""

    def __init__(self, devices: int, alarm_devices: int) -> None:
        alarm = set(alarm_device_indexes(alarm_devices))
        self.devices = [i for i in range(devices) if i not in alarm]
        self.topics = [f"fw/v1/{SITE}/{device_id(i)}/telemetry" for i in self.devices]
        self.k = 0

    def batch(self, n: int) -> list[Message]:
        now = time.time()
        out = []
        for _ in range(n):
            k, d = self.k, self.k % len(self.devices)
            payload = b'{"ts":%.3f,"seq":%d,"v":{"smoke":0.02%d,"temp":24.%d}}' % (
                now,
                k // len(self.devices) + 1,
                k % 5,
                k % 4,
            )
            out.append(Message(self.topics[d], payload, now, 1, k % 65535 + 1))
            self.k += 1
        return out


def measure(sizes: list[int], messages: int, devices: int, alarm_devices: int) -> list[dict[str, float]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp), mqtt=MqttSettings(url="mqtt://127.0.0.1:1", client_id="bench-batch-cost")
        )
        service = Service(settings, registry=registry(devices, alarm_devices), profiles=load_profiles())
        pipeline = service.pipeline
        readings = Readings(devices, alarm_devices)
        pipeline.detect_deferring(readings.batch(1000))  # warm: first-use costs are not per batch
        for size in sizes:
            batches = max(messages // size, 20)
            detect = store = 0.0
            for _ in range(batches):
                batch = readings.batch(size)
                t0 = time.process_time()
                decoded, _ = pipeline.detect_deferring(batch)
                t1 = time.process_time()
                pipeline.store_telemetry(decoded)
                detect += t1 - t0
                store += time.process_time() - t1
            n = batches * size
            rows.append(
                {
                    "size": size,
                    "batches": batches,
                    "detect_ms_per_batch": 1e3 * detect / batches,
                    "detect_us_per_message": 1e6 * detect / n,
                    "store_ms_per_batch": 1e3 * store / batches,
                    "store_us_per_message": 1e6 * store / n,
                }
            )
    return rows


FIT_MAX = 1_000  # live batches are this size or smaller; the largest batches cost more per message


def fit(rows: list[dict[str, float]], step: str) -> tuple[float, float]:
    """(fixed ms per batch, µs per message) of a least-squares line through ms per batch, over the
    sizes up to FIT_MAX."""
    small = [r for r in rows if r["size"] <= FIT_MAX] or rows
    x = np.array([r["size"] for r in small], dtype=float)
    y = np.array([r[f"{step}_ms_per_batch"] for r in small])
    per_message, fixed = np.polyfit(x, y, 1)
    return float(fixed), float(per_message * 1000)


def cli() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 100, 250, 1000, 5000])
    parser.add_argument(
        "--messages", type=int, default=100_000, help="messages per size (at least 20 batches)"
    )
    parser.add_argument("--devices", type=int, default=5000)
    parser.add_argument("--alarms", type=int, default=200, help="alarm devices (they send nothing here)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    rows = measure(args.sizes, args.messages, args.devices, args.alarms)
    table = Table(title="CPU per batch, by batch size (process time)")
    for col in ("batch", "detect ms/batch", "detect µs/msg", "store ms/batch", "store µs/msg"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            f"{r['size']:,}",
            f"{r['detect_ms_per_batch']:.2f}",
            f"{r['detect_us_per_message']:.1f}",
            f"{r['store_ms_per_batch']:.2f}",
            f"{r['store_us_per_message']:.1f}",
        )
    console.print(table)
    for step in ("detect", "store"):
        fixed, per = fit(rows, step)
        console.print(
            f"{step}: {fixed:.2f} ms per batch + {per:.1f} µs per message "
            f"(least squares over batches of up to {FIT_MAX:,})"
        )
    console.print(
        f"machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}; "
        f"{time.strftime('%Y-%m-%d')}"
    )


if __name__ == "__main__":
    cli()
