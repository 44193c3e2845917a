"""Ingest throughput: readings/s through the whole path (receive, decode, detect, persist, ack) in one
process, beside the raw drain rate of the MQTT client alone, measured in the same run.

    python3 -m bench.ingest --devices 5000 --messages 200000

Both phases drain the same kind of backlog from a private mosquitto (persistent session, QoS 1, each
message a ~110-byte JSON reading with two channels), so their ratio is what firewatch's own work
costs on top of receiving.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from core.registry import BuildingSpec, Device, FloorSpec, Registry, SiteSpec, ZoneSpec
from core.settings import IngestSettings, MqttSettings, Settings
from device_profiles.loader import load_profiles
from firewatch.broker import Mosquitto
from firewatch.metrics import Metrics
from firewatch.service import Service
from ingest.envelope import Message
from ingest.mqtt import BrokerAddress, MqttSource
from ingest.queue import BoundedQueue
from ingest.topics import subscriptions

console = Console()
STALL_S = 20.0


def registry(devices: int) -> Registry:
    floors = [
        FloorSpec(id=f"f{f}", name=f"{f}F", zones=[ZoneSpec(id=f"z{z}", name=f"{z}区") for z in range(10)])
        for f in range(10)
    ]
    site = SiteSpec(id="bench", name="bench", buildings=[BuildingSpec(id="b1", name="b1", floors=floors)])
    devs = [
        Device(id=f"d{i:06d}", profile="smoke-photoelectric", place=f"bench/b1/f{i % 10}/z{(i // 10) % 10}")
        for i in range(devices)
    ]
    return Registry([site], devs)


def publish_backlog(broker: Mosquitto, devices: int, messages: int, progress: Progress) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:6]}")
    client.max_inflight_messages_set(2000)  # bounded: paho stalls near 65,535 in flight
    client.max_queued_messages_set(0)
    client.connect(broker.host, broker.port)
    client.loop_start()
    task = progress.add_task("publishing backlog", total=messages)
    now = time.time()
    infos = []
    for i in range(messages):
        dev = i % devices
        seq = i // devices + 1
        smoke, temp = f"0.0{(i % 7) + 1}2", f"2{i % 10}.5"
        payload = f'{{"ts":{now + i * 1e-4:.4f},"seq":{seq},"v":{{"smoke":{smoke},"temp":{temp}}},"batt":87}}'
        infos.append(client.publish(f"fw/v1/bench/d{dev:06d}/telemetry", payload, qos=1))
        if len(infos) >= 2000:
            infos[0].wait_for_publish(30)
            infos = [x for x in infos if not x.is_published()]
            progress.update(task, completed=i + 1)
    for info in infos:
        info.wait_for_publish(30)
    progress.update(task, completed=messages)
    client.loop_stop()
    client.disconnect()


async def raw_drain(broker: Mosquitto, devices: int, messages: int, progress: Progress) -> float:
    """The chosen client alone: receive and acknowledge in batches, no decoding or storage."""
    queue = BoundedQueue(10**7)
    client_id = f"bench-raw-{uuid.uuid4().hex[:6]}"
    source = MqttSource(
        BrokerAddress(broker.host, broker.port),
        client_id=client_id,
        topics=subscriptions(),
        queue=queue,
        clock=time.time,
        receive_maximum=20_000,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(source.run(stop))
    await source.connected.wait()
    await asyncio.sleep(0.5)
    stop.set()
    await task
    publish_backlog(broker, devices, messages, progress)
    stop = asyncio.Event()
    source.connected.clear()
    task = asyncio.create_task(source.run(stop))
    bar = progress.add_task("raw drain (client only)", total=messages)
    got = 0
    started = None
    while got < messages:
        batch: list[Message] = await asyncio.wait_for(queue.get_batch(5000, 0), 60)
        if started is None:
            started = time.perf_counter()
        got += len(batch)
        source.ack(batch)
        progress.update(bar, completed=got)
    elapsed = time.perf_counter() - (started or time.perf_counter())
    stop.set()
    await task
    return messages / elapsed


TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far, all its threads (0.0 once it is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()  # proc(5): [11] utime, [12] stime, counted from state
    return (int(fields[11]) + int(fields[12])) * TICK_S


def batch_histogram(metrics: Metrics) -> dict[str, float]:
    """Cumulative counts of `fw_ingest_batch_messages` by upper bound (`le`), as /metrics has them."""
    return {
        s.labels["le"]: s.value
        for family in metrics.batch_messages.collect()
        for s in family.samples
        if s.name.endswith("_bucket")
    }


def mosquitto_pid(broker: Mosquitto) -> int:
    proc = broker._proc  # the private broker's process: its CPU is part of what a run costs
    assert proc is not None, "the broker is not running"
    return proc.pid


@dataclass
class Drain:
    """A backlog drained through the whole service in this process: its rate and what it cost."""

    readings_per_s: float
    messages: int
    seconds: float
    cpu_s: float  # this process (the service: every thread) over the drain
    broker_cpu_s: float  # mosquitto's over the drain
    batches: int
    batch_hist: dict[str, float] = field(default_factory=dict)  # cumulative, by upper bound

    @property
    def cpu_us_per_message(self) -> float:
        return 1e6 * self.cpu_s / self.messages

    @property
    def broker_cpu_us_per_message(self) -> float:
        return 1e6 * self.broker_cpu_s / self.messages


async def full_path(broker: Mosquitto, devices: int, messages: int, data: Path, progress: Progress) -> float:
    return (await full_path_measured(broker, devices, messages, data, progress)).readings_per_s


async def full_path_measured(
    broker: Mosquitto, devices: int, messages: int, data: Path, progress: Progress
) -> Drain:
    settings = Settings(
        data_dir=data,
        mqtt=MqttSettings(url=broker.url, client_id=f"bench-fw-{uuid.uuid4().hex[:6]}"),
        ingest=IngestSettings(liveness_check_s=5),
    )
    profiles = load_profiles()
    service = Service(settings, registry=registry(devices), profiles=profiles)
    await service.start()
    await service.source.connected.wait()
    await asyncio.sleep(0.5)
    await service.stop()
    publish_backlog(broker, devices, messages, progress)
    service = Service(settings, registry=registry(devices), profiles=profiles)
    bar = progress.add_task("full path (decode, detect, store, ack)", total=messages)
    await service.start()
    started = None
    last_progress, last_seen = time.monotonic(), -1
    p = service.pipeline
    broker_pid = mosquitto_pid(broker)
    cpu0 = broker_cpu0 = 0.0
    while p.accepted < messages or p.stored_samples < 2 * messages:
        if started is None and p.batches:
            started = time.perf_counter()
            cpu0, broker_cpu0 = cpu_seconds(os.getpid()), cpu_seconds(broker_pid)
        progress.update(bar, completed=p.accepted)
        if p.accepted + p.stored_samples != last_seen:
            last_progress, last_seen = time.monotonic(), p.accepted + p.stored_samples
        elif time.monotonic() - last_progress > STALL_S:
            await service.stop()
            raise RuntimeError(
                f"no progress for {STALL_S:.0f} s: accepted {p.accepted}, rejected {p.rejected}, "
                f"stored samples {p.stored_samples}, received {service.queue.received}, "
                f"dropped {service.queue.dropped}, store failures {p.store_failures}"
            )
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - (started or time.perf_counter())
    cpu, broker_cpu = cpu_seconds(os.getpid()) - cpu0, cpu_seconds(broker_pid) - broker_cpu0
    progress.update(bar, completed=messages)
    await service.stop()
    return Drain(
        readings_per_s=messages / elapsed,
        messages=messages,
        seconds=elapsed,
        cpu_s=cpu,
        broker_cpu_s=broker_cpu,
        batches=p.batches,
        batch_hist=batch_histogram(service.metrics),
    )


async def main(devices: int, messages: int) -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        Mosquitto(data_dir=Path(tmp) / "mq") as broker,
        Progress(console=console, transient=True) as progress,
    ):
        raw = await raw_drain(broker, devices, messages, progress)
        full = await full_path(broker, devices, messages, Path(tmp) / "fw", progress)
    table = Table(title=f"ingest, {messages:,} QoS 1 readings from {devices:,} devices")
    table.add_column("path")
    table.add_column("readings/s", justify="right")
    table.add_column("vs raw", justify="right")
    table.add_row("raw drain: gmqtt client, batched acks, nothing else", f"{raw:,.0f}", "1.00")
    table.add_row("firewatch: receive + decode + detect + persist + ack", f"{full:,.0f}", f"{full / raw:.2f}")
    console.print(table)
    console.print(
        f"machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}, "
        f"{__import__('os').cpu_count()} cores; {time.strftime('%Y-%m-%d')}"
    )


def cli() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=5000, help="simulated devices (default 5000)")
    parser.add_argument(
        "--messages", type=int, default=200_000, help="backlog size per phase (default 200000)"
    )
    args = parser.parse_args()
    asyncio.run(main(args.devices, args.messages))


if __name__ == "__main__":
    cli()
