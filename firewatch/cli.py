"""The `firewatch` command line."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from firewatch.cli_broker import broker_app
from firewatch.cli_cluster import cluster_app
from firewatch.cli_gb26875 import gb26875_app
from firewatch.cli_grafana import grafana_app
from firewatch.cli_simulate import simulate_app
from firewatch.cli_users import keys_app, users_app
from firewatch.report import ReportFormat, ReportLang, kpi_csv, print_kpi_tables, when

if TYPE_CHECKING:
    from core.settings import Settings
    from tickets.kpi import KpiReport

app = typer.Typer(
    help="firewatch — smart fire-safety monitoring (智慧消防): MQTT telemetry, detection, alarms, tickets.",
    no_args_is_help=True,
    add_completion=False,
)
profiles_app = typer.Typer(help="Device profiles: one YAML file per sensor model.", no_args_is_help=True)
app.add_typer(profiles_app, name="profiles")
app.add_typer(simulate_app, name="simulate")
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="api-keys")
app.add_typer(grafana_app, name="grafana")
app.add_typer(broker_app, name="broker")
app.add_typer(gb26875_app, name="gb26875")
app.add_typer(cluster_app, name="cluster")
console = Console()
err = Console(stderr=True)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML config file (also FIREWATCH_CONFIG)", exists=False)
]


def _settings(config: Path | None, **overrides: object) -> Settings:
    from core.settings import SettingsError, load_settings  # loaded by a command, not by --help

    try:
        return load_settings(config, **overrides)
    except SettingsError as exc:
        err.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(2) from None


def port_in_use(host: str, port: int) -> str | None:
    """Why `port` cannot be listened on at `host` (None: it can)."""
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no obstacle
        try:
            s.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG
        if verbose
        else logging.INFO
        if os.environ.get("FIREWATCH_LOG")
        else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@app.command()
def demo(
    duration: Annotated[
        float | None, typer.Option(help="stop after this many seconds (default: until Ctrl-C)")
    ] = None,
    incident_at: Annotated[
        float, typer.Option(help="seconds until the fire and device failures are staged")
    ] = 30.0,
    port: Annotated[int, typer.Option(help="API port on 127.0.0.1")] = 8080,
    data_dir: Annotated[Path, typer.Option(help="where the demo keeps its SQLite files")] = Path("data/demo"),
    speed: Annotated[
        float, typer.Option(help="time compression of the simulated devices (reports, fire growth)")
    ] = 1.0,
    fresh: Annotated[
        bool,
        typer.Option(
            "--fresh",
            help="start from nothing: remove the last demo's files in --data-dir first (its SQLite "
            "state store and telemetry, detector snapshot, broker data), without asking",
        ),
    ] = False,
    keep: Annotated[
        bool,
        typer.Option("--keep", help="carry on with the last demo's alarms and tickets, without asking"),
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run everything on this machine: embedded broker, SQLite, a simulated hospital, the API.

    After --incident-at seconds a fire breaks out in one ward zone, a smoke detector in the other
    building goes silent (reported offline after 3 missed heartbeats, 90 s) and a gas detector
    reports a fault; watch the alarms and tickets appear at /api/v1/alarms and /api/v1/tickets.
    Ctrl-C or SIGTERM stops it within seconds (docs/architecture.md, "Stopping"); a second one
    stops it at once.

    When --data-dir holds a previous run's data, the demo asks on a terminal whether to start
    fresh; --fresh and --keep answer beforehand. Without a terminal and without either, it keeps
    the data (nothing is removed unasked) and says so.
    """
    _logging(verbose)
    from core.registry import RegistryError
    from device_profiles.loader import ProfileError
    from firewatch.demo import run_demo
    from firewatch.stopping import StopSignals

    settings = _settings(None, data_dir=data_dir)
    settings.api.port = port
    # Before anything starts (the broker, the service): a busy port is said plainly, with the way
    # out, and leaves nothing running behind it.
    busy = port_in_use(settings.api.host, port)
    if busy is not None:
        err.print(
            f"[red]cannot start the demo: port {port} on {settings.api.host} is in use ({escape(busy)})[/]\n"
            f"pick another with --port, e.g. [bold]firewatch demo --port {port + 1}[/]"
        )
        raise typer.Exit(1)
    _previous_demo(settings, fresh=fresh, keep=keep)
    with StopSignals() as signals:
        try:
            summary = asyncio.run(
                run_demo(
                    settings,
                    duration=duration,
                    incident_at=incident_at,
                    speed=speed,
                    console=console,
                    signals=signals,
                )
            )
        except OSError as exc:
            err.print(
                f"[red]cannot start the demo: {escape(str(exc))}[/] (is port {port} in use? try --port)"
            )
            raise typer.Exit(1) from None
        except (RegistryError, ProfileError) as exc:  # the registry or profiles the settings name
            err.print(
                f"[red]cannot start the demo: {escape(str(exc))}[/]\n"
                "fix the file, or unset FIREWATCH_REGISTRY / FIREWATCH_PROFILES_DIR to run the demo hospital"
            )
            raise typer.Exit(2) from None
    if signals.requested.is_set():
        console.print("stopped")
    console.print("demo finished: " + ", ".join(f"{k} {v}" for k, v in summary.items()))


