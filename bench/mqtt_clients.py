"""Which MQTT client drains a queued backlog fastest? paho-mqtt, aiomqtt and gmqtt, QoS 0 and 1.

    python3 -m bench.mqtt_clients --messages 30000 --repeat 3

Each variant gets a fresh persistent session on a private mosquitto: subscribe, disconnect, have a
backlog of N ~110-byte JSON readings queued by `mosquitto_pub -l` (a C publisher, so publishing is
not what is measured), reconnect and time the drain from first to last message, in wall-clock time
(msgs/s) and in this process's CPU time (µs per message, all its threads; the broker excluded).
Variants:
- auto: the client acknowledges QoS 1 itself on receipt (what a plain subscriber does);
- deferred: acknowledgements held back and sent in batches after a (here empty) commit, which is
  what firewatch needs (paho `manual_ack`; gmqtt through firewatch's own `ingest.mqtt.MqttSource`,
  which writes a batch's PUBACKs in one write);
- deferred, write per PUBACK: the same source acknowledging message by message, one write (one
  system call) per PUBACK, which is what it did before it wrote a batch at once;
- per-task: gmqtt's supported way to delay the ack: an async callback per message.
aiomqtt 2.x has no manual acknowledgement, so it appears with auto acks only.

The default backlog is 30,000 messages: with 100,000, paho-mqtt (QoS 0 and QoS 1, automatic
acknowledgement) stopped receiving at ~34,470 messages every time here, while gmqtt drained all of
them; cause not investigated (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import platform
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import gmqtt
import paho.mqtt.client as mqtt
from gmqtt.mqtt.constants import MQTTv50
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from firewatch.broker import Mosquitto
from ingest.mqtt import BrokerAddress, MqttSource
from ingest.queue import BoundedQueue

TOPIC = "fw/v1/bench/d000123/telemetry"
PAYLOAD = '{"ts":1732340000.25,"seq":812,"v":{"smoke":0.031,"temp":24.6},"batt":87,"rssi":-71}'
ACK_BATCH = 1000
TIMEOUT_S = 120.0
DEFERRED_EACH = "deferred, write per PUBACK"
console = Console()


@dataclass(frozen=True)
class Drained:
    rate: float  # messages/s, first to last message
    cpu_us: float  # this process's CPU time per message over the same span, µs


def drained(n: int, wall_s: float, cpu_s: float) -> Drained:
    return Drained(n / wall_s, cpu_s / n * 1e6)


Drain = Callable[[Mosquitto, str, int, int, Callable[[], None]], Awaitable[Drained]]


def fill_backlog(broker: Mosquitto, n: int) -> None:
    """Queue n messages for every disconnected persistent session, using the C client. Always QoS 1
    on the publishing side (at QoS 0 `mosquitto_pub -l` may exit before flushing); the subscription's
    QoS decides the delivery QoS."""
    lines = (PAYLOAD + "\n") * n
    subprocess.run(
        ["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-t", TOPIC, "-q", "1", "-l"],
        input=lines.encode(),
        check=True,
        timeout=TIMEOUT_S,
    )


def _paho(client_id: str, clean: bool) -> mqtt.Client:
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = 65_535
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client._bench_props = props  # type: ignore[attr-defined]
    return client


async def drain_paho(broker: Mosquitto, variant: str, qos: int, n: int, fill: Callable[[], None]) -> Drained:
    client_id = f"paho-{uuid.uuid4().hex[:6]}"
    done = threading.Event()
    times: list[float] = []
    cpu: list[float] = []
    count = 0
    client = _paho(client_id, False)
    client.connect(broker.host, broker.port, clean_start=False, properties=client._bench_props)  # type: ignore[attr-defined]
    client.subscribe(TOPIC, qos=qos)
    client.loop(1.0)
    client.disconnect()
    fill()
    client = _paho(client_id, False)
    manual = variant == "deferred"
    client.manual_ack_set(manual)
    pending: list[int] = []

    def on_message(c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        nonlocal count
        if not times:
            times.append(time.perf_counter())
            cpu.append(time.process_time())
        count += 1
        if manual:
            pending.append(msg.mid)
            if len(pending) >= ACK_BATCH or count >= n:
                for mid in pending:
                    c.ack(mid, msg.qos)
                pending.clear()
        if count >= n:
            times.append(time.perf_counter())
            cpu.append(time.process_time())
            done.set()

    client.on_message = on_message
    client.connect(broker.host, broker.port, clean_start=False, properties=client._bench_props)  # type: ignore[attr-defined]
    client.loop_start()
    ok = await asyncio.to_thread(done.wait, TIMEOUT_S)
    client.loop_stop()
    client.disconnect()
    if not ok:
        raise TimeoutError(f"paho {variant} received {count}/{n}")
    return drained(n, times[1] - times[0], cpu[1] - cpu[0])


async def drain_aiomqtt(
    broker: Mosquitto, variant: str, qos: int, n: int, fill: Callable[[], None]
) -> Drained:
    client_id = f"aio-{uuid.uuid4().hex[:6]}"
    async with aiomqtt.Client(broker.host, broker.port, identifier=client_id, clean_session=False) as c:
        await c.subscribe(TOPIC, qos=qos)
    await asyncio.to_thread(fill)
    count = 0
    first = first_cpu = 0.0
    async with aiomqtt.Client(broker.host, broker.port, identifier=client_id, clean_session=False) as c:
        async with asyncio.timeout(TIMEOUT_S):
            async for _message in c.messages:
                if not count:
                    first, first_cpu = time.perf_counter(), time.process_time()
                count += 1
                if count >= n:
                    break
    return drained(n, time.perf_counter() - first, time.process_time() - first_cpu)


async def drain_gmqtt(broker: Mosquitto, variant: str, qos: int, n: int, fill: Callable[[], None]) -> Drained:
    client_id = f"gm-{uuid.uuid4().hex[:6]}"
    if variant.startswith("deferred"):  # firewatch's own source: hooked QoS 1 handler, deferred PUBACKs
        one_by_one = variant == DEFERRED_EACH
        queue = BoundedQueue(10 * n)
        source = MqttSource(
            BrokerAddress(broker.host, broker.port),
            client_id=client_id,
            topics=[TOPIC],
            queue=queue,
            clock=time.time,
            receive_maximum=65_535,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(source.run(stop))
        await asyncio.wait_for(source.connected.wait(), 10)
        await asyncio.sleep(0.3)
        stop.set()
        await task
        await asyncio.to_thread(fill)
        stop = asyncio.Event()
        source.connected.clear()
        task = asyncio.create_task(source.run(stop))
        got, first, first_cpu = 0, 0.0, 0.0
        async with asyncio.timeout(TIMEOUT_S):
            while got < n:
                batch = await queue.get_batch(ACK_BATCH, 0)
                if not got:
                    first, first_cpu = time.perf_counter(), time.process_time()
                got += len(batch)
                if one_by_one:
                    for message in batch:
                        source.ack([message])
                else:
                    source.ack(batch)
        result = drained(n, time.perf_counter() - first, time.process_time() - first_cpu)
        stop.set()
        await task
        return result

    done = asyncio.Event()
    state = {"count": 0, "first": 0.0, "last": 0.0, "first_cpu": 0.0, "last_cpu": 0.0}

    def count() -> None:
        if not state["count"]:
            state["first"], state["first_cpu"] = time.perf_counter(), time.process_time()
        state["count"] += 1
        if state["count"] >= n:
            state["last"], state["last_cpu"] = time.perf_counter(), time.process_time()
            done.set()

    def on_sync(*_args: object) -> int:
        count()
        return 0

    async def on_async(*_args: object) -> int:
        count()
        return 0

    per_task = variant == "per-task"
    props = {"receive_maximum": 65_535, "session_expiry_interval": 3600}
    c = gmqtt.Client(client_id, clean_session=False, **props)
    await c.connect(broker.host, broker.port, version=MQTTv50)
    c.subscribe(TOPIC, qos=qos)
    await asyncio.sleep(0.3)
    await c.disconnect()
    await asyncio.to_thread(fill)
    c = gmqtt.Client(client_id, clean_session=False, optimistic_acknowledgement=not per_task, **props)
    c.on_message = on_async if per_task else on_sync
    await c.connect(broker.host, broker.port, version=MQTTv50)
    await asyncio.wait_for(done.wait(), TIMEOUT_S)
    await c.disconnect()
    return drained(n, state["last"] - state["first"], state["last_cpu"] - state["first_cpu"])


VARIANTS: list[tuple[str, str, int, Drain]] = [
    ("paho-mqtt", "auto", 0, drain_paho),
    ("paho-mqtt", "auto", 1, drain_paho),
    ("paho-mqtt", "deferred", 1, drain_paho),
    ("aiomqtt", "auto", 0, drain_aiomqtt),
    ("aiomqtt", "auto", 1, drain_aiomqtt),
    ("gmqtt", "auto", 0, drain_gmqtt),
    ("gmqtt", "auto", 1, drain_gmqtt),
    ("gmqtt", "per-task", 1, drain_gmqtt),
    ("gmqtt", "deferred", 1, drain_gmqtt),
    ("gmqtt", DEFERRED_EACH, 1, drain_gmqtt),
]


async def run(n: int, repeat: int, clients: set[str]) -> dict[tuple[str, str, int], list[Drained]]:
    variants = [v for v in VARIANTS if v[0] in clients]
    results: dict[tuple[str, str, int], list[Drained]] = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        Mosquitto(data_dir=Path(tmp), queue_qos0=True) as broker,
        Progress(console=console, transient=True) as progress,
    ):
        bar = progress.add_task("draining", total=len(variants) * repeat)
        for r in range(repeat):  # interleave rounds so machine noise spreads over all variants
            for client, variant, qos, drain in variants if r % 2 == 0 else variants[::-1]:
                progress.update(bar, description=f"round {r + 1}: {client} {variant} QoS {qos}")
                rate = await drain(broker, variant, qos, n, functools.partial(fill_backlog, broker, n))
                results.setdefault((client, variant, qos), []).append(rate)
                progress.advance(bar)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=30_000, help="backlog per drain (default 30000)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the median is reported (default 3)")
    parser.add_argument(
        "--clients",
        default="paho-mqtt,aiomqtt,gmqtt",
        help="comma-separated clients to measure (default paho-mqtt,aiomqtt,gmqtt)",
    )
    args = parser.parse_args()
    results = asyncio.run(run(args.messages, args.repeat, set(args.clients.split(","))))
    best = max(statistics.median(d.rate for d in v) for v in results.values())
    table = Table(title=f"draining a backlog of {args.messages:,} messages (median of {args.repeat})")
    for col in ("client", "acknowledgement", "QoS", "msgs/s", "range", "vs best", "CPU µs/msg", "range"):
        table.add_column(col, justify="left" if col in ("client", "acknowledgement") else "right")
    for (client, variant, qos), runs in results.items():
        rates, cpus = [d.rate for d in runs], [d.cpu_us for d in runs]
        med = statistics.median(rates)
        table.add_row(
            client,
            variant,
            str(qos),
            f"{med:,.0f}",
            f"{min(rates):,.0f}-{max(rates):,.0f}",
            f"{med / best:.2f}",
            f"{statistics.median(cpus):.2f}",
            f"{min(cpus):.2f}-{max(cpus):.2f}",
        )
    console.print(table)
    console.print(
        f"{time.strftime('%Y-%m-%d')}, {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} cores, mosquitto {Mosquitto.version()}"
    )


if __name__ == "__main__":
    main()
