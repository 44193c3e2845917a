"""What asking a GB/T 26875.3 device through another worker costs (firewatch/cluster/gb_relay.py).

    flock /tmp/bench-heavy.lock python3 -m bench.gb_relay --devices 20000 --asks 200

A private nats-server on a free loopback port; two workers' listeners and relays in this process.

1. Holding: a worker holds one NATS subscription per transmission device connected to it. A relay
   is made to hold `--devices` subjects at once (its listener reports that many devices heard; no
   TCP connections are made, so their own cost is not in the figure): the time until all are
   subscribed, and the process's resident memory grown meanwhile.
2. Asking: a simulated device connected to worker A, asked `--asks` times for its state (type 81)
   through A's relay (its own connection) and as many times through B's (over NATS to A and back):
   the median and the slowest of each, in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import subprocess
import time
from functools import partial

import nats
from nats.aio.client import Client

from core.registry import BuildingSpec, Device, FloorSpec, Registry, SiteSpec, ZoneSpec
from core.settings import Gb26875Settings
from device_profiles.loader import load_profiles
from firewatch.broker import free_port, stop_process, wait_for_port
from firewatch.cluster.gb_relay import DeviceRelay
from ingest.gb26875.codes import Command
from ingest.gb26875.listener import Gb26875Listener
from ingest.index import DeviceIndex
from ingest.queue import BoundedQueue
from simulators.gb26875_device import TransmissionDevice

READ_STATE = bytes([81, 1, 0])
PAGE = os.sysconf("SC_PAGE_SIZE")


class Heard(Gb26875Listener):
    """A listener that reports `count` devices heard, without their connections."""

    count = 0

    def held(self) -> set[int]:
        return set(range(1, self.count + 1))


def resident_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 1e6


def machine() -> str:
    with open("/proc/cpuinfo") as f:
        models = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    return f"{models[0] if models else platform.machine()}, {os.cpu_count()} cores"


def listener(kind: type[Gb26875Listener], index: DeviceIndex) -> Gb26875Listener:
    settings = Gb26875Settings(enabled=True, port=0)
    return kind(settings, queue=BoundedQueue(10_000), index=lambda: index, prefix="fw/v1")


def fixed(nc: Client) -> Client:
    return nc


async def holding(url: str, devices: int, index: DeviceIndex) -> None:
    nc = await nats.connect(url)
    heard = listener(Heard, index)
    assert isinstance(heard, Heard)
    heard.count = devices
    relay = DeviceRelay(heard, partial(fixed, nc))
    before, began = resident_mb(), time.perf_counter()
    await relay.start()
    while len(relay.subscribed()) < devices:  # noqa: ASYNC110 - the relay offers a set, not an event
        await asyncio.sleep(0.01)
    await nc.flush()
    took, grown = time.perf_counter() - began, resident_mb() - before
    print(
        f"holding {devices:,} devices' subjects: {took:.2f} s to subscribe, {grown:.0f} MB resident "
        f"({grown * 1e6 / devices / 1e3:.1f} kB per device)"
    )
    await relay.stop()
    await nc.close()


async def asking(url: str, asks: int, index: DeviceIndex) -> None:
    ncs = [await nats.connect(url), await nats.connect(url)]
    listeners = [listener(Gb26875Listener, index) for _ in ncs]
    relays = [DeviceRelay(li, partial(fixed, nc)) for li, nc in zip(listeners, ncs, strict=True)]
    for li, relay in zip(listeners, relays, strict=True):
        await li.start()
        await relay.start()
    device = TransmissionDevice(address=881, host="127.0.0.1", port=listeners[0].port)
    try:
        await device.connect()
        await device.heartbeat()
        while 881 not in relays[0].subscribed():  # noqa: ASYNC110 - the relay offers a set, not an event
            await asyncio.sleep(0.01)
        await ncs[0].flush()
        for name, relay in (("its own worker", relays[0]), ("another worker", relays[1])):
            times = []
            for _ in range(asks):
                t0 = time.perf_counter()
                answer = await relay.ask(881, Command.REQUEST, READ_STATE)
                times.append((time.perf_counter() - t0) * 1e3)
                assert answer.command == Command.RESPONSE
            print(
                f"asked through {name}: median {statistics.median(times):.2f} ms, "
                f"slowest {max(times):.2f} ms ({asks} asks)"
            )
    finally:
        await device.close()
        for li, relay in zip(listeners, relays, strict=True):
            await relay.stop()
            await li.stop()
        for nc in ncs:
            await nc.close()


async def run(devices: int, asks: int) -> None:
    zone = ZoneSpec(id="z1", name="1区", rooms=[])
    building = BuildingSpec(id="b1", name="住院楼", floors=[FloorSpec(id="f1", name="1F", zones=[zone])])
    registry = Registry(
        [SiteSpec(id="s1", name="医院", buildings=[building])],
        [Device(id="ud-1", profile="gb-transmission-device", place="s1/b1/f1/z1", tags=["gb26875=881"])],
    )
    index = DeviceIndex.build(registry, load_profiles())
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    port = free_port()
    cmd = [binary, "-a", "127.0.0.1", "-p", str(port)]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: ASYNC220
    try:
        wait_for_port("127.0.0.1", port)
        url = f"nats://127.0.0.1:{port}"
        print(
            f"{machine()}, CPython {platform.python_version()}, {time.strftime('%F %R UTC', time.gmtime())}"
        )
        await asking(url, asks, index)
        await holding(url, devices, index)
    finally:
        stop_process(server)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, default=20_000)
    p.add_argument("--asks", type=int, default=200)
    args = p.parse_args()
    asyncio.run(run(args.devices, args.asks))


if __name__ == "__main__":
    main()