def _previous_demo(settings: Settings, *, fresh: bool, keep: bool) -> None:
    """Before the demo starts: refuse to start on a running demo's data; offer a fresh start over
    the last run's (asked on a terminal, --fresh / --keep beforehand, kept otherwise)."""
    from firewatch.demo_state import last_run, remove_demo_files, running_demo
    from firewatch.store_choice import shown

    where = escape(str(settings.data_dir))
    if fresh and keep:
        err.print("[red]--fresh and --keep contradict each other[/]: give one of them")
        raise typer.Exit(2)
    running = running_demo(settings.data_dir)
    if running is not None:
        err.print(
            f"[red]a demo is already running on {where}[/] (pid {running.pid}, API {running.api_url}): "
            "stop it first (Ctrl-C in its terminal), or give this one another --data-dir"
        )
        raise typer.Exit(1)
    if "database_url" in settings.model_fields_set:
        if fresh:
            err.print(
                f"[red]--fresh removes only the demo's own files in {where}[/]; this demo's state store "
                f"is {escape(shown(settings.resolved_database_url))} (database_url), which is left alone: "
                "run without --fresh, or unset FIREWATCH_DATABASE_URL"
            )
            raise typer.Exit(2)
        return
    last = last_run(settings)
    if last is None:
        return
    if not fresh and not keep:
        if sys.stdin.isatty():
            fresh = typer.confirm(
                f"The last demo's data is still here: {last.describe()}. Start fresh?", default=True
            )
        else:
            err.print(
                f"keeping the last demo's data in {where} ({escape(last.describe())}); "
                "[bold]firewatch demo --fresh[/] starts from nothing"
            )
            return
    if fresh:
        gone = remove_demo_files(settings)
        console.print(f"starting fresh: removed the last demo's {len(gone)} files and folders in {where}")
    else:
        console.print(f"carrying on with the last demo's data in {where} ({escape(last.describe())})")


@app.command()
def serve(
    config: ConfigOpt = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the service against a configured broker (FIREWATCH_MQTT__URL) with the API.

    Clustered (FIREWATCH_CLUSTER__ENABLED=true, docs/scale.md) it runs as one worker: it reads the
    engine's partitions it holds leases on instead of a broker, and needs FIREWATCH_DATABASE_URL
    to name the shared PostgreSQL.

    SIGTERM or Ctrl-C stops it within seconds (docs/architecture.md, "Stopping"); a second one
    stops it at once."""
    _logging(verbose)
    import uvicorn

    from api.app import create_app
    from firewatch.service import Service, freeze_start_up_heap
    from firewatch.stopping import ApiServer, StopSignals

    settings = _settings(config)
    if settings.mqtt.url is None and not settings.cluster.enabled:
        err.print(
            "[red]no broker configured[/]: set FIREWATCH_MQTT__URL=mqtt://host:1883 or mqtt.url in the "
            "config file (or run `firewatch demo`, which starts one)"
        )
        raise typer.Exit(2)
    try:
        service = Service(settings)
    except ValueError as exc:  # a push route URL Apprise cannot use, an unknown profile, ...
        err.print(f"[red]cannot start: {escape(str(exc))}[/]")
        raise typer.Exit(2) from None
    freeze_start_up_heap()
    server = ApiServer(
        uvicorn.Config(
            create_app(service.app_context()),
            host=settings.api.host,
            port=settings.api.port,
            log_level="info",
            # Requests still open at a stop get 3 s; then the lifespan stops the service.
            timeout_graceful_shutdown=3,
        )
    )

    def begin_stop() -> None:
        # Open alarm streams (WebSocket, SSE) never finish by themselves: end them first, so the
        # server need not wait for them; their clients reconnect and resume from the event log.
        service.live.close()
        server.should_exit = True

    async def run() -> None:
        signals.attach(asyncio.get_running_loop(), begin_stop)
        await server.serve()

    with StopSignals() as signals:
        asyncio.run(run())


@app.command()
def openapi(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="write here instead of stdout")] = None,
    roles: Annotated[
        bool, typer.Option("--roles", help="print who may call each operation, as docs/api.md's table")
    ] = False,
) -> None:
    """Print the API's OpenAPI document (committed as docs/openapi.json; CI checks it is current)."""
    from api.app import openapi_text, roles_table

    text = roles_table() if roles else openapi_text()
    if out is None:
        sys.stdout.write(text)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        err.print(f"[red]cannot write {escape(str(out))}: {escape(str(exc))}[/]")
        raise typer.Exit(1) from None
    err.print(f"OpenAPI document written to {escape(str(out))}")


@profiles_app.command("validate")
def profiles_validate(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="profile files or folders (default: the shipped ones)")
    ] = None,
) -> None:
    """Check profiles against the strict schema; every problem is printed as file:line:col."""
    from device_profiles.loader import shipped_profiles_dir, validate_profiles

    targets = paths or [shipped_profiles_dir()]
    issues = validate_profiles(targets)
    for issue in issues:
        err.print(f"[red]{escape(str(issue))}[/]")
    if issues:
        err.print(f"{len(issues)} problem(s)")
        raise typer.Exit(1)
    files = [p for t in targets for p in ([t] if t.is_file() else sorted(t.glob("*.yaml")))]
    console.print(f"[green]{len(files)} profile file(s) valid[/]")


