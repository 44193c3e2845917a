"""What a kill -9 of one engine node costs the devices' messages: NATS 2.9 JetStream, 3 nodes, R3.

    python -m bench.engine_failover [--rate 500] [--seconds 14] [--kill-at 4] [--trials 2]
                                    [--victims stream-leader,meta-leader,follower,device-node]

Per trial: a private 3-node cluster (firewatch.cluster.engine.NatsCluster) with the stream FW; one
paho MQTT client (QoS 1, persistent session, up to 100 in flight, as a gateway or a busy device)
publishes numbered readings of 20 devices at --rate for --seconds to one node; at --kill-at the
victim node is SIGKILLed:
- stream-leader: the node leading the stream FW (the device on another node);
- meta-leader: the JetStream meta leader, when it does not lead FW (else the trial says so);
- follower: a node leading neither (the device on another node);
- device-node: the node the device is connected to, leading neither; the client then reconnects
  to the next node and paho sends again what was not acknowledged.
Meanwhile a NATS client publishes to the stream through a surviving node every 50 ms (JetStream
acknowledged, 250 ms timeout): the window in which the stream took nothing is from the kill to the
first acknowledged probe. Afterwards the whole stream is read back and compared with what the MQTT
client had PUBACKs for: lost = acknowledged but not stored; duplicates = stored more than once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nats
import paho.mqtt.client as mqtt
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from rich.console import Console
from rich.table import Table

from firewatch.cluster.engine import STREAM, NatsCluster, node_name, prepare_stream

console = Console()
VICTIMS = ("stream-leader", "meta-leader", "follower", "device-node")


@dataclass
class Trial:
    victim: str
    killed: str = ""
    published: int = 0
    acknowledged: int = 0
    stored_unique: int = 0
    lost: int = 0
    duplicates: int = 0
    lost_from_s: float | None = None  # relative to the kill
    lost_to_s: float | None = None
    stream_unavailable_s: float | None = None
    reconnected: int = 0
    note: str = ""
    acked: set[int] = field(default_factory=set, repr=False)


class Device:
    """A paho client publishing numbered readings at a steady rate; remembers what was PUBACKed."""

    def __init__(self, ports: list[int], first: int) -> None:
        self.ports = ports
        self.current = first
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="bench-failover", clean_session=False
        )
        self.client.max_inflight_messages_set(100)
        self.client.max_queued_messages_set(0)
        self.mids: dict[int, int] = {}
        self.acked: set[int] = set()
        self.acked_at: dict[int, float] = {}  # seq -> monotonic time its PUBACK was seen
        self.early: dict[int, float] = {}
        self.connected = threading.Event()
        self.reconnects = 0
        self.lock = threading.Lock()
        self.client.on_publish = self._on_publish
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.connect("127.0.0.1", ports[first], keepalive=10)
        self.client.loop_start()
        if not self.connected.wait(10):
            raise RuntimeError("the device could not connect")

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, rc: ReasonCode, p: object
    ) -> None:
        if not rc.is_failure:  # a refused CONNECT (e.g. the engine cannot register the client yet)
            self.connected.set()

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int, rc: object, props: object) -> None:
        now = time.monotonic()
        with self.lock:  # the PUBACK may come before publish() has recorded its mid
            seq = self.mids.pop(mid, None)
            if seq is None:
                self.early[mid] = now
            else:
                self.acked.add(seq)
                self.acked_at[seq] = now

    def _on_disconnect(
        self, client: mqtt.Client, userdata: object, flags: object, rc: object, p: object
    ) -> None:
        self.connected.clear()

    def ensure_connected(self, alive: list[bool]) -> None:
        if self.connected.is_set():
            return
        # The node went away: a device behind a load balancer would land on another one.
        self.client.loop_stop()
        for step in range(1, len(self.ports) + 1):
            candidate = (self.current + step) % len(self.ports)
            if alive[candidate]:
                self.current = candidate
                break
        self.reconnects += 1
        self.client.connect("127.0.0.1", self.ports[self.current], keepalive=10)
        self.client.loop_start()
        self.connected.wait(10)

    def publish(self, seq: int, sent_at: float) -> None:
        payload = json.dumps({"seq": seq, "t": sent_at}).encode()
        # Not under self.lock: paho's network thread holds its own lock while calling _on_publish.
        info = self.client.publish(f"fw/v1/s1/dev-{seq % 20:02d}/telemetry", payload, qos=1)
        with self.lock:
            if info.mid in self.early:
                self.acked_at[seq] = self.early.pop(info.mid)
                self.acked.add(seq)
            else:
                self.mids[info.mid] = seq

    def close(self) -> None:
        # Disconnect first: paho's loop_stop() waits for every QoS 1 message in flight to be
        # acknowledged, which never happens when the engine can no longer store them.
        self.client.disconnect()
        self.client.loop_stop()


@dataclass(frozen=True)
class Schedule:
    """What a device sent through a kill: readings 0 .. published-1, reading n at start + n * interval."""

    published: int
    start: float
    interval: float
    killed_at: float | None  # monotonic; None if the run ended first

    def sent_at(self, seq: int) -> float:
        return self.start + seq * self.interval


def publish_through_a_kill(
    device: Device,
    alive: list[bool],
    args: argparse.Namespace,
    kill: Callable[[], None],
    on_killed: Callable[[float], None] | None = None,
) -> Schedule:
    """Publish numbered readings at --rate for --seconds, calling `kill` (which marks its nodes dead
    in `alive`) at --kill-at and `on_killed` with the time just after; then wait up to 15 s for the
    PUBACKs still owed, reconnecting to a live node as a device would, and close the device."""
    start = time.monotonic()
    interval = 1.0 / args.rate
    killed_at: float | None = None
    seq = 0
    while (now := time.monotonic()) - start < args.seconds:
        if killed_at is None and now - start >= args.kill_at:
            kill()
            killed_at = time.monotonic()
            if on_killed is not None:
                on_killed(killed_at)
        device.ensure_connected(alive)
        device.publish(seq, time.time())
        seq += 1
        time.sleep(max(0.0, start + seq * interval - time.monotonic()))
    deadline = time.monotonic() + 15
    while device.mids and time.monotonic() < deadline:
        device.ensure_connected(alive)
        time.sleep(0.1)
    device.close()
    return Schedule(seq, start, interval, killed_at)


@dataclass(frozen=True)
class Losses:
    """What came back against what the device had PUBACKs for."""

    unique: int  # distinct readings received
    duplicates: int  # readings received more than once, counted per extra copy
    lost: int  # PUBACKed but never received
    lost_from_s: float | None  # when the first and last lost reading were sent, after the kill
    lost_to_s: float | None


def count_losses(acked: set[int], received: list[int], schedule: Schedule) -> Losses:
    unique = set(received)
    lost = sorted(acked - unique)
    window: tuple[float | None, float | None] = (None, None)
    if lost and schedule.killed_at is not None:
        # A lost reading's send time is its slot on the steady schedule.
        window = (
            schedule.sent_at(lost[0]) - schedule.killed_at,
            schedule.sent_at(lost[-1]) - schedule.killed_at,
        )
    return Losses(len(unique), len(received) - len(unique), len(lost), *window)


def add_trial_arguments(
    parser: argparse.ArgumentParser, *, seconds: float, trials: int, victims: tuple[str, ...]
) -> None:
    """The arguments both engines' failover benchmarks take."""
    parser.add_argument("--rate", type=float, default=500.0, help="messages per second")
    parser.add_argument("--seconds", type=float, default=seconds)
    parser.add_argument("--kill-at", type=float, default=4.0)
    parser.add_argument("--trials", type=int, default=trials)
    parser.add_argument("--victims", default=",".join(victims))
    parser.add_argument("--json", type=Path)


