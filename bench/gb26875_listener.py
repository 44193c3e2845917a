"""The GB/T 26875.3 listener: many device connections on one service process, and fire frame to
alarm latency while they stay open.

    python3 -m bench.gb26875_listener --devices 10000 --fires 300

1. The service alone in a process of its own (`firewatch.service.Service` with the API on uvicorn
   and the GB/T 26875.3 listener, 127.0.0.1, free ports), a private mosquitto, default settings. Its
   registry: `--devices` transmission devices (`gb26875=<address>`, the shipped profile's 30 s
   heartbeat); the first of them also have a fire alarm panel with ten smoke detectors each, one
   detector to a zone (no zone fusion between them), `--fires` detectors in all.
2. Connections: this process opens one TCP connection per device (simulators/gb26875_load.py,
   200 being opened at a time), each sending a heartbeat on connecting and then every `--heartbeat`
   seconds, spread evenly. The service process's resident set (VmRSS) is read once it is ready and
   idle, and again once every device is connected and has been confirmed a full round of
   heartbeats after that: the difference per connection is what one connection costs. Every
   heartbeat sent must be confirmed.
3. Fire latency, with every connection still open and heartbeating: one distinct detector's state
   upload with the fire bit (type 2) every `--every` seconds, `time.time()` taken just before the
   frame is written; the time to the centre's confirm (sent once the alarm is stored), and to the
   `raised` fire transition of that detector on a WebSocket client of `/api/v1/stream/alarms/ws`
   and on a paho subscriber of `fw/v1/{site}/alarms`. One host, one clock. Bar: p99 < 100 ms.

The file descriptor limit is raised to its hard limit (`resource.setrlimit`); the service process
inherits it. Results: docs/benchmarks.md, "GB/T 26875.3 listener".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing as mp
import os
import platform
import resource
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from websockets.asyncio.client import connect

from bench.alarm_latency import cpu_model, free_port, ready, until
from core.registry import BuildingSpec, Device, FloorSpec, Registry, SiteSpec, ZoneSpec
from firewatch.broker import Mosquitto
from simulators.gb26875_load import LoadPlan, LoadRun
from simulators.gb26875_panel import (
    GbState,
    Installation,
    Settled,
    installations_from_registry,
    point_address,
    time_tag,
)

console = Console()
SITE = "bench"
FIRST_ADDRESS = 1_000_000
POINTS_PER_PANEL = 10
ALARM_TYPE = "device.alarm"
TARGET_P99_MS = 100.0


# --- the registry ------------------------------------------------------------------------------------


def registry(devices: int, fires: int) -> Registry:
    zones = max(1, fires)
    floors = [
        FloorSpec(id=f"f{f}", name=f"{f}F", zones=[ZoneSpec(id=f"z{z}", name=f"{z}区") for z in range(50)])
        for f in range(-(-zones // 50))
    ]
    site = SiteSpec(id=SITE, name=SITE, buildings=[BuildingSpec(id="b1", name="b1", floors=floors)])

    def zone(n: int) -> str:
        return f"{SITE}/b1/f{n // 50}/z{n % 50}"

    devs: list[Device] = []
    for i in range(devices):
        devs.append(
            Device(id=f"ud{i:05d}", profile="gb-transmission-device", place=zone(i % zones),
                   tags=[f"gb26875={FIRST_ADDRESS + i}"])
        )  # fmt: skip
    for n in range(fires):
        i, k = divmod(n, POINTS_PER_PANEL)
        if k == 0:
            devs.append(
                Device(id=f"fas{i:05d}", profile="gb-fire-alarm-panel", place=zone(n), gateway=f"ud{i:05d}",
                       tags=["gb26875=1/1"])
            )  # fmt: skip
        devs.append(
            Device(id=point_id(n), profile="gb-smoke-detector", place=zone(n), gateway=f"ud{i:05d}",
                   tags=[f"gb26875=1/1/42/{point_address(1, k + 1)}"])
        )  # fmt: skip
    assert -(-fires // POINTS_PER_PANEL) <= devices, "more panels than transmission devices"
    return Registry([site], devs)


def point_id(n: int) -> str:
    return f"smk{n:05d}"


# --- the service process -------------------------------------------------------------------------------


def serve(
    broker_url: str, data: str, devices: int, fires: int, http_port: int, gb_port: int, stop: MpEvent,
    log: str, token_out: Any,
) -> None:  # fmt: skip
    logging.basicConfig(
        filename=log, level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(_serve(broker_url, Path(data), devices, fires, http_port, gb_port, stop, token_out))


async def _serve(
    broker_url: str, data: Path, devices: int, fires: int, http_port: int, gb_port: int, stop: MpEvent,
    token_out: Any,
) -> None:  # fmt: skip
    import uvicorn

    from api.app import create_app
    from core.domain import Role
    from core.settings import Settings
    from device_profiles.loader import load_profiles
    from firewatch.service import Service, freeze_start_up_heap

    base = Settings()
    settings = base.model_copy(
        update={
            "data_dir": data,
            "mqtt": base.mqtt.model_copy(
                update={"url": broker_url, "client_id": f"bench-gb-{uuid.uuid4().hex[:6]}"}
            ),
            "gb26875": base.gb26875.model_copy(update={"enabled": True, "port": gb_port}),
        }
    )
    service = Service(settings, registry=registry(devices, fires), profiles=load_profiles())
    key, _ = service.accounts.create_api_key("bench-gb26875", [Role.VIEWER], by="bench")
    freeze_start_up_heap()  # as `firewatch serve` does
    token_out.put(key.token)
    config = uvicorn.Config(
        create_app(service.app_context()), host="127.0.0.1", port=http_port, lifespan="on",
        log_level="warning", timeout_graceful_shutdown=5,
    )  # fmt: skip
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    await asyncio.to_thread(stop.wait)
    service.live.close()
    server.should_exit = True
    await serving


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def raise_fd_limit(needed: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < needed:
        raise SystemExit(f"{needed} file descriptors needed, the hard limit is {hard}: raise it (ulimit -Hn)")
    return hard


# --- measuring ---------------------------------------------------------------------------------------------


@dataclass
class Arrivals:
    """When the `raised` fire transition of each measured detector arrived on one push path."""

    first: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def saw(self, message: dict[str, Any], at: float) -> None:
        after = message.get("after") or {}
        if message.get("action") == "raised" and after.get("alarm_type") == ALARM_TYPE:
            with self.lock:
                self.first.setdefault(str(after.get("device_id")), at)

    def latencies_ms(self, sent: dict[str, float]) -> list[float]:
        with self.lock:
            return [(self.first[d] - t) * 1000 for d, t in sent.items() if d in self.first]


def stats(ms: list[float]) -> dict[str, float]:
    if not ms:
        return {"n": 0}
    a = np.asarray(ms)
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {"n": len(a), "p50": float(p50), "p95": float(p95), "p99": float(p99), "max": float(a.max())}


async def heartbeating(run: LoadRun) -> None:
    last = time.monotonic()
    while True:
        await asyncio.sleep(0.05)
        now = time.monotonic()
        run.tick(now - last)
        last = now


def totals(run: LoadRun) -> dict[str, int]:
    s = [link.stats for link in run.links]
    return {
        "heartbeats": sum(x.heartbeats for x in s),
        "confirmed": sum(x.confirmed for x in s),
        "denied": sum(x.denied for x in s),
        "resent": sum(x.resent for x in s),
        "gave_up": sum(x.gave_up for x in s),
        "unanswered": sum(len(link.outbox.pending) for link in run.links),
        "uploads": sum(x.uploads for x in s),
    }


async def settle(run: LoadRun, limit_s: float) -> None:
    """Until every upload in flight is confirmed or given up, at most `limit_s`."""
    await asyncio.gather(*(link.settle(limit_s) for link in run.links))


async def main(args: argparse.Namespace) -> dict[str, Any]:
    logging.basicConfig(level=logging.ERROR)
    limit = raise_fd_limit(args.devices + 1_000)
    from device_profiles.loader import load_profiles

    reg = registry(args.devices, args.fires)
    installs: list[Installation] = installations_from_registry(reg, load_profiles())
    by_point: dict[str, Installation] = {}
    for inst in installs:
        for _, point in inst.points():
            assert point.device_id is not None
            by_point[point.device_id] = inst
    ctx = mp.get_context("spawn")
    result: dict[str, Any] = {"devices": args.devices, "fires": args.fires, "every_s": args.every}
    with (
        tempfile.TemporaryDirectory() as tmp,
        Mosquitto(data_dir=Path(tmp) / "mq") as broker,
        Progress(console=console, transient=True) as progress,
    ):
        http_port, gb_port = free_port(), free_port()
        http = f"http://127.0.0.1:{http_port}"
        stop, token_out = ctx.Event(), ctx.Queue()
        service = ctx.Process(
            target=serve,
            args=(broker.url, str(Path(tmp) / "fw"), args.devices, args.fires, http_port, gb_port, stop,
                  str(Path(tmp) / "service.log"), token_out),
            name="firewatch",
        )  # fmt: skip
        service.start()
        plan = LoadPlan(devices=args.devices, port=gb_port, rate=0.0, heartbeat_s=args.heartbeat)
        run = LoadRun(plan, installs)
        beats: asyncio.Task[None] | None = None
        sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{uuid.uuid4().hex[:6]}")
        try:
            await until(lambda: ready(http), 120, "the service did not become ready")
            token: str = await asyncio.to_thread(token_out.get, True, 30)
            assert service.pid is not None
            await asyncio.sleep(2.0)
            rss_idle = rss_mib(service.pid)
            # Subscribed before the device connections are opened: paho waits on its socket with
            # select(), which takes no descriptor numbered over 1023.
            ws_path, mqtt_path = Arrivals(), Arrivals()
            sub.on_message = lambda _c, _u, msg: mqtt_path.saw(orjson.loads(msg.payload), time.time())
            subscribed = threading.Event()
            sub.on_subscribe = lambda *_a: subscribed.set()
            sub.connect(broker.host, broker.port)
            sub.loop_start()
            sub.subscribe(f"fw/v1/{SITE}/alarms", qos=1)
            await until(subscribed.is_set, 10, "the alarm topic subscription was not acknowledged")

            # --- connections ---
            task = progress.add_task(f"connecting {args.devices:,} devices", total=args.devices)
            began = time.monotonic()
            await run.open(lambda r: progress.update(task, completed=len(r.links) + r.connect_failures))
            connect_s = time.monotonic() - began
            progress.update(task, completed=args.devices)
            beats = asyncio.create_task(heartbeating(run))
            round_task = progress.add_task("a full round of heartbeats", total=args.heartbeat)
            t0 = time.monotonic()
            while (held := time.monotonic() - t0) < args.heartbeat + 1.0:
                progress.update(round_task, completed=min(held, args.heartbeat))
                await asyncio.sleep(0.25)
            # Every heartbeat sent so far answered: stop sending for the count, then go on.
            beats.cancel()
            await settle(run, 15.0)
            rss_connected = rss_mib(service.pid)
            conn = totals(run)
            beats = asyncio.create_task(heartbeating(run))
            result["connections"] = {
                "connected": len(run.links),
                "connect_failures": run.connect_failures,
                "connect_s": connect_s,
                "rss_idle_mib": rss_idle,
                "rss_connected_mib": rss_connected,
                "kib_per_connection": (rss_connected - rss_idle) * 1024 / max(1, len(run.links)),
                "fd_limit": limit,
                **conn,
            }
            console.print(result["connections"])

            # --- fire latency, the connections still open ---
            sent: dict[str, float] = {}
            confirms: dict[str, float] = {}

            def confirmed(device: str) -> Callable[[asyncio.Future[Settled]], None]:
                def done(f: asyncio.Future[Settled]) -> None:
                    if not f.cancelled() and f.result().confirmed:
                        confirms[device] = f.result().latency_s * 1000

                return done

            async with connect(
                f"ws://127.0.0.1:{http_port}/api/v1/stream/alarms/ws?site={SITE}",
                additional_headers={"Authorization": f"Bearer {token}"},
                max_queue=None,
            ) as ws:

                async def receive() -> None:
                    async for raw in ws:
                        ws_path.saw(orjson.loads(raw), time.time())

                receiver = asyncio.create_task(receive())
                fire_task = progress.add_task("fire uploads", total=args.fires)
                start = time.monotonic()
                for n in range(args.fires):
                    await asyncio.sleep(max(0.0, start + n * args.every - time.monotonic()))
                    device = point_id(n)
                    inst = by_point[device]
                    link = run.links_by_address[inst.address]
                    type_id, obj = inst.set_state(device, GbState.FIRE, time_tag(time.time()))
                    sent[device] = time.time()
                    link.upload(type_id, [obj]).add_done_callback(confirmed(device))
                    progress.update(fire_task, completed=n + 1)
                devices = list(sent)
                with contextlib.suppress(RuntimeError):
                    await until(
                        lambda: all(d in ws_path.first and d in mqtt_path.first for d in devices),
                        30,
                        "not every fire alarm arrived",
                    )
                await settle(run, 15.0)
                receiver.cancel()
            result["fire"] = {
                "confirm_ms": stats(list(confirms.values())),
                "websocket_ms": stats(ws_path.latencies_ms(sent)),
                "mqtt_ms": stats(mqtt_path.latencies_ms(sent)),
                "missing_ws": len(set(sent) - set(ws_path.first)),
                "missing_mqtt": len(set(sent) - set(mqtt_path.first)),
            }
            result["rss_after_fires_mib"] = rss_mib(service.pid)
            result["after"] = totals(run)
        finally:
            if beats is not None:
                beats.cancel()
            sub.loop_stop()
            with contextlib.suppress(Exception):
                sub.disconnect()
            await asyncio.gather(*(link.close() for link in run.links))
            stop.set()
            service.join(30)
            if service.is_alive():
                service.kill()
    result["machine"] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
    }
    return result


def report(r: dict[str, Any]) -> None:
    c, f = r["connections"], r["fire"]
    table = Table(title=f"GB/T 26875.3 listener: {c['connected']:,} connections on one service process")
    table.add_column("")
    table.add_column("", justify="right")
    table.add_row("connected / failed", f"{c['connected']:,} / {c['connect_failures']:,}")
    table.add_row("connecting took", f"{c['connect_s']:.1f} s")
    table.add_row("service RSS idle", f"{c['rss_idle_mib']:.1f} MiB")
    table.add_row("service RSS, all connected", f"{c['rss_connected_mib']:.1f} MiB")
    table.add_row("per connection", f"{c['kib_per_connection']:.1f} KiB")
    table.add_row("heartbeats sent / confirmed", f"{c['heartbeats']:,} / {c['confirmed']:,}")
    table.add_row("denied / resent / given up / unanswered",
                  f"{c['denied']} / {c['resent']} / {c['gave_up']} / {c['unanswered']}")  # fmt: skip
    table.add_row("service RSS after the fires", f"{r['rss_after_fires_mib']:.1f} MiB")
    console.print(table)
    lat = Table(
        title=f"fire frame to alarm, {r['fires']} detectors, one every {r['every_s']:g} s (bar: p99 < 100 ms)"
    )
    for col in ("path", "n", "p50 ms", "p95 ms", "p99 ms", "max ms"):
        lat.add_column(col, justify="right" if col != "path" else "left")
    for name, key in (("upload -> confirm", "confirm_ms"), ("upload -> WebSocket", "websocket_ms"),
                      ("upload -> MQTT alarm topic", "mqtt_ms")):  # fmt: skip
        s = f[key]
        if s.get("n"):
            lat.add_row(name, f"{s['n']:.0f}", *(f"{s[k]:.1f}" for k in ("p50", "p95", "p99", "max")))
        else:
            lat.add_row(name, "0", "", "", "", "")
    console.print(lat)
    console.print(f"missing: {f['missing_ws']} on the WebSocket, {f['missing_mqtt']} on the alarm topic")
    m = r["machine"]
    console.print(f"{m['cpu']}, {m['cores']} cores, {m['python']}, {m['date']}")


def cli() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=10_000, help="device connections (default 10000)")
    parser.add_argument(
        "--fires", type=int, default=300, help="fire uploads timed, one per detector (default 300)"
    )
    parser.add_argument("--every", type=float, default=0.1, help="seconds between fire uploads (default 0.1)")
    parser.add_argument(
        "--heartbeat", type=float, default=30.0, help="seconds between a device's heartbeats (30)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    result = asyncio.run(main(args))
    report(result)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    cli()
