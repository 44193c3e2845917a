"""`firewatch simulate load`: a bounded load test from many simulated devices (simulators/load.py).

Only the command line lives here: options, progress display, exit codes. The generator itself is
`simulators.load.run_load`, which returns the machine-readable report printed by --json.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:
    from simulators.load import LoadConfig
    from simulators.load import Progress as LoadProgress


def load(
    broker: Annotated[
        str, typer.Option(help="broker URL, mqtt://host:port (a broker you run for the test)")
    ] = "mqtt://127.0.0.1:1883",
    devices: Annotated[
        int, typer.Option(help="simulated devices, ids load-000001, load-000002, ...")
    ] = 100_000,
    rate: Annotated[
        float,
        typer.Option(help="target messages/s in total, shared by the processes; 0 = as fast as possible"),
    ] = 0.0,
    duration: Annotated[float, typer.Option(help="seconds to publish (always a bound)")] = 30.0,
    messages: Annotated[
        int | None, typer.Option(help="stop after this many messages in total (a second bound)")
    ] = None,
    processes: Annotated[
        int | None, typer.Option(help="worker processes, each with a shard of the devices [default: CPUs]")
    ] = None,
    connections_per_process: Annotated[int, typer.Option(help="MQTT connections per worker process")] = 1,
    qos: Annotated[int, typer.Option(help="MQTT QoS of the telemetry, 0 or 1")] = 1,
    max_inflight: Annotated[
        int,
        typer.Option(help="unacknowledged QoS 1 messages allowed per connection, at most 65,535"),
    ] = 1_000,
    site: Annotated[str, typer.Option(help="site id in the topics and the registry")] = "load",
    prefix: Annotated[str, typer.Option(help="topic prefix")] = "fw/v1",
    profile: Annotated[str, typer.Option(help="device profile whose channels are published")] = (
        "smoke-photoelectric"
    ),
    registry_out: Annotated[
        Path | None,
        typer.Option(help="write a registry YAML of exactly these devices, for a service to run against"),
    ] = None,
    registry_only: Annotated[
        bool, typer.Option("--registry-only", help="write --registry-out and exit without publishing")
    ] = False,
    seed: Annotated[int, typer.Option(help="random seed of the baselines and noise")] = 0,
    json_out: Annotated[
        bool, typer.Option("--json", help="print the report as JSON on stdout (progress goes to stderr)")
    ] = False,
) -> None:
    """Load test: publish telemetry for many devices from several processes, bounded in time and count.

    Devices publish in turn, as real ones would: fw/v1/{site}/{device}/telemetry, JSON ts, seq, v, rssi.

    With --devices 100000 --rate 30000 each device reports about every 3.3 s.

    At QoS 1 each connection keeps at most --max-inflight messages unacknowledged, then waits for PUBACKs.

    The report shows per process and in total: sent, acknowledged, duration, msg/s, peak in-flight.

    Exit code 0 when every message was acknowledged, 1 if not or the broker is unreachable, 2 for bad options.

    End to end: write --registry-out (with --registry-only), start firewatch with it, then run the load.
    """
    from simulators.load import LoadConfig, LoadOptionError, check_profile

    err = Console(stderr=True)
    host, port = _broker(broker, err)
    if processes is not None and processes < 1:
        _fail(err, f"--processes must be at least 1, got {processes}", 2)
    config = LoadConfig(
        host=host,
        port=port,
        devices=devices,
        rate=rate,
        duration=duration,
        messages=messages,
        processes=processes or 0,  # 0: one per CPU
        connections_per_process=connections_per_process,
        qos=qos,
        max_inflight=max_inflight,
        site=site,
        prefix=prefix,
        profile=profile,
        seed=seed,
    )
    try:
        config.check()
        check_profile(config)
    except LoadOptionError as exc:
        _fail(err, str(exc), 2)
    if registry_only and registry_out is None:
        _fail(err, "--registry-only needs --registry-out PATH: where to write the registry", 2)
    if registry_out is not None:
        _write_registry(config, registry_out, err)
        if registry_only:
            return
    _run(config, err, json_out)


def _broker(url: str, err: Console) -> tuple[str, int]:
    from firewatch.broker import parse_broker_url

    try:
        return parse_broker_url(url)
    except ValueError as exc:
        _fail(err, str(exc), 2)


def _write_registry(config: LoadConfig, path: Path, err: Console) -> None:
    from simulators.load import write_registry

    err.print(f"writing the registry of {config.devices:,} devices to {escape(str(path))} ...")
    try:
        write_registry(config, path)
    except OSError as exc:
        _fail(err, f"cannot write {path}: {exc}", 1)


def _run(config: LoadConfig, err: Console, json_out: bool) -> None:
    """Run with a live progress bar, then print the report; exit 1 unless every message was acked."""
    from simulators.load import BrokerUnreachableError, LoadOptionError, report_table, run_load, verdict

    out = Console()
    shown = err if json_out else out
    bar = Progress(
        TextColumn("[bold]load[/]"),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[stats]}"),
        console=shown,
        transient=False,
    )
    task = bar.add_task("load", total=config.duration, stats="starting workers ...")

    def progress(p: LoadProgress) -> None:
        acked = f" · acked {p.acked:,}" if config.qos else ""
        stats = f"sent {p.sent:,}{acked} · in flight {p.inflight:,} · {p.rate:,.0f} msg/s"
        bar.update(task, completed=min(p.elapsed_s, p.duration_s), stats=stats)

    try:
        with bar:
            report = run_load(config, on_progress=progress)
            end = "interrupted" if report.interrupted else "done"
            bar.update(task, completed=config.duration, stats=f"{end} · {report.rate:,.0f} msg/s on average")
    except LoadOptionError as exc:
        _fail(err, str(exc), 2)
    except BrokerUnreachableError as exc:
        _fail(err, str(exc), 1)
    except RuntimeError as exc:
        _fail(err, f"the load run failed: {exc}", 1)
    if json_out:
        typer.echo(report.to_json())  # plain: a script parses it
    else:
        out.print(report_table(report))
        out.print(verdict(report))
    if not report.complete:
        raise typer.Exit(1)


def _fail(err: Console, message: str, code: int) -> NoReturn:
    err.print(f"[red]{escape(message)}[/]")
    raise typer.Exit(code)