async def probe_stream(url: str, since: float, stop: asyncio.Event) -> float | None:
    """Seconds from `since` to the first JetStream-acknowledged publish through `url`."""
    nc = await nats.connect(url)
    js = nc.jetstream(timeout=0.25)
    try:
        while not stop.is_set():
            try:
                await js.publish("fwp.11.bench.probe", b"")
                return time.monotonic() - since
            except (TimeoutError, nats.errors.Error):
                await asyncio.sleep(0.05)
        return None
    finally:
        await nc.close()


async def read_back(urls: list[str]) -> list[dict[str, float]]:
    nc = await nats.connect(servers=urls)
    js = nc.jetstream(timeout=1.0)
    config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE)
    deadline = time.monotonic() + 60
    while True:  # no answer while the meta group elects a leader (decision 0015, finding 3)
        try:
            sub = await js.pull_subscribe("fwp.*.fw.v1.>", durable=None, stream=STREAM, config=config)
            break
        except (TimeoutError, nats.errors.Error):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
    out: list[dict[str, float]] = []
    try:
        while True:
            try:
                msgs = await sub.fetch(1000, timeout=2.0)
            except TimeoutError:
                break
            out.extend(json.loads(m.data) for m in msgs)
    finally:
        await nc.close()
    return out


def leaders(cluster: NatsCluster) -> tuple[int, int]:
    with urllib.request.urlopen(f"{cluster.monitor_urls[0]}/jsz?streams=true", timeout=2) as r:
        meta = json.load(r)["meta_cluster"]["leader"]
    names = [node_name(i) for i in range(cluster.nodes)]
    return cluster.stream_leader(), names.index(meta)


