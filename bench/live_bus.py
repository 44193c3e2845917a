"""What the live bus (firewatch/cluster/live_bus.py) costs per transition, and how many it carries.

    flock /tmp/bench-heavy.lock python3 -m bench.live_bus --items 100000 --batch 50

A private nats-server on a free loopback port; two workers' buses and hubs in this process, on one
event loop, as two API processes would have them. A thread stands in for worker A's alarm writer:
it publishes `--items` fire transitions of the size the service writes (a full alarm snapshot) in
batches of `--batch`. Worker B's hub has one console that reads everything.

Reported: the writer thread's CPU per transition (what `LiveBus.publish` costs the alarm writer),
the whole process's CPU per transition beyond that (both ends: encoding, NATS client, decoding,
hub), the nats-server's CPU per transition, and the wall time from the first publish to the last
transition on B's console. Bounded: the items given, and 120 s at most.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import subprocess
import threading
import time

import nats

from alarms.model import Transition
from api.live import LiveHub, StreamClosedError
from bench.proc_usage import _stat
from core.domain import AlarmAction
from firewatch.broker import free_port, stop_process, wait_for_port
from firewatch.cluster.live_bus import LiveBus

LIMIT_S = 120.0


def fire(n: int) -> Transition:
    """A raised fire transition with an alarm snapshot of the service's shape (~1 KB of JSON)."""
    after = {
        "id": n,
        "device_id": f"b2-f4-z2-smk-{n % 1000:03d}",
        "alarm_type": "smoke.alarm",
        "category": "fire",
        "severity": "critical",
        "system": "fire_alarm",
        "site": "sxzyy",
        "place": "sxzyy/b2/f4/z2/r0412",
        "state": "active_unacknowledged",
        "occurrences": 1,
        "first_ts": 1_795_431_663.03,
        "last_ts": 1_795_431_663.03,
        "cleared_ts": None,
        "acked_ts": None,
        "acked_by": None,
        "ack_note": "",
        "false_alarm": False,
        "closed_ts": None,
        "value": 0.31,
        "peak": 0.31,
        "channel": "smoke",
        "detail": "smoke 0.310 dB/m >= 0.15",
        "basis": "GB 4715-2024 §5.7",
        "department": "心内科",
        "false_alarms": 0,
        "raised_ts": 1_795_431_663.03,
        "escalation": "none",
        "escalation_step": 0,
        "flapping": False,
        "maintenance_id": None,
        "shelved_until": None,
        "shelved_by": None,
        "shelve_note": "",
        "normal_ts": None,
        "drill_id": None,
    }
    return Transition(n, n, AlarmAction.RAISED, None, after, "firewatch", 1_795_431_663.03, targets=("duty",))


def machine() -> str:
    with open("/proc/cpuinfo") as f:
        models = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    return f"{models[0] if models else platform.machine()}, {os.cpu_count()} cores"


async def run(items: int, batch: int) -> None:
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    port = free_port()
    cmd = [binary, "-a", "127.0.0.1", "-p", str(port)]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: ASYNC220
    try:
        wait_for_port("127.0.0.1", port)
        url = f"nats://127.0.0.1:{port}"
        nc_a, nc_b = await nats.connect(url), await nats.connect(url)
        hub_a, hub_b = LiveHub(), LiveHub(queue_max=items + 1)
        bus_a, bus_b = LiveBus(nc_a, "worker-a", hub_a), LiveBus(nc_b, "worker-b", hub_b)
        await bus_a.start()
        await bus_b.start()
        await nc_b.flush()
        console = hub_b.subscribe()
        batches = [[fire(n) for n in range(i, min(i + batch, items))] for i in range(0, items, batch)]
        writer_cpu = 0.0

        def writer() -> None:
            nonlocal writer_cpu
            t0 = time.thread_time()
            for b in batches:
                bus_a.publish(b)
            writer_cpu = time.thread_time() - t0

        server_cpu0 = _stat(server.pid)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        thread = threading.Thread(target=writer)
        thread.start()
        got = 0
        async with asyncio.timeout(LIMIT_S):
            while got < items:
                try:
                    if await console.get(5.0) is not None:
                        got += 1
                except StreamClosedError as closed:  # lost on the way: a console would resume
                    print(f"B's console was closed after {got}: {closed.detail}")
                    break
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0
        server_cpu1 = _stat(server.pid)
        thread.join()
        await bus_a.stop()
        await bus_b.stop()
        await nc_a.close()
        await nc_b.close()
    finally:
        stop_process(server)
    server_cpu = (server_cpu1[1] - server_cpu0[1]) if server_cpu0 and server_cpu1 else float("nan")
    print(f"{machine()}, CPython {platform.python_version()}, {time.strftime('%F %R UTC', time.gmtime())}")
    print(f"{items} transitions in batches of {batch}: received {got}, unsent {bus_a.unsent}")
    print(f"gaps B saw: {bus_b.gaps} (each ends B's streams with `resync`)")
    print(f"wall, first publish to last on B's console: {wall:.2f} s ({items / wall:,.0f} transitions/s)")
    print(f"alarm writer thread: {writer_cpu / items * 1e6:.1f} µs CPU per transition")
    print(f"rest of this process (both ends): {(cpu - writer_cpu) / items * 1e6:.1f} µs CPU per transition")
    print(f"nats-server: {server_cpu / items * 1e6:.1f} µs CPU per transition")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--batch", type=int, default=50)
    args = p.parse_args()
    asyncio.run(run(args.items, args.batch))


if __name__ == "__main__":
    main()
