"""What a kill -9 of one node costs the devices' messages on a RabbitMQ 3.10 cluster: 3 nodes, the
MQTT plugin, QoS 1 subscriptions in quorum queues — bench.engine_failover's trial for the other
engine of decision 0015.

    python -m bench.engine_failover_rabbit [--rate 500] [--seconds 12] [--kill-at 4] [--trials 1]
                                           [--victims queue-leader,follower,device-node,majority]

Per trial: a private 3-node cluster (bench/rabbit.py, `mqtt.durable_queue_type = quorum`); a
reader (client id `bench-reader`, persistent session) subscribes to `fw/v1/#` at QoS 1 on node 1
— its queue, a quorum queue with a member on every node, then has its leader there — and
disconnects, so the queue keeps what arrives. One paho MQTT client (bench.engine_failover.Device:
QoS 1, persistent session, up to 100 in flight) publishes numbered readings of 20 devices at
--rate for --seconds to one node; at --kill-at the victim's Erlang VM is SIGKILLed:
- queue-leader: the node holding the queue's leader (the device on another node);
- follower: a node holding a follower member, not the device's (the device on the third node);
- device-node: the node the device is connected to, not the leader; the client then reconnects
  to the next node and paho sends again what was not acknowledged;
- majority: two nodes at once, the leader's and a follower's (the device on the third): the queue
  has no majority left, so nothing can be stored; what matters is whether the device still gets
  PUBACKs (NATS 2.9's listener gives them: decision 0015, finding 2). Nothing is read back.
Afterwards the reader connects to a surviving node and drains its queue; what it receives is
compared with what the device had PUBACKs for: lost = acknowledged but never delivered;
duplicates = delivered more than once. "PUBACKs resumed" is the time from the kill to the first
PUBACK of a reading sent after the kill (the plugin PUBACKs a QoS 1 message once its queues have
confirmed it, so for a quorum queue: once a majority of its members have it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from rich.console import Console
from rich.table import Table

from bench.engine_failover import Device, add_trial_arguments, count_losses, publish_through_a_kill
from bench.rabbit import RabbitCluster

console = Console()
VICTIMS = ("queue-leader", "follower", "device-node", "majority")
READER = "bench-reader"


@dataclass
class Trial:
    victim: str
    killed: str = ""
    published: int = 0
    acknowledged: int = 0
    delivered_unique: int = 0
    lost: int = 0
    duplicates: int = 0
    lost_from_s: float | None = None  # relative to the kill
    lost_to_s: float | None = None
    pubacks_resumed_s: float | None = None
    acked_after_kill: int = 0  # PUBACKs of readings sent after the kill
    reconnected: int = 0
    leader_after: str = ""
    note: str = ""


def subscribe_reader(port: int) -> None:
    """Create the reader's persistent session and its quorum queue, then leave."""
    done = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=READER, clean_session=False)
    client.on_subscribe = lambda *a: done.set()
    client.connect("127.0.0.1", port)
    client.subscribe("fw/v1/#", qos=1)
    client.loop_start()
    if not done.wait(30):
        raise RuntimeError("the reader could not subscribe")
    client.loop_stop()
    client.disconnect()


def drain(port: int, idle_s: float = 3.0, limit_s: float = 90.0) -> list[int]:
    """The sequence numbers of everything in the reader's queue, through `port`."""
    seqs: list[int] = []
    last = [time.monotonic()]
    lock = threading.Lock()
    connected = threading.Event()

    def on_message(c: mqtt.Client, u: object, m: mqtt.MQTTMessage) -> None:
        with lock:
            seqs.append(int(json.loads(m.payload)["seq"]))
            last[0] = time.monotonic()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=READER, clean_session=False)
    client.on_message = on_message
    client.on_connect = lambda c, u, f, rc, p: connected.set() if not rc.is_failure else None
    start = time.monotonic()
    while True:  # the plugin refuses connections while its client-id tracker elects a leader
        try:
            client.connect("127.0.0.1", port)
            client.loop_start()
            if connected.wait(10):
                break
            client.loop_stop()
        except OSError:
            pass
        if time.monotonic() - start > limit_s:
            raise RuntimeError("the reader could not reconnect")
        time.sleep(1.0)
    last[0] = time.monotonic()
    while time.monotonic() - last[0] < idle_s and time.monotonic() - start < limit_s:
        time.sleep(0.2)
    client.loop_stop()
    client.disconnect()
    with lock:
        return list(seqs)


