"""Play a scenario against a running firewatch service and judge its expected outcomes.

The runner follows the service's clock (GET /healthz gives its time and time scale), so simulated
time advances exactly as fast as the service's: a service started with `time_scale: 60` plays a
twenty-minute smouldering fire in twenty seconds. Devices publish through the service's broker;
outcomes are read back from the service's API (alarms, tickets, reject totals), so the API client
must be signed in: an API key with the viewer role is enough (`firewatch api-keys create NAME --role
viewer`), sent as `Authorization: Bearer <key>` by the client the caller passes in.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from core.clock import ScaledClock
from core.domain import DeviceEventKind, TicketSource
from core.registry import Registry, load_registry
from device_profiles.schema import Profile
from simulators.claims import DeviceClaim
from simulators.fleet import Fleet, FleetError, LinkQuality
from simulators.gb26875_panel import PanelError
from simulators.gb26875_play import GB_STEPS, GbPlayer
from simulators.outcomes import Observed, Outcome, Verdict, decided, judge
from simulators.physics import Growth, Recording
from simulators.scenario import (
    BatteryStep,
    CableOverheatStep,
    DeviceEventStep,
    DirtyChamberStep,
    DoorHeldOpenStep,
    FlamingFireStep,
    GasLeakStep,
    GbBadFrameStep,
    GbReconnectStep,
    GbResetStep,
    GbStateStep,
    MalformedStep,
    NetworkStep,
    PowerCutStep,
    PowerRestoreStep,
    PumpFailureStep,
    ReplayStep,
    ReviveStep,
    Scenario,
    ScenarioError,
    SilentStep,
    SlowLeakStep,
    SmoulderingFireStep,
    SprinklerStep,
    Step,
)

logger = logging.getLogger(__name__)

TICK_S = 0.05  # wall seconds between steps of the device fleet
POLL_S = 0.5  # wall seconds between looks at the service's alarms and tickets
FF_STEP_S = 1.0  # simulated seconds per step while fast-forwarding
FF_BACKLOG = 2_000  # unacknowledged messages allowed while fast-forwarding
# Fast-forwarded history still has to be ingested in real time: faster than this, the service's
# receive queue would grow, and at a high time scale a few seconds of queueing look like silence
# to its liveness watch (every device offline).
FF_RATE = 3_000  # messages per wall second
READY_TIMEOUT_S = 30.0
# Before the last judgement the runner waits for the service to take in what it was sent: on a
# loaded machine seconds of messages queue, and a fast-forward's last seconds hold hours.
SETTLE_TIMEOUT_S = 60.0


class RunnerError(RuntimeError):
    """The scenario cannot be played against this service; the message says what to do."""


class RunnerAuthError(RunnerError):
    """The service's API refused the runner's token: none was given (401), it is unknown, expired
    or revoked (401), or it may not read (403)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Progress:
    """What the progress display shows; updated by the runner as it goes."""

    t: float = 0.0
    end: float = 0.0
    published: int = 0
    applied: list[str] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    phase: str = "starting"


@dataclass
class RunReport:
    scenario: str
    passed: bool
    outcomes: list[Outcome]
    simulated_s: float
    wall_s: float
    time_scale: float
    published: int
    lost: int
    duplicated: int
    reordered: int
    malformed: dict[str, int]  # broken frames sent on request, by kind
    steps: list[str]
    # Messages sent that the service had not taken in when judged (SETTLE_TIMEOUT_S); None: it
    # does not count them (/metrics).
    untaken: int | None
    # GB/T 26875.3 uploads of the registry's transmission devices (None: it has none), settled
    # (confirmed, so stored, or given up) before judging.
    gb26875: dict[str, int] | None = None
    # Messages the service dropped as duplicates by (device, seq) while this run played, as its
    # /metrics counts them (None: it does not say); this run's own sent twice on purpose are
    # `duplicated`. Far more than those: another publisher uses the same device ids.
    dropped_as_duplicates: int | None = None
    # Devices other simulated fleets on the broker (the demo's) stopped publishing while this run
    # played them, per fleet (simulators/claims.py).
    yielded_by: dict[str, int] = field(default_factory=dict)

    @property
    def unexplained_duplicates(self) -> int:
        """Duplicates dropped beyond what this run sent twice on purpose (0 when unknown)."""
        if self.dropped_as_duplicates is None:
            return 0
        return max(0, self.dropped_as_duplicates - self.duplicated)

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "passed": self.passed,
            "simulated_s": round(self.simulated_s, 1),
            "wall_s": round(self.wall_s, 1),
            "time_scale": self.time_scale,
            "published": self.published,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "reordered": self.reordered,
            "malformed_sent": self.malformed,
            "steps": self.steps,
            "untaken": self.untaken,
            "gb26875": self.gb26875,
            "dropped_as_duplicates": self.dropped_as_duplicates,
            "yielded_by": self.yielded_by,
            "outcomes": [
                {
                    "expectation": o.expectation.describe(),
                    "verdict": o.verdict.value,
                    "at_s": None if o.at is None else round(o.at, 1),
                    "detail": o.detail,
                }
                for o in self.outcomes
            ],
        }


