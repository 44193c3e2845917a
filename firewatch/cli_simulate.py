"""`firewatch simulate ...`: simulated devices, scenarios, generated buildings and load."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from firewatch.cli_building import building
from firewatch.cli_load import load

if TYPE_CHECKING:
    from simulators.outcomes import Outcome
    from simulators.runner import Progress as RunProgress
    from simulators.runner import RunReport

simulate_app = typer.Typer(
    help="Simulated devices: a hospital on the wire, scenarios with expected outcomes, load tests.",
    no_args_is_help=True,
)
console = Console()
err = Console(stderr=True)

simulate_app.command("building")(building)
simulate_app.command("load")(load)

BrokerOpt = Annotated[str, typer.Option(help="broker URL, mqtt://host:port")]
RegistryOpt = Annotated[Path | None, typer.Option(help="registry YAML (default: the demo hospital)")]


def broker_of(url: str) -> tuple[str, int]:
    from firewatch.broker import parse_broker_url

    try:
        return parse_broker_url(url)
    except ValueError as exc:
        err.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(2) from None


def host_port(text: str) -> tuple[str, int]:
    """`host:port` for a TCP address; a clear error (exit 2) otherwise."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65_536:
        err.print(f"[red]{escape(text)!r} is not host:port (e.g. 127.0.0.1:26875)[/]")
        raise typer.Exit(2)
    return host, int(port)


@simulate_app.command("devices")
def devices(
    broker: BrokerOpt = "mqtt://127.0.0.1:1883",
    registry: RegistryOpt = None,
    duration: Annotated[float | None, typer.Option(help="seconds to run (default: until Ctrl-C)")] = None,
    fire: Annotated[
        str | None, typer.Option(help="room or zone path where a flaming fire starts, e.g. sxzyy/b2/f3/z1")
    ] = None,
    smoulder: Annotated[str | None, typer.Option(help="room or zone path where a fire smoulders")] = None,
    sprinkler: Annotated[str | None, typer.Option(help="place path where a sprinkler head opens")] = None,
    gas_leak: Annotated[str | None, typer.Option(help="room path where gas leaks")] = None,
    silent_device: Annotated[str | None, typer.Option(help="device id that stops publishing")] = None,
    power_cut: Annotated[str | None, typer.Option(help="floor path whose gateway loses power")] = None,
    incident_at: Annotated[float, typer.Option(help="seconds after start for the incidents")] = 30.0,
    seed: Annotated[int, typer.Option(help="random seed (noise, layout of first reports)")] = 0,
) -> None:
    """Publish every device of a registry in real time, as the hardware would.

    Optionally stage incidents after --incident-at seconds. For timed incidents with expected
    outcomes, write a scenario and use `firewatch simulate run`.
    """
    from core.registry import RegistryError, load_registry
    from device_profiles.loader import ProfileError, load_profiles
    from simulators.fleet import Fleet, FleetError
    from simulators.hospital import DEMO_HOSPITAL
    from simulators.live import LiveFleet

    host, port = broker_of(broker)
    try:
        reg = load_registry(registry or DEMO_HOSPITAL)
        fleet = Fleet(reg, load_profiles(), seed=seed)
        actions: list[tuple[str, str | None, Callable[[str, float], list[str]]]] = [
            ("flaming fire", fire, fleet.flaming_fire),
            ("smouldering fire", smoulder, fleet.smouldering_fire),
            ("sprinkler", sprinkler, fleet.sprinkler),
            ("gas leak", gas_leak, fleet.gas_leak),
            ("silent", silent_device, lambda p, t: fleet.silence(p)),
            ("power cut", power_cut, lambda p, t: fleet.power_cut(p)),
        ]
        staged = [(name, place, action) for name, place, action in actions if place]
        for _, place, _ in staged:  # fail fast on a typo
            fleet.devices_at(str(place))
    except (RegistryError, ProfileError, FleetError) as exc:
        err.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(2) from None
    live_fleet = LiveFleet(fleet, name="simulate-devices")
    done: list[str] = []

    async def main() -> None:
        started = time.monotonic()
        with Live(console=console, refresh_per_second=4) as live:

            def tick(lf: LiveFleet) -> None:
                if not done and staged and lf.t >= incident_at:
                    for name, place, action in staged:
                        touched = action(str(place), lf.t)
                        done.append(f"{name} at {place} ({len(touched)} devices)")
                elapsed = time.monotonic() - started
                s = lf.fleet.stats
                live.update(
                    f"{len(lf.fleet.devices)} devices · {s.published:,} messages · "
                    f"{s.published / max(elapsed, 1e-9):,.0f}/s · lost {s.lost} · {elapsed:,.0f} s"
                    + (f"\nstaged: {'; '.join(done)}" if done else "")
                )

            await live_fleet.run(host, port, duration=duration, on_tick=tick)

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        live_fleet.stop()
    except OSError as exc:
        err.print(f"[red]cannot reach the broker at {escape(broker)}: {escape(str(exc))}[/] (is it running?)")
        raise typer.Exit(1) from None
    console.print(f"published {fleet.stats.published:,} messages")


