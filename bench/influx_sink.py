"""What the InfluxDB sink costs ingest: end-to-end drains of a queued backlog with the sink off and on,
interleaved in one run, and whether the sink kept up.

    python3 -m bench.influx_sink --devices 5000 --messages 100000 --rounds 3

Each drain is `bench.ingest`'s full path: a private mosquitto holds a backlog of QoS 1 readings (two
channels each) for a persistent session, and a fresh firewatch service receives, decodes, detects,
persists and acknowledges them. With the sink on, the same service also copies every batch to a
private VictoriaMetrics (Debian's, through influxdb-client's /api/v2/write, gzip) from the sink's
worker process. Drains alternate off, on, off, on, ... so that a noisy shared machine slows both
alike; the ratio of the medians is the figure. The backlog flows only once the service's worker
processes are up (`SETTLE_S` after start, and the sink's first point written), so the drains
measure steady state, not start-up.

For each drain with the sink on it reports the points offered to the sink, written, dropped, still
buffered, how long after the last reading was stored the sink had written everything it was given
(drained), and the CPU seconds the sink's worker process used.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from bench.ingest import STALL_S, publish_backlog, registry
from core.settings import InfluxSettings, IngestSettings, MqttSettings, Settings
from device_profiles.loader import load_profiles
from device_profiles.schema import Profile
from firewatch.broker import Mosquitto
from firewatch.service import Service
from tests.victoria import VictoriaMetrics

console = Console()
DRAIN_TIMEOUT_S = 120.0
SETTLE_S = 4.0  # after start, before the backlog flows (worker processes import and connect)


@dataclass
class Drain:
    sink: bool
    rate: float  # readings/s, end to end
    offered: int = 0
    written: int = 0
    dropped: int = 0
    buffered: int = 0
    drained_after_s: float | None = None  # after the last reading was stored
    cpu_s: dict[str, float] = field(default_factory=dict)  # per process, from the backlog's release


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process, from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_of(pids: dict[str, int]) -> dict[str, float]:
    return {name: t for name, pid in pids.items() if (t := cpu_seconds(pid)) is not None}


async def drain(
    broker: Mosquitto,
    devices: int,
    messages: int,
    data: Path,
    vm: VictoriaMetrics | None,
    profiles: dict[str, Profile],
    progress: Progress,
) -> Drain:
    influx_url = vm.url if vm is not None else None
    settings = Settings(
        data_dir=data,
        mqtt=MqttSettings(url=broker.url, client_id=f"bench-fw-{uuid.uuid4().hex[:6]}"),
        ingest=IngestSettings(liveness_check_s=5),
        influx=InfluxSettings(url=influx_url),
    )
    # A first start only creates the persistent session the backlog is queued for.
    service = Service(settings, registry=registry(devices), profiles=profiles)
    await service.start()
    await service.source.connected.wait()
    await service.stop()
    publish_backlog(broker, devices, messages, progress)
    service = Service(settings, registry=registry(devices), profiles=profiles)
    label = "sink on " if influx_url else "sink off"
    # Steady state, not start-up: the MQTT source connects (and the backlog flows) only once the
    # service's worker processes (compactor, sink) are up. A spawned process imports the parent's
    # main module, which costs a second or two of CPU that would otherwise overlap the drain.
    gate = asyncio.Event()
    run_source = service.source.run

    async def gated(stop: asyncio.Event) -> None:
        await gate.wait()
        await run_source(stop)

    service.source.run = gated  # type: ignore[method-assign]
    await service.start()
    settle = time.monotonic() + SETTLE_S
    while True:
        if time.monotonic() >= settle and (service.sink is None or service.sink.status().written >= 1):
            break
        await asyncio.sleep(0.05)
    pids = {"service": os.getpid()}
    if broker._proc is not None:
        pids["mosquitto"] = broker._proc.pid
    if service.sink is not None and service.sink._process is not None and service.sink._process.pid:
        pids["sink worker"] = service.sink._process.pid  # the benchmark's look inside
    if vm is not None and vm._process is not None:
        pids["victoria-metrics"] = vm._process.pid
    cpu_before = cpu_of(pids)
    gate.set()
    bar = progress.add_task(f"drain, {label} (decode, detect, store, ack)", total=messages)
    p = service.pipeline
    started: float | None = None
    last_progress, last_seen = time.monotonic(), -1
    try:
        while p.accepted < messages or p.stored_samples < 2 * messages:
            if started is None and p.batches:
                started = time.perf_counter()
            progress.update(bar, completed=p.accepted)
            if p.accepted + p.stored_samples != last_seen:
                last_progress, last_seen = time.monotonic(), p.accepted + p.stored_samples
            elif time.monotonic() - last_progress > STALL_S:
                raise RuntimeError(f"no progress for {STALL_S:.0f} s: accepted {p.accepted}")
            await asyncio.sleep(0.01)
        done = time.perf_counter()
        result = Drain(influx_url is not None, messages / (done - (started or done)))
        progress.update(bar, completed=messages)
        sink = service.sink
        if sink is not None:
            # Drained: everything offered so far is written or counted as dropped.
            deadline = time.monotonic() + DRAIN_TIMEOUT_S
            while (s := sink.status()).written + s.dropped_total < s.offered:
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.01)
            else:
                result.drained_after_s = time.perf_counter() - done
            s = sink.status()
            result.offered, result.written = s.offered, s.written
            result.dropped, result.buffered = s.dropped_total, s.buffered
        cpu_after = cpu_of(pids)
        result.cpu_s = {k: cpu_after[k] - cpu_before[k] for k in cpu_after if k in cpu_before}
        return result
    finally:
        await service.stop()


async def main(devices: int, messages: int, rounds: int) -> None:
    profiles = load_profiles()
    drains: list[Drain] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        Mosquitto(data_dir=Path(tmp) / "mq") as broker,
        VictoriaMetrics(data_dir=Path(tmp) / "vm") as vm,
        Progress(console=console, transient=True) as progress,
    ):
        for r in range(rounds):
            for sink_to in (None, vm):
                where = Path(tmp) / f"r{r}-{'on' if sink_to else 'off'}"
                drains.append(await drain(broker, devices, messages, where, sink_to, profiles, progress))
    off = [d.rate for d in drains if not d.sink]
    on = [d.rate for d in drains if d.sink]
    table = Table(
        title=f"ingest with the InfluxDB sink off and on, {messages:,} QoS 1 readings, {devices:,} devices"
    )
    for col in ("round", "sink off, readings/s", "sink on, readings/s", "on/off"):
        table.add_column(col, justify="right")
    for r in range(rounds):
        table.add_row(str(r + 1), f"{off[r]:,.0f}", f"{on[r]:,.0f}", f"{on[r] / off[r]:.2f}")
    table.add_row(
        "median",
        f"{statistics.median(off):,.0f}",
        f"{statistics.median(on):,.0f}",
        f"{statistics.median(on) / statistics.median(off):.2f}",
    )
    console.print(table)
    kept = Table(title="did the sink keep up? (each drain with the sink on)")
    for col in ("round", "offered", "written", "dropped", "buffered", "drained after"):
        kept.add_column(col, justify="right")
    for r, d in enumerate(x for x in drains if x.sink):
        kept.add_row(
            str(r + 1),
            f"{d.offered:,}",
            f"{d.written:,}",
            f"{d.dropped:,}",
            f"{d.buffered:,}",
            "not within 120 s" if d.drained_after_s is None else f"{d.drained_after_s:.2f} s",
        )
    console.print(kept)
    names = ["service", "mosquitto", "sink worker", "victoria-metrics"]
    cpu = Table(title="CPU seconds per process, from the backlog's release until drained (median)")
    cpu.add_column("sink")
    for name in names:
        cpu.add_column(name, justify="right")
    for sink_on in (False, True):
        row = [statistics.median([d.cpu_s.get(n, 0.0) for d in drains if d.sink is sink_on]) for n in names]
        cpu.add_row("on" if sink_on else "off", *(f"{x:.2f}" for x in row))
    console.print(cpu)
    console.print(
        f"machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}"
    )


def cli() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=5000, help="simulated devices (default 5000)")
    parser.add_argument("--messages", type=int, default=100_000, help="backlog per drain (default 100000)")
    parser.add_argument("--rounds", type=int, default=3, help="off/on pairs (default 3)")
    args = parser.parse_args()
    asyncio.run(main(args.devices, args.messages, args.rounds))


if __name__ == "__main__":
    cli()
