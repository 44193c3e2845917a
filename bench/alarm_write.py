"""The fixed cost of one alarm write that raises a fire: CPU per `AlarmService.apply` call whose
events raise a fire alarm on one detector of a zone no alarm has touched yet, as every measured
alarm of `bench.alarm_latency` does.

    python3 -m bench.alarm_write --writes 300

A registry of smoke detectors (the shipped `smoke-photoelectric` profile, 10 per zone, 50 zones a
floor, one building), laid out as the latency bench lays them. Write i raises detector 10·i (the
first of zone i): the events a reading jumping from clean air to a fire level gives (RAISE
pre_alarm, RAISE fire, one timestamp). The write raises the pre-alarm, raises the fire alarm and
supersedes the pre-alarm (three transitions), and the alarms join the building's fire incident:
the first write opens it, and, as in the latency bench, every later one finds it open (the fire
alarms stay latched) and spreads it to one more zone (two incident steps, the incident's place,
zone and floor lists written again), owing the pushes of each. So a write's cost grows slowly with
the incident (its members are read once per write). Half a second later a second write clears
the detector (CLEAR fire, CLEAR pre_alarm: the fire alarm stays latched, NORMAL), as the latency
bench sets the reading back half-way; those are reported apart. The service's push routes are
what `firewatch serve` has with default settings and a broker: the MQTT alarm-topic route (every
transition and incident step pushed); with `--control-room`, also a route of incident notices to
the control room's role.

CPU is the applying thread's (`time.thread_time`, what `bench.alarm_latency` reports as
`write_cpu`), per write: median and 95th percentile, after `--warmup` writes that are not counted.
The store is SQLite in a temporary folder (its own work is in this thread's CPU), fresh per run.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from alarms.service import AlarmService
from alarms.tickets import TicketOpener
from core.domain import AlarmCategory, DetectorEvent, DetectorEventKind
from core.registry import BuildingSpec, Device, FloorSpec, Registry, SiteSpec, ZoneSpec
from core.settings import PushRoute, TicketPolicy
from device_profiles.loader import load_profiles
from ingest.index import DeviceIndex
from storage.db import open_store
from storage.registry_sync import sync_registry

console = Console()
T0 = 1_800_000_000.0
SITE = "bench"
EVERY_S = 1.0  # between raises (the latency bench's default is slower; the clock only orders them)


def registry(zones: int) -> Registry:
    """Ten smoke detectors per zone, 50 zones per floor (as bench.alarm_latency lays them out)."""
    floors = [
        FloorSpec(id=f"f{f}", name=f"{f}F", zones=[ZoneSpec(id=f"z{z}", name=f"{z}区") for z in range(50)])
        for f in range(-(-zones // 50))
    ]
    site = SiteSpec(id=SITE, name=SITE, buildings=[BuildingSpec(id="b1", name="b1", floors=floors)])
    devs = [
        Device(
            id=f"d{i:06d}",
            profile="smoke-photoelectric",
            place=f"{SITE}/b1/f{(i // 10) // 50}/z{(i // 10) % 50}",
        )
        for i in range(zones * 10)
    ]
    return Registry([site], devs)


def fire(device: str, ts: float) -> list[DetectorEvent]:
    raise_ = DetectorEventKind.RAISE
    return [
        DetectorEvent(device, "smoke.pre_alarm", raise_, AlarmCategory.PRE_ALARM, ts, 0.30, "smoke"),
        DetectorEvent(device, "smoke.alarm", raise_, AlarmCategory.FIRE, ts, 0.30, "smoke"),
    ]


def clear(device: str, ts: float) -> list[DetectorEvent]:
    clear_ = DetectorEventKind.CLEAR
    return [
        DetectorEvent(device, "smoke.alarm", clear_, AlarmCategory.FIRE, ts, 0.02, "smoke"),
        DetectorEvent(device, "smoke.pre_alarm", clear_, AlarmCategory.PRE_ALARM, ts, 0.02, "smoke"),
    ]


def run(writes: int, warmup: int, control_room: bool) -> tuple[list[float], list[float], int]:
    """CPU seconds of each counted raising write and of each clearing write; transitions made by
    the raising writes."""
    from firewatch.service import ALARM_TOPIC_ROUTE  # the service's imports: only when run

    zones = writes + warmup
    reg = registry(zones)
    profiles = load_profiles()
    raises: list[float] = []
    clears: list[float] = []
    transitions = 0
    with tempfile.TemporaryDirectory() as tmp:
        _, sessions = open_store(f"sqlite:///{Path(tmp) / 'state.sqlite'}")
        sync_registry(sessions, reg, profiles)
        index = DeviceIndex.build(reg, profiles)
        routes = [ALARM_TOPIC_ROUTE]
        if control_room:
            control = PushRoute(name="control-room", url="json://127.0.0.1:9/none", roles=["control_room"])
            routes.insert(0, control)
        clock_now = [T0]
        service = AlarmService(
            sessions, index, TicketOpener(index, TicketPolicy()), lambda: clock_now[0], routes
        )
        for i in range(zones):
            device = f"d{10 * i:06d}"
            ts = T0 + i * EVERY_S
            clock_now[0] = ts
            cpu = time.thread_time()
            got, _ = service.apply(fire(device, ts))
            spent = time.thread_time() - cpu
            if i >= warmup:
                raises.append(spent)
                transitions += len(got)
            clock_now[0] = ts + EVERY_S / 2
            cpu = time.thread_time()
            service.apply(clear(device, ts + EVERY_S / 2))
            if i >= warmup:
                clears.append(time.thread_time() - cpu)
        sessions.kw["bind"].dispose()
    return raises, clears, transitions


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--writes", type=int, default=300, help="raising writes counted (one zone each)")
    ap.add_argument("--warmup", type=int, default=30, help="raising writes first, not counted")
    ap.add_argument("--repeat", type=int, default=1, help="runs, each on a fresh store")
    ap.add_argument("--control-room", action="store_true", help="also the control room's incident route")
    args = ap.parse_args()
    routes = "control room + MQTT alarm topic" if args.control_room else "MQTT alarm topic"
    table = Table(title=f"one-fire alarm writes, SQLite, {args.writes} counted per run, pushes: {routes}")
    for col in ("run", "transitions / write", "raise CPU ms median", "p95", "clear CPU ms median", "p95"):
        table.add_column(col, justify="right")
    for r in range(args.repeat):
        raises, clears, transitions = run(args.writes, args.warmup, args.control_room)
        table.add_row(
            str(r + 1),
            f"{transitions / len(raises):.1f}",
            f"{statistics.median(raises) * 1e3:.2f}",
            f"{pct(raises, 0.95) * 1e3:.2f}",
            f"{statistics.median(clears) * 1e3:.2f}",
            f"{pct(clears, 0.95) * 1e3:.2f}",
        )
    console.print(table)
    console.print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}")


if __name__ == "__main__":
    main()
