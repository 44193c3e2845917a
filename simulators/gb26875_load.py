"""Load on a GB/T 26875.3 listener: many transmission devices, each its own TCP connection,
heartbeating and uploading state changes at a bounded total rate (`firewatch simulate gb26875`).

Device n has address `first_address + n` and one panel with a loop of points; every upload is one
point's whole status word with its fault bit (故障) set or cleared in turn, so the centre sees a
change each time. Heartbeats are spread evenly over the interval (device n beats at n/N of it), as
a building's devices, powered up at different times, would. Counts and time are bounded, and only
a loopback address is accepted: this is a test tool, not a way to flood a real centre.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from simulators.gb26875_link import StationLink
from simulators.gb26875_panel import GbState, Installation, installation_from_counts, time_tag, with_state

MAX_DEVICES = 20_000
MAX_RATE = 5_000.0  # state uploads per second, all devices together
MAX_DURATION_S = 3_600.0
TICK_S = 0.05
CONNECT_AT_ONCE = 200  # connections being opened at a time (a burst of SYNs overflows the backlog)


class LoadError(ValueError):
    """A load that is out of bounds or aimed off this host."""


@dataclass(frozen=True)
class LoadPlan:
    devices: int
    host: str = "127.0.0.1"
    port: int = 26875
    duration_s: float = 60.0
    rate: float = 10.0  # state uploads per second in all
    heartbeat_s: float = 30.0
    first_address: int = 100_000
    points: int = 8  # per device

    def check(self) -> None:
        if not 1 <= self.devices <= MAX_DEVICES:
            raise LoadError(f"--devices {self.devices}: 1 to {MAX_DEVICES:,}")
        if not 0 <= self.rate <= MAX_RATE:
            raise LoadError(f"--rate {self.rate:g}: 0 to {MAX_RATE:,.0f} uploads per second")
        if not 0 < self.duration_s <= MAX_DURATION_S:
            raise LoadError(f"--duration {self.duration_s:g}: over 0, at most {MAX_DURATION_S:,.0f} s")
        if not 1 <= self.heartbeat_s <= 600:
            raise LoadError(f"--heartbeat {self.heartbeat_s:g}: 1 to 600 s")
        if not 1 <= self.points <= 1_000:
            raise LoadError(f"--points {self.points}: 1 to 1,000")
        if not (self.first_address >= 0 and self.first_address + self.devices < 1 << 48):
            raise LoadError("addresses must fit 48 bits")
        if not is_loopback(self.host):
            raise LoadError(f"--host {self.host}: only a loopback address (127.0.0.1, ::1, localhost)")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class LoadReport:
    devices: int
    connected: int
    connect_failures: int
    wall_s: float
    frames_sent: int
    uploads: int
    heartbeats: int
    confirmed: int
    denied: int
    resent: int
    gave_up: int
    unanswered: int  # uploads still waiting for an answer when the run ended
    latency_ms: dict[str, float]  # of confirmed uploads: first send to confirm

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def latency_summary(seconds: list[float]) -> dict[str, float]:
    if not seconds:
        return {}
    ms = np.asarray(seconds) * 1000.0
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {
        "n": float(len(ms)),
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "max": float(ms.max()),
    }


class LoadRun:
    """The devices of a plan; `open` connects them, `run` plays the plan's heartbeats and uploads."""

    def __init__(self, plan: LoadPlan, installations: list[Installation] | None = None) -> None:
        """`installations`: the devices to play (e.g. a registry's); default `plan.devices` made
        from counts, addresses from `plan.first_address`."""
        plan.check()
        if installations is not None and len(installations) != plan.devices:
            raise LoadError(f"{len(installations)} installations for a plan of {plan.devices} devices")
        self.plan = plan
        self.installations = installations
        self.links: list[StationLink] = []
        self.links_by_address: dict[int, StationLink] = {}
        self.connect_failures = 0
        self.started = time.monotonic()
        self._hb_cursor = 0.0
        self._up_cursor = 0.0
        self._next_device = 0
        self._next_upload = 0

    async def open(self, on_progress: Callable[[LoadRun], None] | None = None) -> None:
        """Connect every device, CONNECT_AT_ONCE at a time; each sends a heartbeat on connecting."""
        plan = self.plan
        gate = asyncio.Semaphore(CONNECT_AT_ONCE)

        async def one(n: int) -> None:
            inst = (
                self.installations[n]
                if self.installations is not None
                else installation_from_counts(plan.first_address + n, loops=1, points_per_loop=plan.points)
            )
            link = StationLink(inst, plan.host, plan.port)
            async with gate:
                try:
                    await link.connect()
                except OSError:
                    self.connect_failures += 1
                    return
            self.links.append(link)
            self.links_by_address[inst.address] = link
            link.heartbeat()
            if on_progress is not None and len(self.links) % 100 == 0:
                on_progress(self)

        await asyncio.gather(*(one(n) for n in range(plan.devices)))

    def tick(self, dt: float) -> None:
        """Heartbeats and uploads due over the last `dt` seconds, spread over the devices."""
        n = len(self.links)
        if not n:
            return
        self._hb_cursor += n * dt / self.plan.heartbeat_s
        while self._hb_cursor >= 1.0:
            self._hb_cursor -= 1.0
            self.links[self._next_device % n].heartbeat()
            self._next_device += 1
        self._up_cursor += self.plan.rate * dt
        while self._up_cursor >= 1.0:
            self._up_cursor -= 1.0
            self._upload(self.links[self._next_upload % n])
            self._next_upload += 1

    def _upload(self, link: StationLink) -> None:
        inst = link.installation
        panel = next((p for p in inst.panels.values() if p.points), None)
        if panel is None:
            link.heartbeat()  # a device with no points: nothing to change
            return
        points = list(panel.points.values())
        point = points[link.stats.uploads % len(points)]
        clear = bool(point.status & (1 << 2))
        point.status = with_state(point.status, GbState.FAULT, clear=clear)
        link.upload(2, [inst.point_state(panel, point, time_tag(time.time()))])

    async def run(self, on_progress: Callable[[LoadRun], None] | None = None) -> LoadReport:
        """Open the devices, play the plan for its duration, wait up to 10 s for the last answers."""
        self.started = time.monotonic()
        await self.open(on_progress)
        end = time.monotonic() + self.plan.duration_s
        last = time.monotonic()
        while (now := time.monotonic()) < end:
            self.tick(now - last)
            last = now
            if on_progress is not None:
                on_progress(self)
            await asyncio.sleep(TICK_S)
        await asyncio.gather(*(link.settle(10.0) for link in self.links))
        report = self.report()
        await asyncio.gather(*(link.close() for link in self.links))
        return report

    def report(self) -> LoadReport:
        stats = [link.stats for link in self.links]
        latencies = [x for s in stats for x in s.latencies_s]
        return LoadReport(
            devices=self.plan.devices,
            connected=len(self.links),
            connect_failures=self.connect_failures,
            wall_s=time.monotonic() - self.started,
            frames_sent=sum(s.frames_sent for s in stats),
            uploads=sum(s.uploads for s in stats),
            heartbeats=sum(s.heartbeats for s in stats),
            confirmed=sum(s.confirmed for s in stats),
            denied=sum(s.denied for s in stats),
            resent=sum(s.resent for s in stats),
            gave_up=sum(s.gave_up for s in stats),
            unanswered=sum(len(link.outbox.pending) for link in self.links),
            latency_ms=latency_summary(latencies),
        )
