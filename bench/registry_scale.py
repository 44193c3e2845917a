"""A registry of N devices, end to end: start-up time and memory of the real service.

    python3 -m bench.registry_scale --devices 100000 [--devices 1000000] [--format json|yaml] [--cache DIR]

For each N: a generated hospital of about N devices (`simulators.hospital`: sites, buildings,
floors, zones, rooms; every shipped profile, in a hospital's proportions) is written as the registry
file `firewatch serve` reads, YAML or the same document as JSON (--format; cached in --cache,
generating 1,000,000 takes minutes). A child
process then builds `Service(settings)` from that file as `firewatch serve` does (SQLite and the
telemetry store in a temporary directory, a private mosquitto), starts it and reports when it is
ingesting: connected and subscribed. From then the bench publishes two QoS 1 readings per device
(normal values of every channel) and waits until the service has accepted all of them; then it
reads the child's resident memory from /proc (VmRSS now, VmHWM its peak).

Reported per N: seconds from spawning the child to ingesting, split by phase (`Service.phases`:
imports, registry, index, state store mirror, ...), the ingest time, and RSS. Results:
docs/benchmarks.md ("Registry at scale").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from ingest.mqtt_wire import remaining_length
from simulators.load import PacketBuilder, Publisher, open_connection

console = Console(stderr=True)
STALL_S = 120.0  # no ingest progress for this long: the run failed
INFLIGHT = 2_000


# --- the registry -----------------------------------------------------------------------------------


def registry_file(devices: int, fmt: str, cache: Path, progress: Progress) -> Path:
    """The registry of a hospital of about `devices` devices, as YAML or JSON, generated once per
    size and format."""
    from core.registry import dump_registry_json
    from simulators.hospital import hospital_for_devices, write_registry

    path = cache / f"hospital-{devices}.{fmt}"
    if path.exists():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    task = progress.add_task(f"generating a hospital of ~{devices:,} devices", total=None)
    hospital = hospital_for_devices(devices).generate()
    progress.update(task, description=f"writing {path.name}", total=1)

    def step(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    if fmt == "json":
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(dump_registry_json(hospital.sites, hospital.devices), encoding="utf-8")
        tmp.replace(path)
    else:
        write_registry(path, hospital.sites, hospital.devices, step)
    progress.remove_task(task)
    return path


def normal_value(channel: str, lo: float, hi: float) -> float:
    """A value inside the normal band of the shipped profiles: no alarm, so the run measures ingest,
    not alarm writing."""
    normal = {
        "smoke": 0.012,
        "pressure": 0.4,
        "open": 0.0,
        "level": 3.5,
        "current": 0.0,
        "residual_current": 60.0,
        "lel": 0.5,
    }
    value = normal.get(channel, 25.0 if channel.startswith("temp") else lo)
    return min(max(value, lo), hi)


def messages(registry: Path) -> tuple[list[bytes], list[bytes]]:
    """(topic, the JSON of its channel values) per device, in registry order."""
    from core.registry import load_registry
    from device_profiles.loader import load_profiles

    reg = load_registry(registry)
    profiles = load_profiles()
    values = {
        pid: json.dumps(
            {n: normal_value(n, *c.range) for n, c in p.channels.items()}, separators=(",", ":")
        ).encode()
        for pid, p in profiles.items()
    }
    topics = [f"fw/v1/{reg.locations[d].site}/{d}/telemetry".encode() for d in reg.devices]
    return topics, [values[device.profile] for device in reg.devices.values()]


class Readings(PacketBuilder):
    """PUBLISH packets (QoS 1) of `rounds` readings per device, device after device, round after
    round, for the project's own load publisher (simulators.load.Publisher: a bounded window, acks
    parsed in bulk; paho managed about 2,000 messages/s with a window of 5,000)."""

    def __init__(self, topics: list[bytes], values: list[bytes]) -> None:
        # Not PacketBuilder's simulated devices: only its interface (`qos`, `build`) is used.
        self.qos = 1
        self.fields = [len(t).to_bytes(2, "big") + t for t in topics]
        self.values = values
        self.n = len(topics)
        self.cursor = 0

    def build(self, count: int, packet_ids: npt.NDArray[np.object_] | None) -> bytes:
        assert packet_ids is not None
        ts = b"%.3f" % time.time()
        out = []
        for k, pid in enumerate(packet_ids.tolist()):
            dev, seq = divmod(self.cursor + k, self.n)[::-1]
            body = self.fields[dev] + pid + b'{"ts":%s,"seq":%d,"v":%s}' % (ts, seq + 1, self.values[dev])
            out.append(b"\x32" + remaining_length(len(body)) + body)
        self.cursor += count
        return b"".join(out)


def publish(
    host: str, port: int, topics: list[bytes], values: list[bytes], rounds: int, progress: Progress
) -> None:
    """`rounds` readings per device at QoS 1, at most `INFLIGHT` unacknowledged."""
    total = rounds * len(topics)
    task = progress.add_task("publishing", total=total)
    pub = Publisher(
        open_connection(host, port, f"bench-pub-{os.getpid()}"), Readings(topics, values), INFLIGHT
    )
    remaining = total
    while remaining or pub.out or pub.inflight:
        progressed = pub.flush()
        n = pub.ready(remaining) if remaining else 0
        if n:
            pub.publish(n)
            remaining -= n
            progressed = True
        elif not remaining:
            pub.set_lowat(1)
            pub.read()
        if not progressed:
            wake = pub.wait_acks(remaining) if remaining else True
            select.select([pub.sock] if wake else [], [pub.sock] if pub.out else [], [], 0.002)
        progress.update(task, completed=pub.acked)
    pub.close()
    progress.remove_task(task)


# --- the service, in a child process ----------------------------------------------------------------


def child(registry: Path, broker: str, data: Path) -> None:
    """Build and start the service as `firewatch serve` does (without the HTTP server), print one
    JSON line when ingesting, then one a second with the pipeline's counters, until SIGTERM."""
    spawned = float(os.environ["BENCH_SPAWNED"])
    imports_done = time.time()
    data.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        filename=data / "service.log",
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    from core.settings import MqttSettings, Settings
    from firewatch.service import Service, freeze_start_up_heap

    settings = Settings(
        data_dir=data, registry=registry, mqtt=MqttSettings(url=broker, client_id="bench-registry-scale")
    )
    imported = time.time()

    async def run() -> None:
        service = Service(settings)
        freeze_start_up_heap()  # as `firewatch serve` does
        constructed = time.time()
        await service.start()
        started = time.time()
        await service.source.connected.wait()
        ingesting = time.time()
        phases = {
            "interpreter start": imports_done - spawned,
            "imports": imported - imports_done,
            **service.phases.seconds,
            "start tasks": started - constructed,
            "connect, subscribe": ingesting - started,
        }
        grew = {name: service.phases.grew[name] for name in service.phases.seconds}
        emit(
            {
                "ingesting": ingesting - spawned,
                "phases": phases,
                "grew": grew,
                "devices": service.index.n_devices,
            }
        )
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        p = service.pipeline
        while not stop.is_set():
            emit({"accepted": p.accepted, "rejected": p.rejected, "stored_samples": p.stored_samples})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
        await service.stop()

    asyncio.run(run())


