"""The first fire push of an incident, end to end: a fire-level smoke reading published over MQTT ->
the incident notice (title 【火警】...) received by a real HTTP receiver on loopback.

    python3 -m bench.incident_push --fires 20

1. A private mosquitto (`firewatch.broker.Mosquitto`) and a webhook receiver of this process's own
   (`http.server.ThreadingHTTPServer` on 127.0.0.1, a free port) that notes `time.time()` as each
   POST's body has been read.
2. The service alone in a process of its own (`firewatch.service.Service`, SQLite state store,
   default settings, so the shipped fire escalation chain), with one duty push route
   `json://127.0.0.1:<port>/hook`, `roles=["control_room"]`. The registry: one site of `--fires`
   buildings, one floor, one zone and one smoke detector (`smoke-photoelectric`) each. Fire incidents
   are grouped per building (alarms/incidents.py), so each building's fire is a new incident and
   nothing has to be reset between rounds.
3. Every detector reports clean air once. Then, one building at a time, this process takes
   `time.time()` and publishes that detector's fire-level reading (QoS 1); the round ends when the
   receiver has the 【火警】 notice naming that building (or after `--timeout` s: missed); then a
   pause of `--gap` s. One host, one clock.

The figure includes: the MQTT hop through mosquitto, the service's receive queue and batching
(`ingest.batch_wait_ms`), decoding, detection, the SQLite write of the alarm, its incident and the
outbox row in one transaction, waking the dispatcher, reading the row, Apprise rendering and
POSTing the notice over loopback HTTP. It excludes any real network or notification service (the
receiver is local and answers at once). After the last round it waits `--settle` s and counts every
push the receiver got per incident; the run is bounded (`--max-seconds`, default 50) so that the
chain's first escalation (60 s unacknowledged) cannot fall inside it.

The service's own outbox and delivery log split each push: reading published -> the alarm write
begins (its clock stamps the outbox row: receive, batching, decoding and detection are before it)
-> the dispatcher begins sending (the SQLite transaction and commit, the wake, the dispatcher's
reads) -> the channel returns (Apprise's POST, the receiver's answer included).
Results and what they show: docs/benchmarks.md.
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
import re
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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

from bench.alarm_latency import cpu_model
from core.registry import BuildingSpec, Device, FloorSpec, Registry, SiteSpec, ZoneSpec
from firewatch.broker import Mosquitto, free_port

console = Console()
SITE = "bench"
PROFILE = "smoke-photoelectric"
FIRE, CLEAR = 0.30, 0.02  # dB/m: over the profile's fire level (0.15), and clean air
ROUTE = "control-room"
FIRE_TITLE = "【火警】"
TARGET_MS = 1000.0  # the bar: the first push within 1 s
MAX_FIRES = 500  # building names are B000..B499: one three-digit name per fire


# --- the registry -------------------------------------------------------------------------------


def building(k: int) -> str:
    return f"B{k:03d}"


def device_id(k: int) -> str:
    return f"smk-{k:03d}"


def registry(fires: int) -> Registry:
    """One site; per fire a building of its own with one floor, one zone and one smoke detector."""
    buildings = [
        BuildingSpec(
            id=f"b{k}",
            name=building(k),
            floors=[FloorSpec(id="f1", name="1F", zones=[ZoneSpec(id="z1", name="1区")])],
        )
        for k in range(fires)
    ]
    devices = [Device(id=device_id(k), profile=PROFILE, place=f"{SITE}/b{k}/f1/z1") for k in range(fires)]
    return Registry([SiteSpec(id=SITE, name=SITE, buildings=buildings)], devices)


# --- the webhook receiver -------------------------------------------------------------------------


class Receiver:
    """Every JSON body POSTed to it, with `time.time()` once the body was read."""

    def __init__(self) -> None:
        self.port = free_port()
        self.bodies: list[tuple[float, dict[str, Any]]] = []
        self.arrived = threading.Condition()
        bodies, arrived = self.bodies, self.arrived

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                at = time.time()
                with arrived:
                    bodies.append((at, json.loads(body)))
                    arrived.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def fire_notice(self, k: int) -> float | None:
        """When the first 【火警】 notice naming building k arrived."""
        with self.arrived:
            return next((at for at, b in self.bodies if is_fire_notice(b, k)), None)

    def wait_fire_notice(self, k: int, timeout_s: float) -> float | None:
        deadline = time.monotonic() + timeout_s
        with self.arrived:
            while (at := next((at for at, b in self.bodies if is_fire_notice(b, k)), None)) is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.arrived.wait(left)
            return at

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def is_fire_notice(body: dict[str, Any], k: int) -> bool:
    title = str(body.get("title", ""))
    return title.startswith(FIRE_TITLE) and building_of(title) == building(k)


def building_of(title: str) -> str | None:
    m = re.search(r"\bB\d{3}\b", title)
    return m.group(0) if m else None


# --- the service in a process of its own ------------------------------------------------------------


def serve(
    broker_url: str, data: str, fires: int, hook: str, ready: MpEvent, stop: MpEvent, log: str, out: Any
) -> None:
    logging.basicConfig(
        filename=log, level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(_serve(broker_url, Path(data), fires, hook, ready, stop, out))


async def _serve(
    broker_url: str, data: Path, fires: int, hook: str, ready: MpEvent, stop: MpEvent, out: Any
) -> None:
    from core.settings import MqttSettings, PushRoute, Settings
    from device_profiles.loader import load_profiles
    from firewatch.service import Service

    settings = Settings(
        data_dir=data,
        mqtt=MqttSettings(url=broker_url, client_id=f"bench-fw-{uuid.uuid4().hex[:6]}"),
        pushes=[PushRoute(name=ROUTE, url=hook, roles=["control_room"])],
    )
    service = Service(settings, registry=registry(fires), profiles=load_profiles())
    await service.start()
    try:
        await asyncio.wait_for(service.source.connected.wait(), 30)
        ready.set()
        await asyncio.to_thread(stop.wait)
        out.put(await asyncio.to_thread(outbox_log, service))
    finally:
        await service.stop()


def outbox_log(service: Any) -> list[dict[str, Any]]:
    """The control room's pushes as the service recorded them: written, sent, delivered."""
    from sqlalchemy import select

    from storage.models import DeliveryRow, OutboxRow

    with service.sessions() as s:
        rows = s.execute(
            select(OutboxRow, DeliveryRow)
            .join(DeliveryRow, DeliveryRow.outbox_id == OutboxRow.id, isouter=True)
            .where(OutboxRow.route == ROUTE)
            .order_by(OutboxRow.id, DeliveryRow.id)
        ).all()
        return [
            {
                "outbox_id": o.id,
                "incident_id": o.incident_id,
                "title": str(o.payload.get("title", "")),
                "created_ts": o.created_ts,
                "delivered_ts": o.delivered_ts,
                "attempts": o.attempts,
                "sent_ts": None if d is None else d.ts - d.seconds,
                "send_s": None if d is None else d.seconds,
                "ok": None if d is None else d.ok,
            }
            for o, d in rows
        ]


