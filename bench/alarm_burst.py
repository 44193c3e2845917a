"""The alarm path's cost per transition, amortised over a burst: CPU and wall time of
`AlarmService.apply` for the detector events a drain of data with threshold crossings produces.

    python3 -m bench.alarm_burst --devices 2000 --rounds 4 --batch 500
    python3 -m bench.alarm_burst --postgres-url postgresql://root@127.0.0.1/firewatch_bench

A registry of smoke detectors (the shipped `smoke-photoelectric` profile, 10 per zone). Each round,
every detector's smoke crosses up and back down, and every tenth detector also reports a fault
and its end, so one round of events per device is what the detectors emit for it:

- up: RAISE pre_alarm (suppressed once the fire alarm latches), RAISE fire (raised, then an
  occurrence of the latched alarm: REPEATED; the first one supersedes the pre-alarm);
- down: CLEAR fire (NORMAL: the fire alarm stays latched, GB 4717), CLEAR pre_alarm;
- every tenth device: RAISE device.fault (a ticket) and CLEAR device.fault.

Events go to `apply` in batches of `--batch`, as the pipeline hands over one drain batch's events,
with one push route (incident notices to the control room, so incident and outbox rows are written
too); with `--alarm-topic`, also the service's MQTT alarm-topic route (every transition and every
incident step pushed, as `firewatch serve` and the drain benchmark have it). The store is fresh
per run: SQLite in a temporary folder, or a PostgreSQL database given by URL (created empty first;
dropped after). CPU is this process's (`time.process_time`), which on
SQLite includes the database's own work; on PostgreSQL the server's CPU is not counted.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

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


def registry(devices: int) -> Registry:
    zones = max(1, devices // 10)
    floors = [
        FloorSpec(
            id=f"f{f}",
            name=f"{f + 1}F",
            zones=[ZoneSpec(id=f"z{z}", name=f"{z + 1}区") for z in range(zones // 10 + 1)],
        )
        for f in range(10)
    ]
    site = SiteSpec(
        id="bench", name="基准医院", buildings=[BuildingSpec(id="b1", name="住院楼", floors=floors)]
    )
    devs = [
        Device(id=f"d{i:06d}", profile="smoke-photoelectric", place=f"bench/b1/f{(i // 10) % 10}/z{i // 100}")
        for i in range(devices)
    ]
    return Registry([site], devs)


def burst(devices: int, rounds: int) -> list[DetectorEvent]:
    """The events of `rounds` crossings per device, in time order."""
    out: list[DetectorEvent] = []
    for r in range(rounds):
        up, down = T0 + r * 60.0, T0 + r * 60.0 + 30.0
        for i in range(devices):
            d = f"d{i:06d}"
            ts = up + i * 1e-4
            out.append(
                DetectorEvent(
                    d, "smoke.pre_alarm", DetectorEventKind.RAISE, AlarmCategory.PRE_ALARM, ts, 0.09, "smoke"
                )
            )
            out.append(
                DetectorEvent(d, "smoke.alarm", DetectorEventKind.RAISE, AlarmCategory.FIRE, ts, 0.2, "smoke")
            )
            if i % 10 == 0:
                out.append(
                    DetectorEvent(d, "device.fault", DetectorEventKind.RAISE, AlarmCategory.FAULT, ts, None)
                )
        for i in range(devices):
            d = f"d{i:06d}"
            ts = down + i * 1e-4
            out.append(
                DetectorEvent(
                    d, "smoke.alarm", DetectorEventKind.CLEAR, AlarmCategory.FIRE, ts, 0.02, "smoke"
                )
            )
            out.append(
                DetectorEvent(
                    d, "smoke.pre_alarm", DetectorEventKind.CLEAR, AlarmCategory.PRE_ALARM, ts, 0.02, "smoke"
                )
            )
            if i % 10 == 0:
                out.append(
                    DetectorEvent(d, "device.fault", DetectorEventKind.CLEAR, AlarmCategory.FAULT, ts, None)
                )
    return out


@dataclass
class Result:
    events: int
    transitions: int
    cpu_s: float
    wall_s: float

    @property
    def cpu_us_per_transition(self) -> float:
        return self.cpu_s / max(1, self.transitions) * 1e6

    @property
    def wall_us_per_transition(self) -> float:
        return self.wall_s / max(1, self.transitions) * 1e6


def run(
    url: str, devices: int, rounds: int, batch: int, progress: Progress, *, alarm_topic: bool = False
) -> Result:
    reg = registry(devices)
    profiles = load_profiles()
    _, sessions = open_store(url)
    sync_registry(sessions, reg, profiles)
    index = DeviceIndex.build(reg, profiles)
    routes = [PushRoute(name="control-room", url="json://127.0.0.1:9/none", roles=["control_room"])]
    if alarm_topic:
        from firewatch.service import ALARM_TOPIC_ROUTE  # the service's imports: only when asked

        routes.append(ALARM_TOPIC_ROUTE)
    clock_now = [T0]
    service = AlarmService(sessions, index, TicketOpener(index, TicketPolicy()), lambda: clock_now[0], routes)
    events = burst(devices, rounds)
    task = progress.add_task(f"{make_url(url).get_backend_name()}: {len(events):,} events", total=len(events))
    transitions = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(0, len(events), batch):
        chunk = events[i : i + batch]
        clock_now[0] = chunk[-1].ts
        got, _ = service.apply(chunk)
        transitions += len(got)
        progress.advance(task, len(chunk))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    sessions.kw["bind"].dispose()
    return Result(len(events), transitions, cpu, wall)


def fresh_postgres(url: str) -> str:
    """Recreate the named database empty (on the server the URL names, via its `postgres` db)."""
    target = make_url(url)
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{target.database}"'))
        c.execute(text(f'CREATE DATABASE "{target.database}"'))
    admin.dispose()
    return url


def drop_postgres(url: str) -> None:
    target = make_url(url)
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{target.database}"'))
    admin.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=2000, help="smoke detectors (10 per zone)")
    ap.add_argument("--rounds", type=int, default=4, help="crossings up and down per detector")
    ap.add_argument("--batch", type=int, default=500, help="events per apply() call (one drain batch)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per store, each on a fresh store")
    ap.add_argument(
        "--postgres-url",
        default="",
        help="also run on PostgreSQL: a database URL this bench may drop and create "
        "(e.g. postgresql+psycopg://root@127.0.0.1/firewatch_bench); never a database you keep",
    )
    ap.add_argument(
        "--alarm-topic",
        action="store_true",
        help="also push every transition and incident step on the MQTT alarm-topic route",
    )
    args = ap.parse_args()
    stores: list[tuple[str, str]] = []
    results: dict[str, list[Result]] = {"sqlite": [], "postgresql": []}
    with Progress(console=console, transient=True) as progress:
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                results["sqlite"].append(
                    run(
                        f"sqlite:///{Path(tmp) / 'state.sqlite'}",
                        args.devices,
                        args.rounds,
                        args.batch,
                        progress,
                        alarm_topic=args.alarm_topic,
                    )
                )
            if args.postgres_url:
                url = fresh_postgres(args.postgres_url)
                try:
                    topic = args.alarm_topic
                    results["postgresql"].append(
                        run(url, args.devices, args.rounds, args.batch, progress, alarm_topic=topic)
                    )
                finally:
                    drop_postgres(url)
    stores = [(k, k) for k, v in results.items() if v]
    routes = "control room + MQTT alarm topic" if args.alarm_topic else "control room"
    table = Table(
        title=f"alarm path, {args.devices:,} detectors x {args.rounds} rounds, batches of {args.batch}, "
        f"pushes: {routes}"
    )
    for col in (
        "store",
        "events",
        "transitions",
        "CPU µs / transition (median, range)",
        "wall µs / transition",
    ):
        table.add_column(col, justify="right")
    for name, _ in stores:
        rs = sorted(results[name], key=lambda r: r.cpu_us_per_transition)
        mid = rs[len(rs) // 2]
        table.add_row(
            name,
            f"{mid.events:,}",
            f"{mid.transitions:,}",
            f"{mid.cpu_us_per_transition:,.0f} "
            f"({rs[0].cpu_us_per_transition:,.0f}–{rs[-1].cpu_us_per_transition:,.0f})",
            f"{sorted(r.wall_us_per_transition for r in rs)[len(rs) // 2]:,.0f}",
        )
    console.print(table)
    console.print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}")


if __name__ == "__main__":
    main()