@simulate_app.command("run")
def run(
    scenario: Annotated[str, typer.Argument(help="scenario YAML file, or the name of a shipped scenario")],
    api: Annotated[str, typer.Option(help="the running service's API")] = "http://127.0.0.1:8080",
    token: Annotated[
        str | None,
        typer.Option(
            envvar="FIREWATCH_API_TOKEN",
            show_default=False,
            help="a token for the service's API, sent as `Authorization: Bearer <token>`: an API key "
            "with the viewer role is enough (an admin creates one with `firewatch api-keys create "
            "simulator --role viewer`). Prefer the environment variable: an option lands in the "
            "shell history",
        ),
    ] = None,
    broker: BrokerOpt = "mqtt://127.0.0.1:1883",
    gb26875: Annotated[
        str,
        typer.Option(
            "--gb26875",
            help="the service's GB/T 26875.3 listener, host:port, for a registry with transmission "
            "devices (用户信息传输装置); the service needs gb26875.enabled",
        ),
    ] = "127.0.0.1:26875",
    json_out: Annotated[
        Path | None, typer.Option("--json", help="also write the report as JSON to this file")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log each timeline step")] = False,
) -> None:
    """Play a scenario against a running firewatch service and report its expected outcomes.

    The devices publish through the service's broker; the outcomes (alarms, tickets, rejects) are
    read from its API. Simulated time follows the service's clock: start the service with a time
    scale (FIREWATCH_TIME_SCALE=60 firewatch serve, or firewatch demo --speed 60) to play a
    twenty-minute fire in twenty seconds. Exit code 0 when every expectation passed, 1 when one
    failed, 2 when the scenario cannot be used (or the API refuses the token).

    The API answers only signed-in callers: give a token with --token or FIREWATCH_API_TOKEN.
    """
    import logging

    import httpx

    from core.registry import RegistryError
    from device_profiles.loader import ProfileError, load_profiles
    from simulators.runner import (
        RunnerAuthError,
        RunnerError,
        ScenarioRun,
        check_scenario,
        scenario_registry,
    )
    from simulators.scenario import ScenarioError, load_scenario, resolve_scenario

    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    host, port = broker_of(broker)
    gb_address = host_port(gb26875)
    try:
        spec = load_scenario(resolve_scenario(scenario))
        registry = scenario_registry(spec)
        profiles = load_profiles()
        check_scenario(spec, registry, profiles)
    except (ScenarioError, RegistryError, ProfileError) as exc:
        err.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(2) from None

    async def main() -> RunReport:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx.AsyncClient(base_url=api, timeout=10.0, headers=headers) as client:
            runner = ScenarioRun(
                spec, registry, profiles, api=client, broker=(host, port), gb26875=gb_address
            )
            bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.completed:,.0f} / {task.total:,.0f} s simulated"),
                TimeElapsedColumn(),
                console=console,
            )
            task = bar.add_task(spec.name, total=spec.end)
            with Live(console=console, refresh_per_second=4) as live:

                def show(p: RunProgress) -> None:
                    bar.update(task, completed=p.t, description=f"{spec.name} ({p.phase})")
                    live.update(Group(bar, _outcome_table(p.outcomes, p.published)))

                return await runner.run(on_progress=show)

    try:
        report = asyncio.run(main())
    except RunnerAuthError as exc:
        if exc.status == 401:
            hint = (
                "pass --token <key> (or set FIREWATCH_API_TOKEN)"
                if not token
                else "the token given is unknown, expired or revoked: pass another with --token (or "
                "FIREWATCH_API_TOKEN)"
            )
            hint += "; an admin creates a key with `firewatch api-keys create simulator --role viewer`"
        else:
            hint = "use a token that may read the API (any role does, e.g. `--role viewer`)"
        err.print(f"[red]{escape(str(exc))}[/]\n{escape(hint)}")
        raise typer.Exit(2) from None
    except RunnerError as exc:
        err.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(2) from None
    console.print(_outcome_table(report.outcomes, report.published, final=True))
    verdict = "[bold green]PASSED[/]" if report.passed else "[bold red]FAILED[/]"
    console.print(
        f"{verdict} {spec.name}: {report.simulated_s:,.0f} s simulated in {report.wall_s:,.1f} s "
        f"(time scale {report.time_scale:g}); {report.published:,} messages, {report.lost} lost on the "
        f"radio, {report.duplicated} duplicated, {report.reordered} reordered"
    )
    for fleet, n in sorted(report.yielded_by.items()):
        if n == 0:
            continue  # a fleet of another registry: none of its devices are this run's
        console.print(f"simulated fleet {escape(fleet)} stopped publishing {n} of these devices meanwhile")
    said, warning = duplicates_said(report)
    if said:
        console.print(said)
    if warning:
        err.print(f"[yellow]{escape(warning)}[/]")
    if json_out is not None:
        json_out.write_text(json.dumps(report.as_dict(), ensure_ascii=False, indent=2), encoding="utf-8")
    raise typer.Exit(0 if report.passed else 1)


