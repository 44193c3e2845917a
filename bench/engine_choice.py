"""The engine, chosen by measurement: MQTT QoS 1 in, durably stored, read by a consumer — NATS
JetStream against RabbitMQ 3.10 with its MQTT plugin (docs/decisions/0015-engine.md).

    python -m bench.engine_choice [--messages 20000] [--rounds 2] [--json PATH]
                                  [--engines nats-r1,nats-r3,rabbitmq,rabbitmq-3q]

One paho publisher (QoS 1, up to 1,000 in flight) sends the same readings of 1,200 devices in 48
sites (simulators/city.py) to each engine, while one consumer reads them back:
- nats-r1, nats-r3: nats-server 2.9.10, one node with stream FW R1 / three nodes with FW R3 (the
  deployment's), the site-partitioning mapping; the consumer is an ephemeral pull consumer on
  `fwp.>` (AckNone, batches of 1,000), as a worker reads;
- rabbitmq: one private RabbitMQ 3.10 node (Debian's package; its own ports, data, cookie and
  Erlang node name, started here; never the machine's shared node: bench/rabbit.py), MQTT plugin;
  the consumer is a paho MQTT QoS 1 subscriber with a persistent session (a durable classic
  queue), subscribed before publishing;
- rabbitmq-3q: three such nodes joined into a cluster, `mqtt.durable_queue_type = quorum`: the
  subscription's queue is a quorum queue (Raft) with a member on each of the three nodes (checked
  after every run), the analogue of the R3 stream; the publisher on node 1, the consumer on node 2
  (where the queue's leader is then placed).
Reported per run: messages/s from the first publish to the last message read, and the publisher's
acknowledged rate. The engines run one after another, rotated each round, on the same machine.
Needs root (the RabbitMQ nodes run as the `rabbitmq` user on private directories).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
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

from bench.rabbit import PrivateRabbit, RabbitCluster
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


def rabbit_round(engine: str, pub_port: int, sub_port: int, n: int, rnd: int) -> Result:
    ready = threading.Event()
    ends: list[float] = []
    consumer = rabbit_consumer(sub_port, n, ready, ends.append)
    ready.wait(30)
    t0, t_ack = publish(pub_port, n, f"bench-{engine}-{rnd}")
    deadline = time.monotonic() + 300
    while not ends and time.monotonic() < deadline:
        time.sleep(0.05)
    consumer.loop_stop()
    consumer.disconnect()
    end = ends[0]
    return Result(engine, rnd, n, end - t0, n / (end - t0), n / (t_ack - t0))


def run_rabbit(n: int, work: Path, rnd: int) -> Result:
    rabbit = PrivateRabbit(work / f"rabbit-{rnd}", secrets.token_hex(16).upper()).start()
    try:
        return rabbit_round("rabbitmq", rabbit.mqtt, rabbit.mqtt, n, rnd)
    finally:
        rabbit.stop()


def run_rabbit_cluster(n: int, work: Path, rnd: int) -> Result:
    with RabbitCluster(work / f"rabbit3-{rnd}", nodes=3, durable_queue_type="quorum") as cluster:
        result = rabbit_round("rabbitmq-3q", cluster.mqtt_ports[0], cluster.mqtt_ports[1], n, rnd)
        # What was measured must be what is claimed: the subscription's queue is replicated.
        queue = next(q for q in cluster.queues() if str(q["name"]).startswith("mqtt-subscription-"))
        members = queue["members"]
        if queue["type"] != "quorum" or not isinstance(members, list) or len(members) != 3:
            raise RuntimeError(f"the subscription queue is not a quorum queue on 3 nodes: {queue}")
        return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--engines", default="nats-r1,nats-r3,rabbitmq,rabbitmq-3q")
    args = ap.parse_args()
    results: list[Result] = []
    runners: list[tuple[str, Callable[[Path, int], Result]]] = [
        ("nats-r1", lambda w, r: run_nats(1, args.messages, w, r)),
        ("nats-r3", lambda w, r: run_nats(3, args.messages, w, r)),
        ("rabbitmq", lambda w, r: run_rabbit(args.messages, w, r)),
        ("rabbitmq-3q", lambda w, r: run_rabbit_cluster(args.messages, w, r)),
    ]
    chosen = args.engines.split(",")
    unknown = set(chosen) - {name for name, _ in runners}
    if unknown:
        ap.error(f"unknown engines: {sorted(unknown)}")
    runners = [(name, run) for name, run in runners if name in chosen]
    with tempfile.TemporaryDirectory(prefix="fw-engines-") as tmp:
        os.chmod(tmp, 0o755)
        for rnd in range(args.rounds):
            order = runners[rnd % len(runners) :] + runners[: rnd % len(runners)]
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