@app.command()
def replay(
    data: Annotated[Path, typer.Argument(help="recorded CSV, one row per time step")],
    spec: Annotated[Path, typer.Option("--spec", "-s", help="replay spec YAML: time column and devices")],
    out: Annotated[Path, typer.Option("--out", "-o", help="write alarm transitions here, one JSON per line")],
    chunk_rows: Annotated[
        int, typer.Option(help="rows per detection batch (results do not depend on it)")
    ] = 2000,
) -> None:
    """Run a recorded CSV through the live detectors and alarm logic, as fast as the CPU allows.

    The spec names the time column and, per simulated device, its id, profile, zone and which CSV
    column feeds which channel (optionally scaled). Example:

    \b
        time_column: Time
        devices:
          - id: heat-a
            profile: heat-a1r
            zone: room1
            channels:
              temp: {column: "Quadrant A Temperature 25 mm Below Ceiling", scale: 1.0}
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from device_profiles.loader import ProfileError
    from firewatch.replay import ReplayError, load_spec, write_jsonl
    from firewatch.replay import replay as run_replay

    try:
        parsed = load_spec(spec)
        with Progress(
            TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err
        ) as bar:
            task = bar.add_task("rows", total=None)
            result = run_replay(
                data,
                parsed,
                chunk_rows=chunk_rows,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        write_jsonl(result, out)
    except (ReplayError, ProfileError) as exc:
        err.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(2) from None
    except OSError as exc:
        err.print(f"[red]cannot write {escape(str(out))}: {escape(str(exc))}[/]")
        raise typer.Exit(1) from None
    title = (
        f"{data.name}: {result.rows} rows, {result.samples} readings, {len(result.transitions)} transitions"
    )
    table = Table(title=title)
    for col in ("device", "alarm type", "category", "first raised", "raised", "cleared"):
        table.add_column(col)
    summary: dict[tuple[str, str], list[Any]] = {}
    for t in result.transitions:  # already in time order
        row = summary.setdefault((t["device"], t["alarm_type"]), [t["category"], "-", 0, 0])
        if t["action"] == "raised":
            row[1] = t["time"] if row[2] == 0 else row[1]
            row[2] += 1
        elif t["action"] == "cleared":
            row[3] += 1
    for (device, alarm_type), (category, first, n_raised, n_cleared) in summary.items():
        table.add_row(device, alarm_type, category, str(first), str(n_raised), str(n_cleared))
    console.print(table)
    console.print(f"{result.samples_per_s:,.0f} readings/s; transitions written to {out}")


def _local_time(option: str, value: str) -> float:
    """An ISO date or date-time; without a UTC offset it is local time (what a person types)."""
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        err.print(
            f"[red]{option} {escape(repr(value))} is not a date[/]: use YYYY-MM-DD or YYYY-MM-DDTHH:MM "
            "(local time), e.g. 2026-11-01 or 2026-11-01T08:00"
        )
        raise typer.Exit(2) from None


def _load_kpis(
    url: str, since: float, until: float | None, site: str | None, department: str | None, now: float
) -> KpiReport:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from storage.db import DatabaseError, open_store
    from tickets.kpi import compute_kpis

    fix = "check database_url in the config file (--config) or FIREWATCH_DATABASE_URL"
    try:
        parsed = make_url(url)
    except ArgumentError:
        err.print(f"[red]database_url {escape(repr(url))} is not a database URL[/]: {fix}")
        raise typer.Exit(2) from None
    shown = parsed.render_as_string(hide_password=True)
    path = parsed.database
    # Opening a missing SQLite file would create an empty store and report zeros: say so instead.
    if parsed.get_backend_name() == "sqlite" and path and path != ":memory:" and not Path(path).is_file():
        err.print(
            f"[red]no state store at {escape(path)}[/]: point the report at the service's database "
            f"({fix}, or data_dir)"
        )
        raise typer.Exit(2)
    try:
        engine, sessions = open_store(url)
    except (DatabaseError, SQLAlchemyError, ImportError) as exc:
        err.print(f"[red]cannot open the state store at {escape(shown)}[/]: {escape(str(exc))}")
        err.print(f"Is the database running and reachable? Otherwise {fix}.")
        raise typer.Exit(2) from None
    try:
        with sessions() as session:
            return compute_kpis(session, since, until, site, department, now)
    except SQLAlchemyError as exc:
        err.print(f"[red]cannot read the state store at {escape(shown)}[/]: {escape(str(exc))}")
        err.print(f"Is the database running and reachable? Otherwise {fix}.")
        raise typer.Exit(2) from None
    finally:
        engine.dispose()


@app.command()
def report(
    since: Annotated[
        str | None,
        typer.Option(
            help="start of the period, local time: 2026-11-01 or 2026-11-01T08:00 "
            "(default: 30 days before --until)"
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            help="end of the period, excluded, local time: --until 2026-12-01 ends on 30 November "
            "(default: now); the report shows the state as of then"
        ),
    ] = None,
    site: Annotated[str | None, typer.Option(help="only this site (default: all sites)")] = None,
    department: Annotated[
        str | None, typer.Option(help="only this department (科室), e.g. 心内科 (default: all)")
    ] = None,
    fmt: Annotated[
        ReportFormat,
        typer.Option(
            "--format",
            "-f",
            help="table: for reading; csv: one row per department and a total, for Excel; "
            "json: every figure, for other programs",
        ),
    ] = ReportFormat.TABLE,
    lang: Annotated[
        ReportLang, typer.Option(help="language of the headers and labels (table and csv)")
    ] = ReportLang.ZH,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write the report to this file (default: stdout)")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Hazard-rectification KPIs (隐患整改): 整改率, on time, overdue, mean times, false alarms.

    Counts the tickets created in the period (found), how many were rectified (整改率 =
    rectified / found), rectified by their deadline (按时整改率) or still open past it (逾期), the
    mean times to assign and to rectify, per department; and for the alarms first raised in the
    period, the mean time to acknowledge and the false alarms per device. Figures are as of the end
    of the period (or now). Definitions: docs/tickets.md. Reads the state store of the configured
    service (database_url, or the SQLite file in data_dir), or, when neither is set, that of a demo
    running from this folder; it says which on stderr.
    """
    now = time.time()
    end = _local_time("--until", until) if until is not None else None
    start = _local_time("--since", since) if since is not None else (end or now) - 30 * 86400.0
    if end is not None and start >= end:
        err.print(f"[red]--since must be before --until[/] (got {when(start)} and {when(end)})")
        raise typer.Exit(2)
    from firewatch.store_choice import choose_store

    store = choose_store(_settings(config))
    err.print(escape(store.line), soft_wrap=True)  # one line, to grep
    kpis = _load_kpis(store.url, start, end, site, department, now)

    if fmt is ReportFormat.TABLE:
        if output is None:
            # Piped or captured output has no terminal width: give the wide Chinese headers room.
            print_kpi_tables(Console(width=None if sys.stdout.isatty() else 120), kpis, lang)
            return
        text = io.StringIO()
        print_kpi_tables(Console(file=text, width=120), kpis, lang)
        data = text.getvalue().encode("utf-8")
    elif fmt is ReportFormat.CSV:
        # UTF-8 with a byte-order mark: Excel on Chinese Windows otherwise reads the file as GBK and
        # garbles the Chinese headers and department names.
        data = kpi_csv(kpis, lang).encode("utf-8-sig")
    else:
        data = (kpis.model_dump_json(indent=2) + "\n").encode("utf-8")
    try:
        if output is None:
            sys.stdout.flush()
            sys.stdout.buffer.write(data)  # bytes as they are: no console code page in between
            sys.stdout.buffer.flush()
        else:
            output.write_bytes(data)
    except OSError as exc:
        err.print(f"[red]cannot write {escape(str(output or 'stdout'))}: {escape(str(exc))}[/]")
        raise typer.Exit(2) from None
    if output is not None:
        err.print(f"report written to {escape(str(output))}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
