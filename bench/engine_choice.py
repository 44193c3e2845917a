"""The engine, chosen by measurement: MQTT QoS 1 in, durably stored, read by a consumer — NATS
JetStream against RabbitMQ 3.10 with its MQTT plugin (docs/decisions/0015-engine.md).

    python -m bench.engine_choice [--messages 20000] [--rounds 2] [--json PATH]

One paho publisher (QoS 1, up to 1,000 in flight) sends the same readings of 1,200 devices in 48
sites (simulators/city.py) to each engine, while one consumer reads them back:
- nats-r1, nats-r3: nats-server 2.9.10, one node with stream FW R1 / three nodes with FW R3 (the
  deployment's), the site-partitioning mapping; the consumer is an ephemeral pull consumer on
  `fwp.>` (AckNone, batches of 1,000), as a worker reads;
- rabbitmq: one private RabbitMQ 3.10 node (Debian's package; its own ports, data and Erlang node
  name, started here; never the machine's shared node), MQTT plugin; the consumer is a paho MQTT
  QoS 1 subscriber with a persistent session (a durable queue), subscribed before publishing.
Reported per run: messages/s from the first publish to the last message read, and the publisher's
acknowledged rate. The engines run one after another, rotated each round, on the same machine.
Needs root (the RabbitMQ node runs as the `rabbitmq` user on a private directory).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import nats
import paho.mqtt.client as mqtt
from nats.js import api as js_api
from paho.mqtt.enums import CallbackAPIVersion
from rich.console import Console
from rich.table import Table

from firewatch.broker import free_port
from firewatch.cluster.engine import NatsCluster, prepare_stream
from simulators.city import CLEAN_AIR, device_ids, reading

console = Console()
PARTITIONS = 12


@dataclass
class Result:
    engine: str
    round: int
    messages: int
    seconds: float  # first publish to last message read
    rate: float
    acked_rate: float  # the publisher's PUBACKs per second


class PrivateRabbit:
    """One RabbitMQ node with the MQTT plugin on free loopback ports and a private directory."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.amqp, self.mqtt, self.dist, self.mgmt = (free_port() for _ in range(4))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60.0) -> PrivateRabbit:
        for d in ("mnesia", "log"):
            (self.base / d).mkdir(parents=True, exist_ok=True)
        (self.base / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        (self.base / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.amqp}\n"
            f"mqtt.listeners.tcp.default = 127.0.0.1:{self.mqtt}\n"
            f"management.tcp.port = {self.mgmt}\n"
        )
        shutil.chown(self.base, "rabbitmq", "rabbitmq")
        for path in self.base.rglob("*"):
            shutil.chown(path, "rabbitmq", "rabbitmq")
        env = {
            **os.environ,
            "RABBITMQ_NODENAME": f"fwbench{self.amqp}@localhost",
            "RABBITMQ_NODE_PORT": str(self.amqp),
            "RABBITMQ_DIST_PORT": str(self.dist),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_FEATURE_FLAGS_FILE": str(self.base / "mnesia" / "feature_flags"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq"),
            "RABBITMQ_PID_FILE": str(self.base / "pid"),
        }
        with (self.base / "out.log").open("wb") as out:
            self.proc = subprocess.Popen(
                ["rabbitmq-server"], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if b"Starting broker... completed" in (self.base / "out.log").read_bytes():
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"RabbitMQ did not start: {(self.base / 'out.log').read_text()[-800:]}")

    def _vm_pids(self) -> list[int]:
        """The node's processes: its Erlang VM runs as `rabbitmq`, outside the script's process
        group, and only its environment names the node."""
        mark = f"RABBITMQ_NODENAME=fwbench{self.amqp}@localhost".encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if mark in (entry / "environ").read_bytes().split(b"\0"):
                        pids.append(int(entry.name))
        return pids

    def stop(self) -> None:
        for pid in self._vm_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 15)
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(10)
        deadline = time.monotonic() + 20
        while pids := self._vm_pids():
            if time.monotonic() > deadline:
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, 9)
                break
            time.sleep(0.2)