def duplicates_said(report: RunReport) -> tuple[str, str]:
    """What the report says about messages dropped as duplicates, and a warning when far more were
    dropped than the run sent twice on purpose (empty strings: nothing to say)."""
    if report.dropped_as_duplicates is None:
        return "", ""
    said = (
        f"the service dropped {report.dropped_as_duplicates:,} messages as duplicates by (device, seq) "
        f"while this ran ({report.duplicated:,} sent twice on purpose)"
    )
    if report.unexplained_duplicates <= max(10, report.published // 100):
        return said, ""
    return said, (
        f"{report.unexplained_duplicates:,} more messages than this run sent twice were dropped as "
        "duplicates: another publisher is using the same device ids (real devices, or a simulation that "
        "does not yield to scenarios), so the verdict may be about a mixture of both. Stop it, or run "
        "the scenario against a service of its own."
    )


def _outcome_table(outcomes: list[Outcome], published: int, final: bool = False) -> Table:
    from simulators.outcomes import Verdict

    table = Table(title="expected outcomes" if final else f"expected outcomes · {published:,} messages")
    table.add_column("")
    table.add_column("expectation")
    table.add_column("at (s)", justify="right")
    table.add_column("detail")
    marks = {Verdict.PASSED: "[green]✓[/]", Verdict.FAILED: "[red]✗[/]", Verdict.PENDING: "[yellow]…[/]"}
    for o in outcomes:
        at = "" if o.at is None else f"{o.at:,.0f}"
        table.add_row(marks[o.verdict], escape(o.expectation.describe()), at, escape(o.detail))
    return table


@simulate_app.command("list")
def list_scenarios() -> None:
    """The scenarios shipped with firewatch (run one by name: firewatch simulate run NAME)."""
    from simulators.scenario import ScenarioError, load_scenario, shipped_scenarios

    table = Table(title="shipped scenarios")
    table.add_column("name", no_wrap=True)
    for col in ("title", "simulated", "time scale", "expectations"):
        table.add_column(col)
    for path in shipped_scenarios():
        try:
            s = load_scenario(path)
        except ScenarioError as exc:
            err.print(f"[red]{escape(str(exc))}[/]")
            raise typer.Exit(1) from None
        table.add_row(s.name, s.title, f"{s.end / 60:,.0f} min", f"{s.time_scale:g}", str(len(s.expect)))
    console.print(table)


@simulate_app.command("check")
def check(
    scenarios: Annotated[list[str], typer.Argument(help="scenario files or shipped names")],
) -> None:
    """Validate scenarios without a broker: the schema, and every place and device they name."""
    from core.registry import RegistryError
    from device_profiles.loader import ProfileError, load_profiles
    from simulators.runner import check_scenario, scenario_registry
    from simulators.scenario import ScenarioError, load_scenario, resolve_scenario

    profiles = load_profiles()
    bad = 0
    for name in scenarios:
        try:
            spec = load_scenario(resolve_scenario(name))
            check_scenario(spec, scenario_registry(spec), profiles)
        except (ScenarioError, RegistryError, ProfileError) as exc:
            err.print(f"[red]{escape(str(exc))}[/]")
            bad += 1
            continue
        steps, expectations = len(spec.timeline), len(spec.expect)
        console.print(f"[green]ok[/] {escape(name)}: {steps} steps, {expectations} expectations")
    if bad:
        raise typer.Exit(2)


@simulate_app.command("gb26875")
def gb26875_load(
    devices: Annotated[
        int, typer.Option(help="transmission devices, each its own TCP connection (≤ 20,000)")
    ] = 100,
    host: Annotated[str, typer.Option(help="the listener's address: loopback only")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="the listener's port (the service's gb26875.port)")] = 26875,
    duration: Annotated[
        float, typer.Option(help="seconds of load after every device connected (≤ 3,600)")
    ] = 60.0,
    rate: Annotated[
        float, typer.Option(help="state uploads per second, all devices together (≤ 5,000)")
    ] = 10.0,
    heartbeat: Annotated[float, typer.Option(help="seconds between one device's heartbeats")] = 30.0,
    first_address: Annotated[int, typer.Option(help="device n's address is this + n")] = 100_000,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="also write the report as JSON here")
    ] = None,
) -> None:
    """Load a GB/T 26875.3 listener with simulated transmission devices (用户信息传输装置).

    Each device opens its own TCP connection, sends a heartbeat (an empty upload) on connecting and
    then every --heartbeat seconds, spread evenly over the devices; --rate uploads per second in all
    carry one point's whole status word (type 2), its fault bit set or cleared in turn. An upload
    unanswered for 10 s or denied is sent again, up to 3 times (GB/T 26875.3 §6.5). Reported: frames
    sent, uploads confirmed, denials, resends, uploads given up, and the answer latency (first send
    to confirm) of confirmed uploads.

    Devices the service's registry does not bind are confirmed and kept as rejects (unknown
    device); bind them (gb26875=<address> tags) to load the alarm path instead.
    """
    from simulators.gb26875_load import LoadError, LoadPlan, LoadRun

    plan = LoadPlan(
        devices=devices,
        host=host,
        port=port,
        duration_s=duration,
        rate=rate,
        heartbeat_s=heartbeat,
        first_address=first_address,
    )
    try:
        run_ = LoadRun(plan)
    except LoadError as exc:
        err.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(2) from None
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f} / {task.total:,.0f}"),
        TimeElapsedColumn(),
        console=console,
    )
    connecting = bar.add_task("connected", total=devices)
    playing = bar.add_task("seconds of load", total=duration)
    began: list[float] = []

    def show(r: LoadRun) -> None:
        bar.update(connecting, completed=len(r.links) + r.connect_failures)
        if len(r.links) + r.connect_failures >= devices:
            if not began:
                began.append(time.monotonic())
            bar.update(playing, completed=min(duration, time.monotonic() - began[0]))
        s = [link.stats for link in r.links]
        sent, confirmed = sum(x.frames_sent for x in s), sum(x.confirmed for x in s)
        denied, resent = sum(x.denied for x in s), sum(x.resent for x in s)
        bar.update(
            playing,
            description=f"frames {sent:,} · confirmed {confirmed:,} · denied {denied:,} · resent {resent:,}",
        )

    try:
        with bar:
            report = asyncio.run(run_.run(on_progress=show))
    except OSError as exc:
        err.print(f"[red]cannot load {escape(host)}:{port}: {escape(str(exc))}[/]")
        raise typer.Exit(1) from None
    table = Table(title=f"{report.connected:,} of {report.devices:,} devices connected")
    table.add_column("")
    table.add_column("count", justify="right")
    for name in (
        "frames_sent",
        "uploads",
        "heartbeats",
        "confirmed",
        "denied",
        "resent",
        "gave_up",
        "unanswered",
    ):
        table.add_row(name.replace("_", " "), f"{getattr(report, name):,}")
    table.add_row("connect failures", f"{report.connect_failures:,}")
    console.print(table)
    lat = report.latency_ms
    if lat:
        console.print(
            f"answer latency (first send to confirm), ms: p50 {lat['p50']:.1f} · p95 {lat['p95']:.1f} · "
            f"p99 {lat['p99']:.1f} · max {lat['max']:.1f} over {lat['n']:,.0f} confirmed uploads"
        )
    if json_out is not None:
        json_out.write_text(json.dumps(report.as_dict(), ensure_ascii=False, indent=2), encoding="utf-8")
    raise typer.Exit(0 if report.gave_up == 0 and report.connect_failures == 0 else 1)