# --- measuring ----------------------------------------------------------------------------------------


def stats(ms: list[float]) -> dict[str, float]:
    if not ms:
        return {}
    a = np.array(ms)
    p50, p90 = np.percentile(a, [50, 90])
    return {"median": float(p50), "p90": float(p90), "max": float(a.max()), "min": float(a.min())}


def measure(broker: Mosquitto, data: Path, args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    receiver = Receiver()
    log = data / "service.log"
    ready, stop = ctx.Event(), ctx.Event()
    out = ctx.Queue()
    service = ctx.Process(
        target=serve,
        args=(
            broker.url,
            str(data / "fw"),
            args.fires,
            f"json://127.0.0.1:{receiver.port}/hook",
            ready,
            stop,
            str(log),
            out,
        ),
        name="firewatch",
    )
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-fire-{uuid.uuid4().hex[:6]}")
    sent: dict[int, float] = {}
    received: dict[int, float] = {}
    recorded: list[dict[str, Any]] = []
    service.start()
    try:
        if not ready.wait(60):
            raise RuntimeError("the service did not connect to the broker within 60 s")
        pub.connect(broker.host, broker.port)
        pub.loop_start()

        def send(k: int, seq: int, smoke: float) -> None:
            body = {"ts": time.time(), "seq": seq, "v": {"smoke": smoke, "temp": 24.0}}
            pub.publish(f"fw/v1/{SITE}/{device_id(k)}/telemetry", orjson.dumps(body), qos=1)

        for k in range(args.fires):  # every detector seen once, in clean air
            send(k, 1, CLEAR)
        time.sleep(1.0)

        bar = progress.add_task("fires", total=args.fires)
        began = time.monotonic()
        for k in range(args.fires):
            if time.monotonic() - began > args.max_seconds:
                console.print(f"[yellow]stopped after {k} fires: --max-seconds reached[/]")
                break
            sent[k] = time.time()
            send(k, 2, FIRE)
            at = receiver.wait_fire_notice(k, args.timeout)
            if at is not None:
                received[k] = at
            progress.update(bar, completed=k + 1)
            time.sleep(args.gap)
        time.sleep(args.settle)  # late notices and anything else the incidents push
        window_s = time.monotonic() - began
        stop.set()
        with contextlib.suppress(Exception):
            recorded = out.get(True, 30)
    finally:
        stop.set()
        pub.loop_stop()
        with contextlib.suppress(Exception):
            pub.disconnect()
        service.join(30)
        if service.is_alive():
            service.terminate()
        receiver.close()

    # Late arrivals (after --timeout) are still counted per incident, never as a latency.
    with receiver.arrived:
        bodies = list(receiver.bodies)
    per_building: dict[str, list[str]] = {building(k): [] for k in sent}
    unmatched: list[str] = []
    for _at, b in bodies:
        title = str(b.get("title", ""))
        name = building_of(title)
        if name in per_building:
            per_building[name].append(title)
        else:
            unmatched.append(title)
    latency = {k: (received[k] - t) * 1000 for k, t in sent.items() if k in received}

    # The service's split of each measured push (its first 【火警】 outbox row per building).
    split: dict[str, list[float]] = {"to_outbox": [], "to_send": [], "sending": [], "after_send": []}
    firsts: dict[str, dict[str, Any]] = {}
    for row in recorded:
        name = building_of(row["title"])
        if name is None or not row["title"].startswith(FIRE_TITLE):
            continue
        seen = firsts.get(name)
        # its first notice; of that notice's attempts, the one that delivered it
        if seen is None or (seen["outbox_id"] == row["outbox_id"] and not seen["ok"]):
            firsts[name] = row
    for k, t in sent.items():
        first = firsts.get(building(k))
        if first is None or first["sent_ts"] is None or k not in received:
            continue
        split["to_outbox"].append((first["created_ts"] - t) * 1000)
        split["to_send"].append((first["sent_ts"] - first["created_ts"]) * 1000)
        split["sending"].append(first["send_s"] * 1000)
        split["after_send"].append((received[k] - first["sent_ts"]) * 1000)  # send start to receipt
    counts = [len(v) for v in per_building.values()]
    lines = log.read_text().splitlines() if log.exists() else []
    problems = [line for line in lines if " ERROR " in line or " WARNING " in line]
    return {
        "fires": len(sent),
        "received": len(latency),
        "missed": len(sent) - len(latency),
        "latency_ms": stats(list(latency.values())),
        "first_round_ms": latency.get(0),
        "within_target": sum(1 for v in latency.values() if v < TARGET_MS),
        "series_ms": [round(latency[k], 1) if k in latency else None for k in sent],
        "split_ms": {name: stats(v) for name, v in split.items()},
        "pushes_per_incident": {str(n): counts.count(n) for n in sorted(set(counts))},
        "titles": sorted({re.sub(r"B\d{3}", "B###", t) for v in per_building.values() for t in v}),
        "unmatched_pushes": unmatched[:5],
        "failed_attempts": sum(1 for r in recorded if r["ok"] is False),
        "window_s": window_s,
        "service_log_warnings": len(problems),
        "service_log_sample": sorted({re.sub(r"^\S+ \S+ ", "", p)[:160] for p in problems})[:5],
    }


def main(args: argparse.Namespace) -> dict[str, Any]:
    logging.basicConfig(level=logging.ERROR)
    with (
        tempfile.TemporaryDirectory() as tmp,
        Mosquitto(data_dir=Path(tmp) / "mq") as broker,
        Progress(console=console, transient=True) as progress,
    ):
        result = measure(broker, Path(tmp), args, progress)
    result["settings"] = {"gap_s": args.gap, "timeout_s": args.timeout, "settle_s": args.settle}
    result["machine"] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "mosquitto": Mosquitto.version(),
        "date": time.strftime("%Y-%m-%d"),
    }
    return result