def queue_leader(cluster: RabbitCluster, via: int) -> str:
    queue = next(q for q in cluster.queues(via) if q["name"] == f"mqtt-subscription-{READER}qos1")
    members = queue["members"]
    if queue["type"] != "quorum" or not isinstance(members, list) or len(members) != 3:
        raise RuntimeError(f"the reader's queue is not a quorum queue on 3 nodes: {queue}")
    return str(queue["leader"])


def run_trial(victim_role: str, args: argparse.Namespace) -> Trial:
    trial = Trial(victim_role)
    with tempfile.TemporaryDirectory(prefix="fw-rfailover-") as tmp:
        os.chmod(tmp, 0o755)
        with RabbitCluster(Path(tmp), nodes=3, durable_queue_type="quorum") as cluster:
            names = [n.name for n in cluster.nodes]
            subscribe_reader(cluster.mqtt_ports[0])
            leader = names.index(queue_leader(cluster, 0))
            others = [i for i in range(3) if i != leader]
            if victim_role == "queue-leader":
                victim, device_node = leader, others[0]
            elif victim_role == "follower":
                victim, device_node = others[0], others[1]
            elif victim_role == "device-node":
                victim = device_node = others[0]
            else:
                victim, device_node = leader, others[1]
            victims = [victim, others[0]] if victim_role == "majority" else [victim]
            trial.killed = ", ".join(names[v] for v in victims)
            device = Device(cluster.mqtt_ports, device_node)
            alive = [True] * 3

            def kill() -> None:
                for v in victims:
                    cluster.nodes[v].kill()
                    alive[v] = False

            schedule = publish_through_a_kill(device, alive, args, kill)
            trial.published = schedule.published
            trial.acknowledged = len(device.acked)
            trial.reconnected = device.reconnects
            if (killed_at := schedule.killed_at) is not None:
                after = [t for s, t in device.acked_at.items() if schedule.sent_at(s) >= killed_at]
                trial.acked_after_kill = len(after)
                trial.pubacks_resumed_s = min(after) - killed_at if after else None
            if victim_role == "majority":
                return trial
            survivor = next(i for i in range(3) if alive[i])
            trial.leader_after = queue_leader(cluster, survivor)
            losses = count_losses(device.acked, drain(cluster.mqtt_ports[survivor]), schedule)
            trial.delivered_unique, trial.duplicates, trial.lost = (
                losses.unique,
                losses.duplicates,
                losses.lost,
            )
            trial.lost_from_s, trial.lost_to_s = losses.lost_from_s, losses.lost_to_s
            if victim_role == "queue-leader" and trial.leader_after == trial.killed:
                trial.note = "no new leader seen"
    return trial


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_trial_arguments(parser, seconds=12.0, trials=1, victims=VICTIMS)
    args = parser.parse_args()
    trials: list[Trial] = []
    victims = [v for v in args.victims.split(",") if v]
    if unknown := set(victims) - set(VICTIMS):
        parser.error(f"unknown victims: {sorted(unknown)}")
    with console.status("") as status:
        for n in range(args.trials):
            for victim in victims:
                status.update(f"trial {n + 1}/{args.trials}: kill -9 of the {victim}")
                trials.append(run_trial(victim, args))
                console.print(trials[-1])
    table = Table(
        title=f"RabbitMQ 3.10, kill -9 of one of 3 nodes, {args.rate:.0f} msg/s QoS 1 "
        f"({platform.node()}, {time.strftime('%Y-%m-%d')})"
    )
    for column in (
        "victim",
        "killed",
        "published",
        "PUBACKed",
        "delivered",
        "lost",
        "dup",
        "lost window (s after kill)",
        "PUBACKs resumed (s)",
        "PUBACKed after kill",
        "reconnects",
        "leader after",
        "note",
    ):
        table.add_column(column)
    for t in trials:
        window = "" if t.lost_from_s is None else f"{t.lost_from_s:.2f} .. {t.lost_to_s:.2f}"
        resumed = "-" if t.pubacks_resumed_s is None else f"{t.pubacks_resumed_s:.2f}"
        table.add_row(
            t.victim,
            t.killed,
            str(t.published),
            str(t.acknowledged),
            str(t.delivered_unique),
            str(t.lost),
            str(t.duplicates),
            window,
            resumed,
            str(t.acked_after_kill),
            str(t.reconnected),
            t.leader_after,
            t.note,
        )
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps([t.__dict__ for t in trials], indent=2))


if __name__ == "__main__":
    main()