def publish(port: int, n: int, client_id: str) -> tuple[float, float]:
    """QoS 1 publishes of n readings; (first publish time, time of the last PUBACK)."""
    devices = device_ids(48, 25)
    acked = threading.Event()
    count = 0

    def on_publish(c: mqtt.Client, u: object, mid: int, rc: object, p: object) -> None:
        nonlocal count
        count += 1
        if count >= n:
            acked.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    t0 = time.monotonic()
    base = time.time()
    for i in range(n):
        site, device = devices[i % len(devices)]
        client.publish(
            f"fw/v1/{site}/{device}/telemetry", reading(i // len(devices) + 1, base + i * 1e-4, CLEAN_AIR), 1
        )
    acked.wait(300)
    t_ack = time.monotonic()
    client.loop_stop()
    client.disconnect()
    return t0, t_ack


def rabbit_consumer(port: int, n: int, ready: threading.Event, done: Callable[[float], None]) -> mqtt.Client:
    got = 0

    def on_message(c: mqtt.Client, u: object, m: mqtt.MQTTMessage) -> None:
        nonlocal got
        got += 1
        if got == n:
            done(time.monotonic())

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fw-bench-consumer", clean_session=False)
    client.on_message = on_message
    client.on_subscribe = lambda *a: ready.set()
    client.connect("127.0.0.1", port)
    client.subscribe("fw/v1/#", qos=1)
    client.loop_start()
    return client


async def nats_consume(urls: list[str], n: int, ready: threading.Event) -> float:
    nc = await nats.connect(servers=urls)
    js = nc.jetstream()
    sub = await js.pull_subscribe(
        "fwp.>",
        stream="FW",
        config=js_api.ConsumerConfig(ack_policy=js_api.AckPolicy.NONE, num_replicas=1, mem_storage=True),
    )
    ready.set()
    got = 0
    while got < n:
        try:
            got += len(await sub.fetch(1000, timeout=1.0))
        except TimeoutError:
            continue
    end = time.monotonic()
    await nc.close()
    return end


def run_nats(nodes: int, n: int, work: Path, rnd: int) -> Result:
    cluster = NatsCluster(work / f"nats{nodes}-{rnd}", nodes=nodes, partitions=PARTITIONS).start()
    try:
        asyncio.run(prepare_stream(cluster.client_urls, PARTITIONS, replicas=nodes, max_age_s=3600.0))
        ready = threading.Event()
        ends: list[float] = []
        reader = threading.Thread(
            target=lambda: ends.append(asyncio.run(nats_consume(cluster.client_urls, n, ready))), daemon=True
        )
        reader.start()
        ready.wait(30)
        t0, t_ack = publish(cluster.mqtt_ports[0], n, f"bench-{nodes}-{rnd}")
        reader.join(300)
        end = ends[0]
    finally:
        cluster.stop()
    return Result(f"nats-r{nodes}", rnd, n, end - t0, n / (end - t0), n / (t_ack - t0))


def run_rabbit(n: int, work: Path, rnd: int) -> Result:
    rabbit = PrivateRabbit(work / f"rabbit-{rnd}").start()
    try:
        ready = threading.Event()
        ends: list[float] = []
        consumer = rabbit_consumer(rabbit.mqtt, n, ready, ends.append)
        ready.wait(30)
        t0, t_ack = publish(rabbit.mqtt, n, f"bench-rabbit-{rnd}")
        deadline = time.monotonic() + 300
        while not ends and time.monotonic() < deadline:
            time.sleep(0.05)
        consumer.loop_stop()
        consumer.disconnect()
        end = ends[0]
    finally:
        rabbit.stop()
    return Result("rabbitmq", rnd, n, end - t0, n / (end - t0), n / (t_ack - t0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    results: list[Result] = []
    runners: list[tuple[str, Callable[[Path, int], Result]]] = [
        ("nats-r1", lambda w, r: run_nats(1, args.messages, w, r)),
        ("nats-r3", lambda w, r: run_nats(3, args.messages, w, r)),
        ("rabbitmq", lambda w, r: run_rabbit(args.messages, w, r)),
    ]
    with tempfile.TemporaryDirectory(prefix="fw-engines-") as tmp:
        os.chmod(tmp, 0o755)
        for rnd in range(args.rounds):
            order = runners[rnd % 3 :] + runners[: rnd % 3]
            for name, run in order:
                with console.status(f"round {rnd + 1}: {name}"):
                    results.append(run(Path(tmp), rnd))
                console.print(f"round {rnd + 1} {name}: {results[-1].rate:,.0f} msg/s")
    table = Table(title=f"MQTT QoS 1 in, stored, read back: {args.messages:,} messages")
    for col in ("engine", "round", "seconds", "msg/s end to end", "PUBACKs/s"):
        table.add_column(col, justify="right")
    for r in results:
        table.add_row(
            r.engine, str(r.round + 1), f"{r.seconds:.1f}", f"{r.rate:,.0f}", f"{r.acked_rate:,.0f}"
        )
    console.print(table)
    if args.json is not None:
        info = {
            "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs",
            "date": time.strftime("%Y-%m-%d"),
            "results": [asdict(r) for r in results],
        }
        args.json.write_text(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