def scenario_registry(scenario: Scenario) -> Registry:
    if scenario.registry == "demo":
        from simulators.hospital import DEMO_HOSPITAL

        return load_registry(DEMO_HOSPITAL)
    base = scenario.source.parent if scenario.source else Path.cwd()
    return load_registry(base / scenario.registry)


class ScenarioRun:
    def __init__(
        self,
        scenario: Scenario,
        registry: Registry,
        profiles: dict[str, Profile],
        *,
        api: httpx.AsyncClient,
        broker: tuple[str, int],
        prefix: str = "fw/v1",
        gb26875: tuple[str, int] | None = None,
    ) -> None:
        self.scenario = scenario
        self.registry = registry
        self.api = api
        self.broker = broker
        self.fleet = Fleet(
            registry, profiles, seed=scenario.seed, prefix=prefix, impairments=scenario.impairments
        )
        self.progress = Progress(end=scenario.end)
        # Fire alarm panels behind GB/T 26875.3 transmission devices: their own TCP connections to
        # the service's listener at `gb26875` (host, port).
        self.gb = GbPlayer.for_registry(registry, profiles)
        self.gb_address = gb26875
        self._pending: list[Step] = sorted(scenario.timeline, key=lambda s: s.at)
        self._map_service: list[float] = []  # service clock readings ...
        self._map_sim: list[float] = []  # ... and the simulated time then
        self._taken0: float | None = None  # messages the service had taken in when the run began
        self._untaken: int | None = None
        self.base = scenario.source.parent if scenario.source else Path.cwd()

    # --- the service ------------------------------------------------------------------------------
    async def _get(self, path: str, **params: Any) -> Any:
        try:
            response = await self.api.get(path, params=params or None)
        except httpx.HTTPError as exc:
            raise RunnerError(
                f"cannot reach the firewatch API at {self.api.base_url}: {exc} (check --api)"
            ) from exc
        self._check_access(path, response)
        if response.status_code >= 400:
            raise RunnerError(f"GET {path} answered {response.status_code}: {response.text[:300]}")
        return response.json()

    def _check_access(self, path: str, response: httpx.Response) -> None:
        if response.status_code in (401, 403):
            try:
                detail = str(response.json().get("detail", ""))
            except ValueError:
                detail = response.text[:300]
            raise RunnerAuthError(
                f"the firewatch API at {self.api.base_url} refused GET {path} "
                f"({response.status_code}): {detail}",
                response.status_code,
            )

    async def _pages(self, path: str, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = await self._get(path, limit=1000, offset=offset, **params)
            items += page["items"]
            offset += len(page["items"])
            if not page["items"] or offset >= page["total"]:
                return items

    async def _check_devices(self) -> None:
        """The service must know the devices the scenario drives by name (same registry)."""
        named = {getattr(s, "device", None) for s in self.scenario.timeline} - {None}
        for device_id in sorted(str(d) for d in named):
            if device_id not in self.registry.devices:
                raise RunnerError(
                    f"the scenario names device {device_id!r}, which its registry does not have"
                )
            path = f"/api/v1/devices/{device_id}"
            response = await self.api.get(path)
            self._check_access(path, response)
            if response.status_code == 404:
                raise RunnerError(
                    f"the service does not know device {device_id!r}: start it with the scenario's registry "
                    f"({self.scenario.registry}), e.g. FIREWATCH_REGISTRY=<file> firewatch serve"
                )

    async def _wait_ready(self) -> None:
        """A service still starting (connecting to its broker, migrating) would see the first
        messages late; wait until it says it is ready."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                response = await self.api.get("/readyz")
            except httpx.HTTPError as exc:
                raise RunnerError(
                    f"cannot reach the firewatch API at {self.api.base_url}: {exc} (check --api)"
                ) from exc
            if response.status_code == 200:
                return
            if time.monotonic() > deadline:
                raise RunnerError(
                    f"the service is not ready after {READY_TIMEOUT_S:.0f} s: {response.text[:300]}"
                )
            await asyncio.sleep(0.2)

    def _to_sim(self, service_ts: float) -> float:
        if not self._map_service:
            return service_ts - self.origin
        return float(np.interp(service_ts, self._map_service, self._map_sim))

    async def observe(self) -> Observed:
        alarms = await self._pages("/api/v1/alarms", since=self.origin)
        tickets = await self._pages("/api/v1/tickets", since=self.run_start)
        totals = (await self._get("/api/v1/rejects/totals"))["totals"]
        timed_alarms = []
        for a in alarms:
            if a["raised_ts"] is not None and a["raised_ts"] < self.run_start:
                continue  # raised before this run, still active
            timed_alarms.append((alarm_sim_time(a, self.origin, self._to_sim), a))
        timed_tickets = [(ticket_sim_time(t, self.origin, self._to_sim), t) for t in tickets]
        rejects = {reason: n - self.rejects0.get(reason, 0) for reason, n in totals.items()}
        return Observed(timed_alarms, timed_tickets, rejects)

    # --- the timeline -----------------------------------------------------------------------------
    def _apply_due(self, t: float) -> None:
        while self._pending and self._pending[0].at <= t:
            step = self._pending.pop(0)
            try:
                touched = apply_step(self.fleet, step, self.origin, self.base, self.gb)
            except (FleetError, PanelError) as exc:
                raise RunnerError(f"timeline step at {step.at:g} s ({step.do}): {exc}") from exc
            label = f"{step.at:>6.0f} s {step.do}" + (f" ({step.id})" if step.id else "")
            self.progress.applied.append(f"{label}: {len(touched)} device(s)")
            logger.info("%s: %s", label, ", ".join(touched[:5]))

    # --- the run ------------------------------------------------------------------------------------
    async def run(self, on_progress: Callable[[Progress], None] | None = None) -> RunReport:
        started = time.monotonic()
        await self._wait_ready()
        health = await self._get("/healthz")
        # The service's clock as seen from here: its reading now, advancing at its scale.
        clock = ScaledClock(float(health.get("time_scale", 1.0)), origin=float(health["time"]))
        if abs(clock.scale - self.scenario.time_scale) > 1e-9:
            logger.warning(
                "the scenario is written for time scale %g, the service runs at %g",
                self.scenario.time_scale,
                clock.scale,
            )
        self.run_start = clock()
        self.origin = self.run_start - self.scenario.fast_forward
        await self._check_devices()
        self.rejects0: dict[str, int] = (await self._get("/api/v1/rejects/totals"))["totals"]
        host, port = self.broker
        # Other simulated fleets on the broker (the demo's hospital) fall quiet for this run's
        # devices first: two simulations publishing as one device would make a mixture of both.
        claim = DeviceClaim(host, port, sorted(self.fleet.devices), self.scenario.name)
        try:
            yielded_by = await asyncio.to_thread(claim.take)
        except OSError as exc:
            raise RunnerError(
                f"cannot reach the broker at mqtt://{host}:{port}: {exc} (check --broker)"
            ) from exc
        try:
            for fleet, n in sorted(yielded_by.items()):
                logger.info("simulated fleet %s yields %d devices to this run", fleet, n)
            self._taken0 = await self._taken()
            duplicates0 = await self._counter("fw_ingest_duplicates")
            try:
                await asyncio.to_thread(self.fleet.connect, host, port)
            except OSError as exc:
                raise RunnerError(
                    f"cannot reach the broker at mqtt://{host}:{port}: {exc} (check --broker)"
                ) from exc
            try:
                await self._connect_gb()
                if self.scenario.fast_forward > 0:
                    await self._fast_forward(clock, on_progress)
                outcomes = await self._real_time(clock, on_progress)
            finally:
                await asyncio.to_thread(self.fleet.close)
                if self.gb is not None:
                    await self.gb.close()
            duplicates1 = await self._counter("fw_ingest_duplicates")
        finally:
            await asyncio.to_thread(claim.release)  # after this run's devices said `offline`
        s = self.fleet.stats
        return RunReport(
            scenario=self.scenario.name,
            passed=all(o.verdict is Verdict.PASSED for o in outcomes),
            outcomes=outcomes,
            simulated_s=self.progress.t,
            wall_s=time.monotonic() - started,
            time_scale=clock.scale,
            published=s.published,
            lost=s.lost,
            duplicated=s.duplicated,
            reordered=s.reordered,
            malformed=dict(s.malformed),
            steps=list(self.progress.applied),
            untaken=self._untaken,
            gb26875=None if self.gb is None else self.gb.totals().as_dict(),
            dropped_as_duplicates=(
                None if duplicates0 is None or duplicates1 is None else round(duplicates1 - duplicates0)
            ),
            yielded_by=yielded_by,
        )

    async def _connect_gb(self) -> None:
        if self.gb is None:
            return
        if self.gb_address is None:
            if any(isinstance(s, GB_STEPS) for s in self.scenario.timeline):
                raise RunnerError(
                    "the scenario plays GB/T 26875.3 transmission devices: give the service's listener "
                    "(--gb26875 host:port; the service needs gb26875.enabled)"
                )
            logger.warning(
                "the registry's GB/T 26875.3 transmission devices are not played (no listener given)"
            )
            self.gb = None
            return
        host, port = self.gb_address
        try:
            await self.gb.connect(host, port)
        except OSError as exc:
            raise RunnerError(
                f"cannot reach the GB/T 26875.3 listener at {host}:{port}: {exc} (is gb26875.enabled set "
                "on the service? check --gb26875)"
            ) from exc

    def _mark(self, service_ts: float, t: float) -> None:
        if not self._map_service or service_ts > self._map_service[-1]:
            self._map_service.append(service_ts)
            self._map_sim.append(t)

    async def _fast_forward(self, clock: ScaledClock, on_progress: Callable[[Progress], None] | None) -> None:
        """Play [0, fast_forward) as fast as the broker acknowledges, with a bounded backlog."""
        self.progress.phase = "fast-forward"
        t = 0.0
        last_shown = 0.0
        began = time.monotonic()
        while t < self.scenario.fast_forward:
            self._apply_due(t)
            self.fleet.step(t, self.origin)
            if self.gb is not None:
                self.gb.step(t, self.origin)
            self._mark(clock(), t)
            t += FF_STEP_S
            ahead = self.fleet.stats.published / FF_RATE - (time.monotonic() - began)
            if ahead > 0:
                await asyncio.sleep(ahead)
            while self.fleet.backlog() > FF_BACKLOG:  # noqa: ASYNC110 - paho offers no awaitable
                await asyncio.sleep(0.005)
            if time.monotonic() - last_shown > 0.2:
                last_shown = time.monotonic()
                self.progress.t, self.progress.published = t, self.fleet.stats.published
                if on_progress:
                    on_progress(self.progress)
                await asyncio.sleep(0)

    async def _real_time(
        self, clock: ScaledClock, on_progress: Callable[[Progress], None] | None
    ) -> list[Outcome]:
        self.progress.phase = "running"
        end = self.scenario.end
        # The devices keep their schedule whatever the API takes to answer: the service's clock
        # runs on while the judge looks, so a fleet that waited for it would fall silent in
        # simulated time and raise offline alarms no real device would (a loaded machine, a slow
        # page of alarms). The judge looks in a task of its own.
        judged: list[Outcome] = []
        looked = asyncio.Event()

        async def look() -> None:
            while True:
                t_look = min(clock() - self.origin, end)
                judged[:] = judge(self.scenario, await self.observe(), t_look, final=False)
                self.progress.outcomes = list(judged)
                looked.set()
                await asyncio.sleep(POLL_S)

        judge_task = asyncio.create_task(look())
        try:
            while True:
                now = clock()
                t = now - self.origin
                self._apply_due(t)
                self.fleet.step(min(t, end), self.origin)
                if self.gb is not None:
                    self.gb.step(min(t, end), self.origin)
                self._mark(now, t)
                self.progress.t, self.progress.published = min(t, end), self.fleet.stats.published
                if judge_task.done():
                    judge_task.result()  # the API failed: raise it here
                if t >= end:
                    break
                if looked.is_set() and decided(judged) and not self._pending and self._only_positive():
                    break
                if on_progress:
                    on_progress(self.progress)
                await asyncio.sleep(TICK_S)
        finally:
            judge_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await judge_task
        # Judge for the last time once the service has taken in all it was sent.
        self.progress.phase = "judging"
        await self._settle()
        outcomes = judge(self.scenario, await self.observe(), min(clock() - self.origin, end), final=True)
        self.progress.outcomes = outcomes
        if on_progress:
            on_progress(self.progress)
        return outcomes

    async def _taken(self) -> float | None:
        """MQTT messages the service has taken off its receive queue, as its /metrics counts them
        (each batch's alarms and tickets are written before it is counted), or None if it does not say."""
        return await self._counter("fw_ingest_messages")

    async def _counter(self, name: str) -> float | None:
        """A counter of the service's /metrics, or None if it does not say."""
        try:
            response = await self.api.get("/metrics")
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        for family in text_string_to_metric_families(response.text):
            if family.name == name:
                return sum(s.value for s in family.samples if s.name == f"{name}_total")
        return None

    async def _settle(self) -> None:
        """A moment (a second, as ever) for what is in flight, and until the service has taken in
        every message this run published, at most SETTLE_TIMEOUT_S (a message the broker dropped
        never comes)."""
        moment = time.monotonic() + 1.0
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        # A GB/T 26875.3 upload is confirmed once what it means is stored. (The service's count
        # below takes in their messages too: with transmission devices it is a lower bound.)
        if self.gb is not None and not await self.gb.settle(SETTLE_TIMEOUT_S):
            logger.warning("judging with GB/T 26875.3 uploads not yet confirmed")
        while self._taken0 is not None:
            taken = await self._taken()
            if taken is None:
                self._untaken = None
                break
            self._untaken = max(0, round(self._taken0 + self.fleet.stats.published - taken))
            if self._untaken == 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
        if self._untaken:
            logger.warning("judging with %d messages not yet taken in by the service", self._untaken)
        await asyncio.sleep(max(0.0, moment - time.monotonic()))

    def _only_positive(self) -> bool:
        """Stop early only when nothing can still go wrong: no `no_alarm` window is still open."""
        return all(e.no_alarm is None for e in self.scenario.expect)


def alarm_sim_time(alarm: dict[str, Any], origin: float, to_sim: Callable[[float], float]) -> float:
    """When an alarm happened in simulated time: the reading that raised it (`first_ts`, which the
    devices stamp `origin + t`), or, for an alarm of the service's own (no reading, or one from
    before the run), when the service raised it."""
    if alarm["first_ts"] >= origin:
        return float(alarm["first_ts"]) - origin
    return to_sim(alarm["raised_ts"])


def ticket_sim_time(ticket: dict[str, Any], origin: float, to_sim: Callable[[float], float]) -> float:
    """When a ticket was opened in simulated time. A ticket an alarm opens is written in the same
    transaction as that alarm (alarms/tickets.py), and its inspection time is the alarm's
    `first_ts`: it is timed as its alarm is. Its `created_at` is when the service got round to the
    reading, which in a fast-forward (a simulated hour in a few wall seconds) maps a second of
    queueing to many simulated minutes, and more the busier the machine. Other tickets (a patrol's,
    an inspector's) are timed by when the service opened them."""
    if ticket["source"] == TicketSource.ALARM.value and ticket["inspection_time"] >= origin:
        return float(ticket["inspection_time"]) - origin
    return to_sim(ticket["created_at"])


def apply_step(fleet: Fleet, step: Step, origin: float, base: Path, gb: GbPlayer | None = None) -> list[str]:
    """Carry out one timeline step on the fleet (or, for a GB step, on the GB/T 26875.3 player);
    returns the devices it touched."""
    f, at = fleet, step.at
    ts = origin + at
    match step:
        case FlamingFireStep():
            return f.flaming_fire(
                step.place,
                at,
                growth=Growth(step.growth),
                peak_kw=step.peak_kw,
                height_m=step.height_m,
                door_delay_s=step.door_delay_s,
                corridor_speed_m_s=step.corridor_speed_m_s,
            )
        case SmoulderingFireStep():
            return f.smouldering_fire(
                step.place,
                at,
                t_end_s=step.t_end_s,
                smoke_end=step.smoke_end,
                door_delay_s=step.door_delay_s,
            )
        case SprinklerStep():
            return f.sprinkler(
                step.place,
                at,
                drop_mpa=step.drop_mpa,
                pump_start_s=step.pump_start_s,
                pump_mpa=step.pump_mpa,
            )
        case SlowLeakStep():
            return f.slow_leak(step.place, at, rate_mpa_per_h=step.rate_mpa_per_h)
        case PumpFailureStep():
            return f.pump_failure(step.place, at, leakage_mpa_per_h=step.leakage_mpa_per_h)
        case GasLeakStep():
            return f.gas_leak(
                step.place,
                at,
                leak_m3_per_h=step.leak_m3_per_h,
                room_volume_m3=step.room_volume_m3,
                air_changes_per_h=step.air_changes_per_h,
                gas=step.gas,
                stop_after_s=step.stop_after_s,
            )
        case CableOverheatStep():
            return f.cable_overheat(
                step.device, at, channel=step.channel, load_factor=step.load_factor, tau_s=step.tau_s
            )
        case DirtyChamberStep():
            return f.dirty_chamber(step.device, at, rate_db_m_per_day=step.rate_db_m_per_day)
        case SilentStep():
            return f.silence(step.device, disconnect=step.disconnect)
        case ReviveStep():
            return f.revive(step.device, at)
        case PowerCutStep():
            return f.power_cut(step.place)
        case PowerRestoreStep():
            return f.power_restore(step.place, at)
        case DeviceEventStep():
            return f.device_event(step.device, DeviceEventKind(step.do), ts, code=step.code)
        case BatteryStep():
            return f.battery(step.device, step.percent)
        case DoorHeldOpenStep():
            return f.door_held_open(step.device, at)
        case MalformedStep():
            return f.malformed(step.device, step.kind, at, ts, step.count)
        case NetworkStep():
            # mean loss of a two-state chain = share of time bad x loss when bad (0.9)
            bad_share = min(1.0, step.loss / 0.9)
            p_gb = step.burst * bad_share / max(1e-9, 1 - bad_share) if bad_share < 1 else 1.0
            return f.impair(
                step.place,
                LinkQuality(
                    p_good_to_bad=min(1.0, p_gb),
                    p_bad_to_good=step.burst,
                    loss_bad=0.9 if step.loss else 0.0,
                    duplicate=step.duplicate,
                    reorder=step.reorder,
                ),
            )
        case ReplayStep():
            return _replay(fleet, step, base)
        case GbStateStep() | GbResetStep() | GbReconnectStep() | GbBadFrameStep():
            if gb is None:
                raise RunnerError(f"{step.device!r}: the registry has no GB/T 26875.3 transmission device")
            return gb.apply(step, ts)
    raise RunnerError(f"unhandled timeline step {step!r}")  # pragma: no cover - the union is closed


def _replay(fleet: Fleet, step: ReplayStep, base: Path) -> list[str]:
    """Recorded columns driving device channels (simulators/physics.py::Recording)."""
    path = base / step.file
    columns = {step.time_column} | {c.column for d in step.devices for c in d.channels.values()}
    data: dict[str, list[float]] = {c: [] for c in columns}
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = columns - set(reader.fieldnames or [])
            if missing:
                raise RunnerError(f"{path}: no column(s) {sorted(missing)}")
            for row in reader:
                try:
                    parsed = {c: float(row[c]) for c in columns}
                except (TypeError, ValueError):
                    continue  # a gap in the recording: interpolated over
                for c, v in parsed.items():
                    data[c].append(v)
    except OSError as exc:
        raise RunnerError(f"cannot read the recording {path}: {exc}") from exc
    times = tuple(data[step.time_column])
    if len(times) < 2:
        raise RunnerError(f"{path}: fewer than two usable rows")
    touched: list[str] = []
    for dev in step.devices:
        for channel, col in dev.channels.items():
            rec = Recording(
                step.at,
                dev.device,
                channel,
                times,
                tuple(data[col.column]),
                step.start_time,
                col.scale,
                col.offset,
                step.relative,
            )
            touched += fleet.replay(dev.device, channel, rec)
    return sorted(set(touched))


def check_scenario(scenario: Scenario, registry: Registry, profiles: dict[str, Profile]) -> None:
    """Resolve every place and device the timeline names, without a broker: a dry run."""
    fleet = Fleet(registry, profiles, seed=scenario.seed, impairments=False)
    gb = GbPlayer.for_registry(registry, profiles)  # not connected: the model only
    base = scenario.source.parent if scenario.source else Path.cwd()
    for step in sorted(scenario.timeline, key=lambda s: s.at):
        try:
            apply_step(fleet, step, 0.0, base, gb)
        except (FleetError, RunnerError, PanelError) as exc:
            raise ScenarioError(f"timeline step at {step.at:g} s ({step.do}): {exc}") from exc
