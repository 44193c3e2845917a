"""A mass outage: every device of a generated ~100,000-device hospital silent at once, through the
real service (state store on SQLite), while the API is asked continuously over real HTTP.

    python3 -m bench.outage [--devices 100000] [--seconds 420]

The service is built as in production (registry mirrored in its SQLite store, engine, pipeline,
alarm and ticket services) but not connected to a broker: nobody reports. Its clock is stepped one
simulated second per liveness check (`Pipeline.check_liveness`, as the liveness timer calls it),
from start-up through every profile's offline window (the longest is 3 x 120 s) and beyond, one
check every `--pace` real seconds (default 0.1: ten times faster than the service's 1 s timer).
Meanwhile a client thread asks `GET /readyz`, `/metrics`, `/api/v1/alarms` and `/api/v1/incidents`
in turn through uvicorn on a loopback port (a viewer's API key). At the end it counts the outage and
offline alarms, the incidents and the tickets in the store. Bars (issue 19): at most 10 outage
alarms and 10 tickets; API p99 under 200 ms throughout. Results: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from bench.serving import serving
from core.domain import Role
from core.registry import Registry
from core.settings import MqttSettings, Settings
from detectors.liveness import OFFLINE, OUTAGE
from firewatch.service import Service
from simulators.hospital import build_hospital, hospital_for_devices
from storage.models import AlarmRow, IncidentRow, TicketRow

console = Console()
PATHS = ("/readyz", "/metrics", "/api/v1/alarms", "/api/v1/incidents?open=true")


class SteppedClock:
    """Simulated epoch seconds, moved by the bench only."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def ask(url: str, token: str, stop: threading.Event, out: dict[str, list[float]]) -> None:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        i = 0
        while not stop.is_set():
            path = PATHS[i % len(PATHS)]
            began = time.perf_counter()
            client.get(path)  # /readyz answers 503 here (no broker): its latency is what counts
            out[path].append((time.perf_counter() - began) * 1000)
            i += 1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--seconds", type=int, default=420, help="simulated seconds of silence")
    parser.add_argument("--pace", type=float, default=0.1, help="real seconds per simulated second")
    args = parser.parse_args()
    size = hospital_for_devices(args.devices)
    sites, devices = build_hospital(**dataclasses.asdict(size))
    registry = Registry(sites, devices)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.time()
        clock = SteppedClock(start)
        began = time.perf_counter()
        # A broker URL that is never dialled: nobody reports, which is the point.
        service = Service(
            Settings(data_dir=Path(tmp), mqtt=MqttSettings(url="mqtt://127.0.0.1:9")),
            registry=registry,
            clock=clock,
        )
        console.print(f"{registry_size(service)} devices registered in {time.perf_counter() - began:.1f} s")
        service.pipeline.connection = lambda: 1  # as if listening: the silence is the devices'
        service.engine.grace(start)
        with serving(service.app_context()) as url:
            key, _ = service.accounts.create_api_key("bench-outage", [Role.VIEWER], by="bench")
            latencies: dict[str, list[float]] = {p: [] for p in PATHS}
            stop = threading.Event()
            asker = threading.Thread(target=ask, args=(url, key.token, stop, latencies))
            asker.start()
            check_ms = []
            began = time.perf_counter()
            for _ in range(args.seconds):
                clock.now += 1.0
                t = time.perf_counter()
                service.pipeline.check_liveness()
                check_ms.append((time.perf_counter() - t) * 1000)
                time.sleep(max(0.0, args.pace - (time.perf_counter() - t)))
            event_s = time.perf_counter() - began
            stop.set()
            asker.join(60)
        with service.sessions() as s:
            outages = s.scalar(
                select(func.count()).select_from(AlarmRow).where(AlarmRow.alarm_type == OUTAGE)
            )
            offline = s.scalar(
                select(func.count()).select_from(AlarmRow).where(AlarmRow.alarm_type == OFFLINE)
            )
            tickets = s.scalar(select(func.count()).select_from(TicketRow))
            counted = s.scalars(select(AlarmRow.value).where(AlarmRow.alarm_type == OUTAGE)).all()
            incidents = s.execute(select(IncidentRow.kind, IncidentRow.device_count)).all()
        service.telemetry.close()
    table = Table(title=f"API during a mass outage ({args.seconds} simulated s in {event_s:.1f} s), ms")
    for col in ("path", "requests", "p50", "p99", "max"):
        table.add_column(col, justify="right" if col != "path" else "left")
    for path, ms in latencies.items():
        a = np.array(ms)
        p50, p99 = np.percentile(a, [50, 99])
        table.add_row(path, str(a.size), f"{p50:.1f}", f"{p99:.1f}", f"{a.max():.1f}")
    console.print(table)
    c = np.array(check_ms)
    console.print(
        f"outage alarms: {outages} (devices counted: {[int(v or 0) for v in counted]}); offline alarms: "
        f"{offline}; tickets: {tickets}; incidents (kind, devices): {[tuple(i) for i in incidents]}; "
        f"liveness check p50 {np.percentile(c, 50):.1f} ms, "
        f"max {c.max():.1f} ms"
    )
    console.print(
        f"{platform.processor() or platform.machine()}, {datetime.now(UTC):%Y-%m-%d}; bars: <= 10 outage "
        "alarms and tickets, API p99 < 200 ms (issue 19)"
    )


def registry_size(service: Service) -> str:
    return f"{service.index.n_devices:,}"


if __name__ == "__main__":
    main()
