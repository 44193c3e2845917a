"""How many QoS 1 messages/s does `firewatch simulate load` push into a local mosquitto?

    python3 -m bench.sim_load                       # 100,000 devices, 20 s per run, 3 rounds
    python3 -m bench.sim_load --duration 10 --repeat 1 --no-paho

Each round runs, each against a fresh private mosquitto (`firewatch.broker.Mosquitto`, never the
system broker), one after the other:
- load mode as fast as possible (`--rate 0`),
- load mode at a fixed target (`--rate 40000`),
- the same processes, devices and window with paho-mqtt 2.2 as the publisher instead
  (`max_inflight_messages_set` plus a wait when the window is full), twice: with paho's network loop
  in the publishing thread, and in its own thread (`loop_start`). paho publishes the same topics and
  payloads, which it is given ready-made: only paho's own cost is measured. This is the comparison
  recorded in docs/decisions/0005-load-generator.md.

Achieved msg/s = messages acknowledged by the broker / time from the common start to the last
PUBACK. Also reported, per message and as medians: the broker's CPU time (from /proc), which bounds
what any publisher can reach on a machine whose cores the broker shares, and the publishers' own
CPU time (process time of every publisher process over the run, threads included).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import statistics
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, replace
from multiprocessing.synchronize import Event
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from rich.console import Console
from rich.table import Table

from device_profiles.loader import load_profiles
from firewatch.broker import Mosquitto
from simulators.load import LoadConfig, PacketBuilder, run_load, shard

console = Console(width=150)  # wide enough for the tables when the output goes to a file
PAHO_PREBUILT = 20_000  # ready-made messages per paho process, published round and round


@dataclass
class Run:
    variant: str
    round: int
    sent: int
    acked: int
    duration_s: float
    max_inflight_seen: int
    broker_cpu_s: float
    publisher_cpu_s: float  # all publisher processes, from the start to the last acknowledgement

    @property
    def rate(self) -> float:
        return self.acked / self.duration_s if self.duration_s else 0.0

    @property
    def broker_us_per_msg(self) -> float:
        return 1e6 * self.broker_cpu_s / self.acked if self.acked else 0.0

    @property
    def publisher_us_per_msg(self) -> float:
        return 1e6 * self.publisher_cpu_s / self.acked if self.acked else 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def broker_pid(broker: Mosquitto) -> int:
    assert broker._proc is not None  # the private broker's process, to read its CPU time
    return broker._proc.pid


def run_ours(config: LoadConfig, variant: str, round_no: int) -> Run:
    with Mosquitto() as broker:
        pid = broker_pid(broker)
        cpu0 = cpu_seconds(pid)
        report = run_load(replace(config, host=broker.host, port=broker.port))
        cpu = cpu_seconds(pid) - cpu0
    if not report.complete:
        console.print(f"[red]{variant}: incomplete: {report.errors or 'unacknowledged messages'}[/]")
    publisher_cpu = sum(p.cpu_s for p in report.processes)
    return Run(
        variant,
        round_no,
        report.sent,
        report.acked,
        report.duration_s,
        report.max_inflight_seen,
        cpu,
        publisher_cpu,
    )


# --- paho-mqtt as the publisher, for the comparison --------------------------------------------------


def _topics_and_payloads(config: LoadConfig, devices: range) -> list[tuple[str, bytes]]:
    """The messages load mode would send for these devices, split out of its QoS 0 packets."""
    builder = PacketBuilder(replace(config, qos=0), load_profiles()[config.profile], devices)
    data = builder.build(PAHO_PREBUILT, None)
    out, i = [], 0
    while i < len(data):
        length, shift, k = 0, 0, i + 1
        while True:
            byte = data[k]
            length |= (byte & 0x7F) << shift
            shift, k = shift + 7, k + 1
            if not byte & 0x80:
                break
        topic_len = int.from_bytes(data[k : k + 2], "big")
        out.append((data[k + 2 : k + 2 + topic_len].decode(), data[k + 2 + topic_len : k + length]))
        i = k + length
    return out


def paho_worker(config: LoadConfig, index: int, threaded: bool, go: Event, results: mp.Queue[Any]) -> None:
    """One paho publisher process: QoS 1, at most `max_inflight` unacknowledged, as fast as it goes.

    threaded: paho's network loop in its own thread (`loop_start`), the usual way to use it. Otherwise
    the publishing thread runs the loop itself (`loop(0)` every 20 publishes and while the window is
    full), which measured about twice as fast here (no contention for the GIL): paho at its best.
    """
    devices = shard(config.devices, config.n_processes)[index]
    messages = _topics_and_payloads(config, devices)
    window = config.max_inflight
    state = {"acked": 0, "last_ack": 0.0}
    more = threading.Condition()

    def on_publish(*_args: object) -> None:
        with more:
            state["acked"] += 1
            state["last_ack"] = time.monotonic()
            more.notify()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-paho-{uuid.uuid4().hex[:8]}")
    client.max_inflight_messages_set(window)
    client.on_publish = on_publish
    client.connect(config.host, config.port)
    if threaded:
        client.loop_start()
    results.put(("ready", index))
    go.wait()
    start, cpu = time.monotonic(), time.process_time()  # process time: all threads, paho's loop too
    deadline = start + config.duration
    sent = peak = 0
    while time.monotonic() < deadline:
        if sent - state["acked"] >= window:
            if threaded:
                with more:
                    more.wait(timeout=0.05)
            else:
                client.loop(0.05)
            continue
        topic, payload = messages[sent % len(messages)]
        client.publish(topic, payload, qos=1)
        sent += 1
        peak = max(peak, sent - int(state["acked"]))
        if not threaded and sent % 20 == 0:
            client.loop(0)
    give_up = time.monotonic() + config.drain_timeout
    while state["acked"] < sent and time.monotonic() < give_up:
        if threaded:
            time.sleep(0.01)
        else:
            client.loop(0.05)
    cpu = time.process_time() - cpu
    if threaded:
        client.loop_stop()
    client.disconnect()
    duration = max(state["last_ack"], start) - start
    results.put(("done", index, sent, int(state["acked"]), duration, peak, cpu))


def run_paho(config: LoadConfig, threaded: bool, round_no: int) -> Run:
    ctx = mp.get_context("spawn")
    with Mosquitto() as broker:
        config = replace(config, host=broker.host, port=broker.port)
        go, results = ctx.Event(), ctx.Queue()
        n = config.n_processes
        procs = [ctx.Process(target=paho_worker, args=(config, i, threaded, go, results)) for i in range(n)]
        for p in procs:
            p.start()
        for _ in procs:
            results.get(timeout=120)
        pid = broker_pid(broker)
        cpu0 = cpu_seconds(pid)
        go.set()
        done = [results.get(timeout=config.duration + config.drain_timeout + 60) for _ in procs]
        cpu = cpu_seconds(pid) - cpu0
        for p in procs:
            p.join(timeout=10)
    variant = "paho-mqtt 2.2, loop_start thread" if threaded else "paho-mqtt 2.2, loop in the publisher"
    sent, acked = sum(d[2] for d in done), sum(d[3] for d in done)
    duration, peak = max(d[4] for d in done), max(d[5] for d in done)
    return Run(variant, round_no, sent, acked, duration, peak, cpu, sum(d[6] for d in done))


# --- the report -------------------------------------------------------------------------------------


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in subprocess.run(
                ["lscpu"], capture_output=True, text=True, check=False
            ).stdout.splitlines()
            if line.startswith("Model name")
        ),
        platform.processor() or "unknown CPU",
    )
    return (
        f"{model}, {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}, "
        f"mosquitto {Mosquitto.version()}, {time.strftime('%Y-%m-%d')}"
    )


def print_runs(runs: list[Run]) -> None:
    table = Table(title="every run")
    columns = ("round", "variant", "sent", "acked", "duration", "msg/s", "max in-flight")
    for name in (*columns, "broker CPU/msg", "publisher CPU/msg"):
        table.add_column(name, justify="left" if name == "variant" else "right")
    for r in runs:
        table.add_row(
            str(r.round),
            r.variant,
            f"{r.sent:,}",
            f"{r.acked:,}",
            f"{r.duration_s:.2f} s",
            f"{r.rate:,.0f}",
            f"{r.max_inflight_seen:,}",
            f"{r.broker_us_per_msg:.1f} µs",
            f"{r.publisher_us_per_msg:.1f} µs",
        )
    console.print(table)


def print_summary(runs: list[Run]) -> None:
    table = Table(title="summary")
    columns = ("variant", "runs", "median msg/s", "range", "broker CPU/msg", "publisher CPU/msg", "all acked")
    for name in columns:
        table.add_column(name, justify="left" if name == "variant" else "right")
    for variant in dict.fromkeys(r.variant for r in runs):
        mine = [r for r in runs if r.variant == variant]
        rates = [r.rate for r in mine]
        table.add_row(
            variant,
            str(len(mine)),
            f"{statistics.median(rates):,.0f}",
            f"{min(rates):,.0f}–{max(rates):,.0f}",
            f"{statistics.median(r.broker_us_per_msg for r in mine):.1f} µs",
            f"{statistics.median(r.publisher_us_per_msg for r in mine):.1f} µs",
            "yes" if all(r.acked == r.sent for r in mine) else "NO",
        )
    console.print(table)
    fast = [r for r in runs if r.variant.startswith("load mode, rate 0")]
    for variant in dict.fromkeys(r.variant for r in runs if r.variant.startswith("paho")):
        paho = [r for r in runs if r.variant == variant]
        ratios = [f.rate / p.rate for f in fast for p in paho if f.round == p.round and p.rate]
        console.print(
            f"load mode (rate 0) / {variant}, same round: "
            + ", ".join(f"{x:.1f}x" for x in ratios)
            + f" (median {statistics.median(ratios):.1f}x)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per run (default 20)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--rate", type=float, default=40_000.0, help="the fixed target (default 40000)")
    parser.add_argument("--processes", type=int, default=0, help="worker processes (default: CPUs)")
    parser.add_argument("--no-paho", action="store_true", help="skip the paho comparison")
    args = parser.parse_args()
    config = LoadConfig(devices=args.devices, duration=args.duration, processes=args.processes)
    config.check()
    console.print(
        f"{config.devices:,} devices, {config.n_processes} processes x 1 connection, QoS 1, max in-flight "
        f"{config.max_inflight:,}, {config.duration:.0f} s per run, {args.repeat} rounds"
    )
    runs: list[Run] = []
    for round_no in range(1, args.repeat + 1):
        this = [
            run_ours(config, "load mode, rate 0", round_no),
            run_ours(replace(config, rate=args.rate), f"load mode, rate {args.rate:,.0f}", round_no),
        ]
        if not args.no_paho:
            this += [run_paho(config, False, round_no), run_paho(config, True, round_no)]
        console.print(f"round {round_no}: " + ", ".join(f"{r.variant} {r.rate:,.0f}/s" for r in this))
        runs += this
    print_runs(runs)
    print_summary(runs)
    console.print(f"machine: {machine()}")


if __name__ == "__main__":
    main()
