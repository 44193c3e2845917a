"""`firewatch demo`: the whole system on one machine with no set-up.

An embedded broker (a private mosquitto if installed, else in-process amqtt), SQLite in a data
folder, the demo hospital simulated, the API on http://127.0.0.1:8080. After `incident_at` seconds
it stages a fire in one zone, a device going silent and a device fault elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from rich.console import Console
from rich.live import Live
from rich.table import Table
from sqlalchemy import func, select

from accounts.passwords import DEMO_PASSWORD
from accounts.service import DEMO_ACCOUNTS
from api.app import create_app
from core.domain import AlarmState, DeviceEventKind, IncidentKind, IncidentState
from core.registry import load_registry
from core.settings import Settings
from firewatch import stopping
from firewatch.broker import InProcessBroker, Mosquitto, mosquitto_binary
from firewatch.demo_plans import demo_registry_placed, install_demo_plans
from firewatch.demo_state import remove_state, write_state
from firewatch.service import STOP_BUDGET_S, Service, freeze_start_up_heap
from firewatch.stopping import ApiServer, StopSignals
from ingest.gb26875.objects import ComponentState
from roster.demo import ensure_demo_roster
from roster.service import RosterService
from simulators.fleet import Fleet
from simulators.gb26875_device import TransmissionDevice, time_tag
from simulators.hospital import DEMO_HOSPITAL
from simulators.hospital_panel import ADDRESS, SYSTEM, Point, with_panel
from simulators.live import LiveFleet
from storage.models import AlarmRow, IncidentRow, TicketRow

logger = logging.getLogger(__name__)

HEARTBEAT_S = 30.0  # the transmission device's heartbeat, in the service's (scaled) time
NORMAL, FAULT_BIT, DISABLED_BIT = 1 << 0, 1 << 2, 1 << 3  # GB/T 26875.3 component status bits

BROKER_STOP_S = 3.0  # mosquitto saves its persistence file on SIGTERM; then SIGKILL
SUMMARY_WAIT_S = 2.0
# The server's graceful wait (3 s) and Service.stop (STOP_BUDGET_S, plus its per-step floors).
SERVICE_STOP_S = 3.0 + STOP_BUDGET_S + 3.0


@dataclass(frozen=True)
class DemoPlan:
    """What the demo stages, and where: a ward zone catches fire; a smoke detector in another
    building goes silent (offline after 3 missed 30 s heartbeats); a gas detector reports a fault."""

    fire_zone: str
    silent_device: str
    faulty_device: str


def plan_for(service: Service) -> DemoPlan:
    reg = service.registry
    by_profile: dict[str, list[str]] = {}
    for device in reg.devices.values():
        by_profile.setdefault(device.profile, []).append(device.id)
    smoke = sorted(by_profile.get("smoke-photoelectric", []))
    if not smoke:
        raise ValueError("the registry has no smoke detectors to stage a fire with")
    fire_zone = reg.locations[smoke[len(smoke) // 2]].zone_path
    in_fire_zone = {d for d, loc in reg.locations.items() if loc.zone_path == fire_zone}
    others = [d for d in sorted(reg.devices) if d not in in_fire_zone]
    fire_building = reg.locations[smoke[len(smoke) // 2]].building
    elsewhere = [d for d in smoke if reg.locations[d].building != fire_building] or others
    gas = [d for d in sorted(by_profile.get("combustible-gas", [])) if d not in in_fire_zone]
    silent = elsewhere[0]
    faulty = gas[0] if gas else others[-1]
    return DemoPlan(fire_zone, silent, faulty)


async def run_demo(
    settings: Settings,
    *,
    duration: float | None,
    incident_at: float = 30.0,
    speed: float = 1.0,
    console: Console | None = None,
    signals: StopSignals | None = None,
) -> dict[str, int]:
    """Run the demo; `speed` compresses time for the service and its simulated devices alike.

    It ends after `duration` seconds, when the API server ends, or at a stop signal (`signals`, from
    the command line): the simulation, then the API server and the service, then the broker."""
    console = console or Console()
    stop = asyncio.Event()
    if signals is not None:
        signals.attach(asyncio.get_running_loop(), stop.set)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.time_scale = speed
    listen_for_panels(settings)
    mosquitto: Mosquitto | None = None
    inproc: InProcessBroker | None = None
    try:
        if settings.mqtt.url is None:
            if mosquitto_binary():
                mosquitto = Mosquitto(data_dir=settings.data_dir / "mosquitto", die_with_parent=True).start()
                settings.mqtt.url = mosquitto.url
                console.print(f"[green]embedded broker[/]: mosquitto on {mosquitto.url}")
            else:
                inproc = await InProcessBroker().start()
                settings.mqtt.url = inproc.url
                settings.mqtt.protocol = 4  # amqtt speaks MQTT 3.1.1
                console.print(
                    f"[yellow]embedded broker[/]: in-process amqtt on {inproc.url} (mosquitto not installed)"
                )
        return await _run_service(settings, duration, incident_at, console, stop, signals)
    finally:
        # Last, whatever happened before: the service has stopped using the broker.
        if mosquitto is not None:
            await stopping.bounded("the embedded mosquitto", lambda: mosquitto.stop(BROKER_STOP_S), 5.0)
        if inproc is not None:
            await stopping.wait_bounded("the in-process broker", inproc.stop(), BROKER_STOP_S)


async def _run_service(
    settings: Settings,
    duration: float | None,
    incident_at: float,
    console: Console,
    stop: asyncio.Event,
    signals: StopSignals | None,
) -> dict[str, int]:
    settings.auth.demo_accounts = True  # one account per role, with the published demo password
    # The demo hospital with its fire alarm panel, which reports over GB/T 26875.3 (a registry of
    # the user's own is taken as it is).
    registry, points = with_panel(load_registry(DEMO_HOSPITAL)) if settings.registry is None else (None, [])
    if registry is not None:  # its floors drawn, every device placed on them (docs/floor-plans.md)
        registry = demo_registry_placed(registry)
    service = Service(settings, registry=registry)
    if registry is not None:
        install_demo_plans(service.sessions)
    if service.store_error is None:
        # Who is on duty: today's and tomorrow's shifts of demo people (roster/demo.py).
        ensure_demo_roster(RosterService(service.sessions, service.clock), service.accounts)
    freeze_start_up_heap()
    plan = plan_for(service)
    app = create_app(service.app_context())
    server = ApiServer(
        uvicorn.Config(
            app,
            host=settings.api.host,
            port=settings.api.port,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=3,  # the alarm streams are closed first; other requests get 3 s
        )
    )
    assert service.settings.mqtt.url is not None
    broker_url = service.settings.mqtt.url.removeprefix("mqtt://")
    host, port = broker_url.rsplit(":", 1)
    fleet = Fleet(service.registry, service.profiles, prefix=settings.mqtt.topic_prefix)
    sim = LiveFleet(fleet, service.clock, name="demo")
    api_url = f"http://{settings.api.host}:{settings.api.port}"
    console.print(
        f"[bold]firewatch demo[/]: {service.index.n_devices} devices; API on [link]{api_url}[/] "
        f"(the console: {api_url}/); data in {settings.data_dir}"
    )
    console.print(
        "sign in as "
        + ", ".join(f"[cyan]{name}[/]" for name in DEMO_ACCOUNTS)
        + f" with the demo password [cyan]{DEMO_PASSWORD}[/] (demo only: refused by `firewatch serve`)"
    )
    console.print(
        f"in {incident_at:.0f} s: fire in [red]{plan.fire_zone}[/], "
        f"[yellow]{plan.silent_device}[/] goes silent, [yellow]{plan.faulty_device}[/] reports a fault"
    )
    started = time.monotonic()
    server_task = asyncio.create_task(server.serve(), name="api")
    while not server.started and not server_task.done() and not stop.is_set():  # noqa: ASYNC110 - uvicorn offers a flag, not an event
        await asyncio.sleep(0.05)
    if server_task.done():
        await server_task  # surfaces the bind error, e.g. port already in use
    # The commands run beside the demo (users, api-keys, report) find its database through this.
    write_state(settings, api_url=api_url, broker_url=service.settings.mqtt.url)
    console.print(
        f"beside it, e.g.: firewatch simulate run flaming-fire-ward --api {api_url} "
        f"--broker {service.settings.mqtt.url}"
    )
    sim_task = asyncio.create_task(sim.run(host, int(port)), name="simulation")
    panel_stage, panel_done = asyncio.Event(), asyncio.Event()
    panel_task: asyncio.Task[None] | None = None
    if service.gb26875 is not None and points:
        console.print(
            f"GB/T 26875.3 listener on {settings.gb26875.bind}:{service.gb26875.port}: the fire alarm "
            f"panel's transmission device (address {ADDRESS}) connects; in {incident_at:.0f} s a point is "
            "disabled (屏蔽) and a module reports a fault"
        )
        panel_task = asyncio.create_task(
            _play_panel(service, points, panel_stage, panel_done, settings.time_scale), name="gb26875-panel"
        )
    staged = False
    summary: dict[str, int] = {}
    reason = "the API server ended"
    try:
        with Live(console=console, refresh_per_second=2, transient=False) as live:
            while not server_task.done():
                elapsed = time.monotonic() - started
                if stop.is_set():
                    reason = "a stop signal"
                    break
                if duration is not None and elapsed >= duration:
                    reason = f"--duration {duration:g} s"
                    break
                if not staged and elapsed >= incident_at:
                    sim.fleet.flaming_fire(plan.fire_zone, sim.t)
                    sim.fleet.silence(plan.silent_device)
                    sim.fleet.device_event(plan.faulty_device, DeviceEventKind.FAULT, service.clock(), code=3)
                    panel_stage.set()
                    staged = True
                with contextlib.suppress(TimeoutError):  # a busy database: show the last counts
                    summary = await asyncio.wait_for(
                        asyncio.to_thread(_summary, service, sim.published), SUMMARY_WAIT_S
                    )
                live.update(_table(summary, time.monotonic() - started, staged))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
    finally:
        if signals is not None:
            signals.begin(reason)  # from here on the stop is bounded (a forced exit at the deadline)
        remove_state(settings.data_dir)
        sim.stop()
        await stopping.wait_bounded("the simulation", sim_task, 2.0)
        if panel_task is not None:
            panel_done.set()
            await stopping.wait_bounded("the fire alarm panel", panel_task, 2.0)
        service.live.close()  # end the open alarm streams, so the server stops at once
        server.should_exit = True
        # uvicorn: open requests get timeout_graceful_shutdown, then the lifespan runs Service.stop
        # (bounded by its own budget).
        await stopping.wait_bounded("the API server and the service", server_task, SERVICE_STOP_S)
    return summary


async def _play_panel(
    service: Service, points: list[Point], stage: asyncio.Event, done: asyncio.Event, speed: float
) -> None:
    """The demo's transmission device: connects, reports every point normal, heartbeats every 30 s
    of the service's time, and when the incidents are staged reports one smoke detector disabled
    (屏蔽) and the output module faulty (故障); until `done`."""
    assert service.gb26875 is not None
    device = TransmissionDevice(address=ADDRESS, host="127.0.0.1", port=service.gb26875.port)
    status = {p.device_id: NORMAL for p in points}

    def states(which: list[Point]) -> list[ComponentState]:
        tag = time_tag(service.clock())
        return [ComponentState(*SYSTEM, p.comp_type, p.address, status[p.device_id], "", tag) for p in which]

    try:
        await device.connect()
        await device.upload(2, states(points))
        staged = False
        while not done.is_set():
            wake = {asyncio.ensure_future(done.wait())}
            if not staged:
                wake.add(asyncio.ensure_future(stage.wait()))
            _, pending = await asyncio.wait(
                wake, timeout=HEARTBEAT_S / speed, return_when=asyncio.FIRST_COMPLETED
            )
            for waiter in pending:
                waiter.cancel()
            if done.is_set():
                break
            if stage.is_set() and not staged:
                disabled, module = points[1], points[-1]
                status[disabled.device_id] = NORMAL | DISABLED_BIT
                status[module.device_id] = NORMAL | FAULT_BIT
                await device.upload(2, states([disabled, module]))
                staged = True
            await device.heartbeat()
    except (OSError, TimeoutError) as exc:
        logger.warning("the demo's transmission device stopped: %s", exc)
    finally:
        await device.close()


def _summary(service: Service, published: int) -> dict[str, int]:
    with service.sessions() as s:
        active = (
            s.scalar(
                select(func.count())
                .select_from(AlarmRow)
                .where(AlarmRow.state.in_([AlarmState.ACTIVE_UNACKNOWLEDGED, AlarmState.ACTIVE_ACKNOWLEDGED]))
            )
            or 0
        )
        fire = (
            s.scalar(
                select(func.count())
                .select_from(AlarmRow)
                .where(AlarmRow.category == "fire", AlarmRow.state != AlarmState.CLOSED.value)
            )
            or 0
        )
        disabled = (
            s.scalar(
                select(func.count())
                .select_from(AlarmRow)
                .where(
                    AlarmRow.category == "disabled",
                    AlarmRow.state.in_([AlarmState.ACTIVE_UNACKNOWLEDGED, AlarmState.ACTIVE_ACKNOWLEDGED]),
                )
            )
            or 0
        )
        tickets = s.scalar(select(func.count()).select_from(TicketRow)) or 0
        fire_incidents = (
            s.scalar(
                select(func.count())
                .select_from(IncidentRow)
                .where(
                    IncidentRow.kind == IncidentKind.FIRE.value,
                    IncidentRow.state != IncidentState.CLOSED.value,
                )
            )
            or 0
        )
    return {
        "published": published,
        "ingested": service.pipeline.accepted,
        "rejected": service.pipeline.rejected,
        "active alarms": active,
        "open fire alarms": fire,
        "open fire incidents": fire_incidents,  # the zone fire is one incident, its alarms inside
        "disabled points": disabled,  # 屏蔽 at the fire alarm panel, reported over GB/T 26875.3
        "tickets": tickets,
    }


def _table(summary: dict[str, int], elapsed: float, staged: bool) -> Table:
    table = Table(title=f"firewatch demo — {elapsed:5.0f} s" + ("  (incidents staged)" if staged else ""))
    table.add_column("what")
    table.add_column("count", justify="right")
    for key, value in summary.items():
        style = "bold red" if key in ("open fire alarms", "open fire incidents") and value else ""
        table.add_row(key, f"[{style}]{value}[/]" if style else str(value))
    return table


def demo_settings(data_dir: Path, port: int) -> Settings:
    from core.settings import load_settings

    settings = load_settings(data_dir=data_dir)
    settings.api.port = port
    return settings


def listen_for_panels(settings: Settings) -> None:
    """The GB/T 26875.3 listener is on in the demo, on a free port the system picks (printed at
    start: the demo needs no set-up, whatever else runs on the machine, demos beside it included),
    unless FIREWATCH_GB26875__PORT names one."""
    settings.gb26875.enabled = True
    if "FIREWATCH_GB26875__PORT" not in os.environ:
        settings.gb26875.port = 0