def report(r: dict[str, Any]) -> None:
    m, lat = r["machine"], r["latency_ms"]
    table = Table(title=f"first fire push per incident, {r['fires']} fires, one building each")
    for col in ("", "median ms", "p90 ms", "max ms", "min ms"):
        table.add_column(col, justify="left" if not col else "right")
    cells = [f"{lat[k]:.1f}" if k in lat else "-" for k in ("median", "p90", "max", "min")]
    table.add_row("reading published -> notice received", *cells)
    names = {
        "to_outbox": "  published -> alarm write begins",
        "to_send": "  write begins -> dispatcher sends",
        "sending": "  channel send (Apprise POST)",
        "after_send": "  send begins -> received",
    }
    for key, label in names.items():
        s = r["split_ms"][key]
        table.add_row(label, *(f"{s[k]:.1f}" if k in s else "-" for k in ("median", "p90", "max", "min")))
    console.print(table)
    first = r["first_round_ms"]
    console.print(
        f"received {r['received']} / missed {r['missed']} (not within {r['settings']['timeout_s']:g} s); "
        f"under {TARGET_MS:.0f} ms: {r['within_target']} of {r['fires']}; the first fire after start: "
        + (f"{first:.1f} ms" if first is not None else "missed")
    )
    console.print(f"per round, ms: {r['series_ms']}")
    console.print(
        f"pushes per incident (all titles, {r['settings']['settle_s']:g} s after the last fire): "
        f"{r['pushes_per_incident']} (count: incidents); titles seen: {r['titles']}"
    )
    if r["unmatched_pushes"]:
        console.print(f"[yellow]pushes naming no measured building: {r['unmatched_pushes']}[/]")
    if r["failed_attempts"]:
        console.print(f"[yellow]failed delivery attempts: {r['failed_attempts']}[/]")
    if r["service_log_warnings"]:
        console.print(
            f"service log: {r['service_log_warnings']} warnings/errors, e.g. {r['service_log_sample']}"
        )
    if "max" in lat:
        verdict = "[green]met[/]" if lat["max"] < TARGET_MS and not r["missed"] else "[red]missed[/]"
        console.print(f"bar: the first push within {TARGET_MS / 1000:g} s, every fire: {verdict}")
    console.print(
        f"machine: {m['cpu']}, {m['cores']} cores, load average {m['load_average']}, {m['python']}, "
        f"mosquitto {m['mosquitto']}; {m['date']}"
    )


def cli() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--fires",
        type=int,
        default=20,
        help=f"fires (new incidents) to time (default 20, at most {MAX_FIRES})",
    )
    parser.add_argument("--gap", type=float, default=0.5, help="seconds between one notice and the next fire")
    parser.add_argument("--timeout", type=float, default=10.0, help="a notice later than this is missed")
    parser.add_argument(
        "--settle", type=float, default=3.0, help="seconds to keep counting pushes after the last fire"
    )
    parser.add_argument("--max-seconds", type=float, default=50.0, help="stop starting fires after this long")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    if not 1 <= args.fires <= MAX_FIRES:
        parser.error(f"--fires must be between 1 and {MAX_FIRES}")
    result = main(args)
    report(result)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        console.print(f"results written to {args.json}")


if __name__ == "__main__":
    cli()