def stacks(pid: int) -> str:
    """What the service's threads are doing (py-spy, where installed), for a run that stalled."""
    spy = shutil.which("py-spy")
    if spy is None:
        return "py-spy is not installed: no stacks"
    done = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True, check=False)
    return "its threads:\n" + (done.stdout or done.stderr)


def emit(line: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


def children_rss(pid: int) -> int:
    """Resident memory of the child's own children (the telemetry compactor), in bytes."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for kid in (task / "children").read_text().split():
            with contextlib.suppress(FileNotFoundError):
                total += memory(int(kid)).get("VmRSS", 0)
    return total


@dataclass(frozen=True)
class Result:
    devices: int
    format: str  # of the registry file
    ingesting_s: float  # spawned to ingesting
    phases: dict[str, float]
    grew: dict[str, int]  # resident memory, bytes, per phase of the constructor
    rss_ingesting: int  # bytes
    publish_and_ingest_s: float
    accepted: int
    rejected: int
    rss: int  # after every device reported twice
    hwm: int  # the peak
    children_rss: int


def measure(devices: int, fmt: str, cache: Path, progress: Progress) -> Result:
    from firewatch.broker import Mosquitto

    path = registry_file(devices, fmt, cache, progress)
    task = progress.add_task("reading the device list for the publisher", total=None)
    topics, payloads = messages(path)
    progress.remove_task(task)
    with (
        tempfile.TemporaryDirectory(prefix="fw-registry-scale-") as tmp,
        # The backlog waiting for the service (the publisher is faster) must fit in the broker: past
        # its limit mosquitto drops QoS 1 messages (the default 1,000,000 lost 800,000 of 2,000,000).
        Mosquitto(data_dir=Path(tmp) / "mq", max_queued_messages=3 * 2 * len(topics)) as broker,
    ):
        env = {**os.environ, "BENCH_SPAWNED": repr(time.time())}
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.registry_scale",
                "--child",
                str(path),
                broker.url,
                str(Path(tmp) / "fw"),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert proc.stdout is not None
        try:
            task = progress.add_task(f"starting the service ({len(topics):,} devices)", total=None)
            first = json.loads(proc.stdout.readline() or "null")
            if first is None:
                raise RuntimeError(f"the service did not start (exit code {proc.wait()})")
            progress.remove_task(task)
            at_ingesting = memory(proc.pid)
            time.sleep(0.5)  # the subscription reaches the broker before the first reading does
            publishing = time.perf_counter()
            publish(broker.host, broker.port, topics, payloads, 2, progress)
            task = progress.add_task("ingesting", total=2 * len(topics))
            last, last_change = -1, time.monotonic()
            while True:
                status = json.loads(proc.stdout.readline() or "null")
                if status is None:
                    raise RuntimeError(f"the service ended (exit code {proc.wait()})")
                done = int(status["accepted"]) + int(status["rejected"])
                progress.update(task, completed=done)
                if done >= 2 * len(topics):
                    break
                if done != last:
                    last, last_change = done, time.monotonic()
                elif time.monotonic() - last_change > STALL_S:
                    raise RuntimeError(f"no progress for {STALL_S:.0f} s: {status}; {stacks(proc.pid)}")
            ingested = time.perf_counter() - publishing
            progress.remove_task(task)
            after = memory(proc.pid)
            compactor = children_rss(proc.pid)
        except RuntimeError as exc:
            log = Path(tmp) / "fw" / "service.log"
            tail = log.read_text(encoding="utf-8").splitlines()[-15:] if log.exists() else []
            raise RuntimeError("\n".join([str(exc), "the service's log ends:", *tail])) from None
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return Result(
        devices=len(topics),
        format=fmt,
        ingesting_s=float(first["ingesting"]),
        phases={k: float(v) for k, v in first["phases"].items()},
        grew={k: int(v) for k, v in first["grew"].items()},
        rss_ingesting=at_ingesting["VmRSS"],
        publish_and_ingest_s=ingested,
        accepted=int(status["accepted"]),
        rejected=int(status["rejected"]),
        rss=after["VmRSS"],
        hwm=after["VmHWM"],
        children_rss=compactor,
    )


def report(results: list[Result]) -> None:
    mib = 1024 * 1024
    table = Table(title="registry at scale: the service, spawned to ingesting, then 2 readings per device")
    table.add_column("")
    for r in results:
        table.add_column(f"{r.devices:,} devices, {r.format}", justify="right")
    names: list[str] = []
    for r in results:
        names += [n for n in r.phases if n not in names]
    for name in names:
        table.add_row(
            f"  {name}",
            *(
                f"{r.phases.get(name, 0.0):.2f} s"
                + (f" {r.grew[name] / mib:+,.0f} MiB" if name in r.grew else "")
                for r in results
            ),
        )
    rows: list[tuple[str, Callable[[Result], str]]] = [
        ("spawned to ingesting", lambda r: f"[bold]{r.ingesting_s:.1f} s[/]"),
        ("RSS when ingesting", lambda r: f"{r.rss_ingesting / mib:,.0f} MiB"),
        ("publish + ingest 2 per device", lambda r: f"{r.publish_and_ingest_s:.1f} s"),
        ("accepted / rejected", lambda r: f"{r.accepted:,} / {r.rejected:,}"),
        ("RSS after (VmRSS)", lambda r: f"[bold]{r.rss / mib:,.0f} MiB[/]"),
        ("peak RSS (VmHWM)", lambda r: f"{r.hwm / mib:,.0f} MiB"),
        ("its children's RSS (compactor)", lambda r: f"{r.children_rss / mib:,.0f} MiB"),
    ]
    for label, cell in rows:
        table.add_row(label, *(cell(r) for r in results))
    Console().print(table)
    Console().print(
        f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores, "
        f"{time.strftime('%Y-%m-%d')}; bars at 1,000,000 devices: ingesting within 30 s, RSS <= 2 GiB"
    )


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--devices", type=int, action="append", help="registry size, repeatable (default 100000; 200-1000000)"
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "fw-registry-scale",
        help="where generated registries are kept between runs",
    )
    parser.add_argument(
        "--format",
        choices=("yaml", "json"),
        action="append",
        help="registry file format, repeatable (default json; YAML takes minutes at 1,000,000)",
    )
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()
    sizes = [max(200, min(1_000_000, n)) for n in (args.devices or [100_000])]
    results = []
    with Progress(console=console, transient=True) as progress:
        for n in sizes:
            for fmt in args.format or ["json"]:
                try:
                    results.append(measure(n, fmt, args.cache, progress))
                except RuntimeError as exc:  # the other sizes are still measured
                    console.print(f"[red]{n:,} devices, {fmt}: {exc}[/]")
    report(results)
    if args.json:
        print(json.dumps([asdict(r) for r in results]))


if __name__ == "__main__":
    main()