def run_trial(victim_role: str, args: argparse.Namespace) -> Trial:
    trial = Trial(victim_role)
    with tempfile.TemporaryDirectory(prefix="fw-failover-") as tmp, NatsCluster(Path(tmp)) as cluster:
        asyncio.run(prepare_stream(cluster.client_urls, cluster.partitions, 3, 3600.0))
        stream_leader, meta_leader = leaders(cluster)
        others = [i for i in range(3) if i not in (stream_leader, meta_leader)]
        if victim_role == "stream-leader":
            victim = stream_leader
        elif victim_role == "meta-leader":
            victim = meta_leader
            if meta_leader == stream_leader:
                trial.note = "the meta leader also led FW"
        else:
            victim = others[0] if others else (stream_leader + 1) % 3
            if not others:
                trial.note = "no node led neither; killed a non-stream-leader"
        trial.killed = node_name(victim)
        device_node = victim if victim_role == "device-node" else (victim + 1) % 3
        probe_node = (
            next(i for i in range(3) if i not in (victim, device_node))
            if device_node != victim
            else ((victim + 1) % 3)
        )
        device = Device(cluster.mqtt_ports, device_node)
        alive = [True] * 3
        probe_result: list[float | None] = []
        probe_thread: threading.Thread | None = None
        stop_probe = asyncio.Event()

        def kill() -> None:
            cluster.kill(victim)
            alive[victim] = False

        def probe_from(killed_at: float) -> None:
            nonlocal probe_thread
            url = cluster.client_urls[probe_node]
            probe_thread = threading.Thread(
                target=lambda: probe_result.append(asyncio.run(probe_stream(url, killed_at, stop_probe))),
                daemon=True,
            )
            probe_thread.start()

        schedule = publish_through_a_kill(device, alive, args, kill, probe_from)
        if probe_thread is not None:
            probe_thread.join(timeout=20)
        trial.published = schedule.published
        trial.acknowledged = len(device.acked)
        trial.reconnected = device.reconnects
        trial.stream_unavailable_s = probe_result[0] if probe_result else None
        stored = asyncio.run(read_back([u for i, u in enumerate(cluster.client_urls) if alive[i]]))
        losses = count_losses(device.acked, [int(m["seq"]) for m in stored], schedule)
        trial.stored_unique, trial.duplicates, trial.lost = losses.unique, losses.duplicates, losses.lost
        trial.lost_from_s, trial.lost_to_s = losses.lost_from_s, losses.lost_to_s
    return trial


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_trial_arguments(parser, seconds=14.0, trials=2, victims=VICTIMS)
    args = parser.parse_args()
    trials: list[Trial] = []
    victims = [v for v in args.victims.split(",") if v]
    with console.status("") as status:
        for n in range(args.trials):
            for victim in victims:
                status.update(f"trial {n + 1}/{args.trials}: kill -9 of the {victim}")
                trials.append(run_trial(victim, args))
    table = Table(
        title=f"kill -9 of one of 3 nodes, {args.rate:.0f} msg/s QoS 1 "
        f"({platform.node()}, {time.strftime('%Y-%m-%d')})"
    )
    for column in (
        "victim",
        "killed",
        "published",
        "PUBACKed",
        "stored",
        "lost",
        "dup",
        "lost window (s after kill)",
        "stream unavailable (s)",
        "reconnects",
        "note",
    ):
        table.add_column(column)
    for t in trials:
        window = "" if t.lost_from_s is None else f"{t.lost_from_s:.2f} .. {t.lost_to_s:.2f}"
        unavailable = "-" if t.stream_unavailable_s is None else f"{t.stream_unavailable_s:.2f}"
        table.add_row(
            t.victim,
            t.killed,
            str(t.published),
            str(t.acknowledged),
            str(t.stored_unique),
            str(t.lost),
            str(t.duplicates),
            window,
            unavailable,
            str(t.reconnected),
            t.note,
        )
    console.print(table)
    if args.json:
        rows = [{k: v for k, v in t.__dict__.items() if k != "acked"} for t in trials]
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
