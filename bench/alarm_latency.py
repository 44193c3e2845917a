"""Alarm latency under load: a fire-level reading published over MQTT -> its alarm transition pushed
out, on the WebSocket stream and on the MQTT alarm topic, while the service ingests background
telemetry at half of its maximum ingest rate, measured in the same run.

    python3 -m bench.alarm_latency --alarms 200

1. The maximum, two ways. First `bench.ingest`'s end-to-end drain of a queued backlog (receive,
   decode, detect, persist, acknowledge) through a private mosquitto, as before. Then (the default,
   `--maximum live`) the highest publishing rate the service of step 2 keeps up with live beside
   the load generator and the broker: rates tried for `--step-s` seconds each, the first at half
   the drain, growing by half while the service keeps up (receive queue under 5,000 throughout,
   ingesting at least 97% of what is published), then bisecting. The background load is
   `--load` (half) of that. `--maximum drain` takes half of the drain instead, as runs before
   2026-12-05 did. Why: docs/benchmarks.md, "Alarm latency under load".
2. The service alone in a process of its own (`firewatch.service.Service` with the API on uvicorn,
   127.0.0.1, a free port), a fresh private-broker session, default settings; a registry of smoke
   detectors, the shipped `smoke-photoelectric` profile, one alarm device per zone.
3. A load process publishes normal readings (QoS 1) of the background devices at half the maximum;
   after a warm-up, this process sets one distinct detector to a fire-level reading every
   `--every` seconds (and back to clear half-way), taking `time.time()` just before each publish,
   and takes `time.time()` when the `raised` fire transition of that detector arrives on a
   WebSocket client of `/api/v1/stream/alarms/ws` and on a paho subscriber of `fw/v1/{site}/alarms`.
   One host, one clock.

The API answers only signed-in callers: the service process mints a viewer's API key in its own
throwaway store and hands it to this process, whose WebSocket client sends it as
`Authorization: Bearer <key>` (checked once, when the stream opens). No token is needed to run it.

Telemetry storage is off this path: the pipeline commits and publishes a batch's alarms before it
hands the batch to the telemetry writer, which runs beside detection (firewatch/pipeline.py), so
the figures include decoding and detecting the batch a reading lands in, but not writing it.
Detection waits for the writer only when `ingest.handoff_max` messages are waiting to be stored;
the run reports how far behind the writer fell and how often detection waited.
Results and what they show: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import multiprocessing as mp
import os
import platform
import re
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
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

from bench.ingest import TICK_S, Drain, cpu_seconds, full_path_measured, mosquitto_pid
from core.registry import BuildingSpec, Device, FloorSpec, Registry, SiteSpec, ZoneSpec
from firewatch.broker import Mosquitto
from ingest.mqtt_wire import remaining_length

console = Console()
SITE = "bench"
PROFILE = "smoke-photoelectric"
FIRE, CLEAR = 0.30, 0.02  # dB/m: over the profile's fire level (0.15), and clean air
ALARM_TYPE = "smoke.alarm"
TARGET_P99_MS = 50.0  # issue 20's bar (the foundation's was 100 ms)
KEEPALIVE_S = 20.0  # alarm devices report this often between flips: never reported offline (90 s)
TIMINGS_FILE = "alarm_timings.json"  # the service's `Pipeline.alarm_timings`, written at its stop


# --- the registry -------------------------------------------------------------------------------


def registry(devices: int, alarm_devices: int) -> Registry:
    """Smoke detectors on one site, ten to a zone; the alarm devices one per zone (no zone fusion
    between them), the others carry the background telemetry."""
    zones = -(-devices // 10)
    floors = [
        FloorSpec(id=f"f{f}", name=f"{f}F", zones=[ZoneSpec(id=f"z{z}", name=f"{z}区") for z in range(50)])
        for f in range(-(-zones // 50))
    ]
    site = SiteSpec(id=SITE, name=SITE, buildings=[BuildingSpec(id="b1", name="b1", floors=floors)])
    devs = [
        Device(id=device_id(i), profile=PROFILE, place=f"{SITE}/b1/f{(i // 10) // 50}/z{(i // 10) % 50}")
        for i in range(devices)
    ]
    assert alarm_devices <= zones, "one alarm device per zone: use more devices or fewer alarms"
    return Registry([site], devs)


def device_id(i: int) -> str:
    return f"d{i:06d}"


def alarm_device_indexes(alarm_devices: int) -> list[int]:
    return [10 * z for z in range(alarm_devices)]  # the first device of each zone


# --- background load: a minimal MQTT 3.1.1 QoS 1 publisher ----------------------------------------
# PUBLISH packets built with a few byte operations and written in bulk on a plain socket, so the
# load process costs the machine far less than the service it loads (in a quick trial here, a paho
# publishing loop fell short of 20,000 QoS 1 messages/s).


def _packet(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + remaining_length(len(body)) + body


def _connect(host: str, port: int, client_id: str) -> socket.socket:
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    cid = client_id.encode()
    # protocol level 4 (3.1.1), clean session, keep-alive 0 (the broker never times us out)
    sock.sendall(_packet(0x10, b"\x00\x04MQTT\x04\x02\x00\x00" + len(cid).to_bytes(2, "big") + cid))
    connack = sock.recv(4)
    if len(connack) != 4 or connack[0] != 0x20 or connack[3] != 0:
        raise RuntimeError(f"the broker refused the load publisher: {connack!r}")
    return sock


def load(
    host: str,
    port: int,
    devices: list[int],
    rate: float,
    stop: MpEvent,
    started: MpEvent,
    out: Any,
    seq_base: int = 0,
) -> None:
    """Publish normal readings of `devices` round-robin at `rate`/s, QoS 1, until `stop`; each
    device's seq goes on from `seq_base` (a later load process continues an earlier one's)."""
    sock = _connect(host, port, f"bench-load-{uuid.uuid4().hex[:6]}")
    acked = [0]

    def count_acks() -> None:  # only PUBACKs (4 bytes each) come back on this connection
        received = 0
        while chunk := sock.recv(65536):
            received += len(chunk)
            acked[0] = received // 4

    reader = threading.Thread(target=count_acks, daemon=True)
    reader.start()
    topics = [f"fw/v1/{SITE}/{device_id(i)}/telemetry".encode() for i in devices]
    headers = [len(t).to_bytes(2, "big") + t for t in topics]
    n, sent, throttled = len(devices), 0, 0
    started.set()
    t0 = time.perf_counter()
    while not stop.is_set():
        due = int((time.perf_counter() - t0) * rate)
        if sent - acked[0] > 20_000:  # bounded in flight (and packet ids never reused while in flight)
            throttled += 1
            time.sleep(0.002)
            continue
        now = time.time()
        packets = []
        for k in range(sent, due):
            d = k % n
            payload = b'{"ts":%.3f,"seq":%d,"v":{"smoke":0.02%d,"temp":24.%d}}' % (
                now,
                seq_base + k // n + 1,
                k % 5,
                k % 4,
            )
            packets.append(_packet(0x32, headers[d] + (k % 65535 + 1).to_bytes(2, "big") + payload))
        if packets:
            sock.sendall(b"".join(packets))
            sent = due
        time.sleep(0.002)
    seconds = time.perf_counter() - t0
    deadline = time.monotonic() + 10
    while acked[0] < sent and time.monotonic() < deadline:
        time.sleep(0.01)
    sock.close()
    out.put({"sent": sent, "acked": acked[0], "seconds": seconds, "throttled": throttled})


# --- the service in a process of its own ------------------------------------------------------------


def serve(
    broker_url: str,
    data: str,
    devices: int,
    alarm_devices: int,
    http_port: int,
    stop: MpEvent,
    log: str,
    token_out: Any,
    switch_interval_s: float | None = None,
) -> None:
    if switch_interval_s is not None:  # an experiment: how long a thread holds the GIL at a time
        sys.setswitchinterval(switch_interval_s)
    logging.basicConfig(
        filename=log, level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(_serve(broker_url, Path(data), devices, alarm_devices, http_port, stop, token_out))


async def _serve(
    broker_url: str,
    data: Path,
    devices: int,
    alarm_devices: int,
    http_port: int,
    stop: MpEvent,
    token_out: Any,
) -> None:
    import uvicorn

    from api.app import create_app
    from core.domain import Role
    from core.settings import Settings
    from device_profiles.loader import load_profiles
    from firewatch.service import Service, freeze_start_up_heap

    # Default settings, but for the environment's FIREWATCH_* (to try a setting here) and the
    # bench's own broker and data dir.
    base = Settings()
    client_id = f"bench-fw-{uuid.uuid4().hex[:6]}"
    settings = base.model_copy(
        update={
            "data_dir": data,
            "mqtt": base.mqtt.model_copy(update={"url": broker_url, "client_id": client_id}),
        }
    )
    service = Service(settings, registry=registry(devices, alarm_devices), profiles=load_profiles())
    key, _ = service.accounts.create_api_key("bench-alarm-latency", [Role.VIEWER], by="bench")
    freeze_start_up_heap()  # as `firewatch serve` does
    token_out.put(key.token)  # for the measuring process's stream client
    config = uvicorn.Config(
        create_app(service.app_context()),
        host="127.0.0.1",
        port=http_port,
        lifespan="on",
        log_level="warning",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    await asyncio.to_thread(stop.wait)
    service.live.close()
    server.should_exit = True
    await serving
    # Each alarm write's steps, for the breakdown (`alarm_path`).
    timings = [dataclasses.asdict(t) for t in service.pipeline.alarm_timings]
    (data / TIMINGS_FILE).write_bytes(orjson.dumps(timings))


# --- measuring ----------------------------------------------------------------------------------------


@dataclass
class PushPath:
    """Receive times of one push path, by alarm device (filled from the receiving thread)."""

    name: str
    first: dict[str, float] = field(default_factory=dict)
    duplicates: int = 0
    others: int = 0  # transitions that were not a measured fire being raised
    lock: threading.Lock = field(default_factory=threading.Lock)

    def saw(self, message: dict[str, Any], at: float, sent: dict[str, float]) -> None:
        after = message.get("after") or {}
        device = str(after.get("device_id"))
        with self.lock:
            if (
                message.get("action") != "raised"
                or after.get("alarm_type") != ALARM_TYPE
                or device not in sent
            ):
                self.others += 1
            elif device in self.first:
                self.duplicates += 1
            else:
                self.first[device] = at

    def has(self, devices: list[str]) -> bool:
        with self.lock:
            return all(d in self.first for d in devices)

    def latencies_ms(self, sent: dict[str, float]) -> np.ndarray[Any, np.dtype[np.float64]]:
        with self.lock:
            return np.array([(self.first[d] - t) * 1000 for d, t in sent.items() if d in self.first])


def stats(ms: np.ndarray[Any, np.dtype[np.float64]]) -> dict[str, float]:
    if ms.size == 0:
        return {}
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "max": float(ms.max()),
        "min": float(ms.min()),
    }


SAMPLED = (
    "fw_ingest_readings_total",
    "fw_ingest_queue_depth",
    "fw_ingest_queue_overflow",
    "fw_telemetry_pending_messages",
    "fw_telemetry_handoff_waits_total",
    "fw_ingest_batch_seconds_sum",
    "fw_ingest_batch_seconds_count",
)


def metrics_text(http: str) -> str:
    with urllib.request.urlopen(f"{http}/metrics", timeout=10) as r:
        return str(r.read().decode())


def service_metrics(http: str) -> dict[str, float]:
    """The unlabelled series of SAMPLED from the service's /metrics."""
    found = re.findall(r"^(fw_\w+) (\S+)$", metrics_text(http), re.MULTILINE)
    return {name: float(value) for name, value in found if name in SAMPLED}


def batch_buckets(http: str, name: str = "fw_ingest_batch_messages") -> dict[str, float]:
    """A histogram's cumulative bucket counts by upper bound, from /metrics (default: batch sizes)."""
    found = re.findall(rf'^{name}_bucket\{{le="([^"]+)"\}} (\S+)$', metrics_text(http), re.MULTILINE)
    return {le: float(n) for le, n in found}


def histogram_rows(before: dict[str, float], after: dict[str, float]) -> list[tuple[str, int]]:
    """Batches per size class between two cumulative readings: ("<= 100", n), ..."""
    rows, below, lower = [], 0.0, "1"
    for le in sorted(after, key=lambda k: float(k)):
        total = after[le] - before.get(le, 0.0)
        label = f"> {lower}" if le == "+Inf" else f"<= {float(le):g}"
        rows.append((label, int(total - below)))
        below, lower = total, f"{float(le):g}" if le != "+Inf" else lower
    return rows


async def sample(http: str, start: float, into: list[dict[str, float]]) -> None:
    """The service's ingest counters and queues once a second, for the timeline."""
    while True:
        m = await asyncio.to_thread(service_metrics, http)
        into.append({"t": time.monotonic() - start, **m})
        await asyncio.sleep(1.0)


def timeline(samples: list[dict[str, float]]) -> dict[str, Any]:
    """Ingest rate, batch size and time, and queues, over the measuring window."""
    first, last = samples[0], samples[-1]
    seconds = last["t"] - first["t"]
    batches = last["fw_ingest_batch_seconds_count"] - first["fw_ingest_batch_seconds_count"]
    readings = last["fw_ingest_readings_total"] - first["fw_ingest_readings_total"]
    behind = [s["t"] for s in samples if s["fw_ingest_queue_depth"] > 5_000]
    return {
        "ingested_per_s": readings / seconds if seconds else 0.0,
        "batches_per_s": batches / seconds if seconds else 0.0,
        "mean_batch_readings": readings / batches if batches else 0.0,
        "mean_batch_ms": 1000
        * (last["fw_ingest_batch_seconds_sum"] - first["fw_ingest_batch_seconds_sum"])
        / max(batches, 1),
        "max_queue_depth": max(s["fw_ingest_queue_depth"] for s in samples),
        # kept beyond the queue's bound over the window (the gauge counts from the service's start)
        "queue_overflow": last.get("fw_ingest_queue_overflow", 0.0)
        - first.get("fw_ingest_queue_overflow", 0.0),
        "max_telemetry_pending": max(s["fw_telemetry_pending_messages"] for s in samples),
        "handoff_waits": last["fw_telemetry_handoff_waits_total"] - first["fw_telemetry_handoff_waits_total"],
        "queue_over_5000_from_s": behind[0] if behind else None,
        "window_s": seconds,
    }


def children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (the service's telemetry compactor)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                text = Path(f"/proc/{entry}/stat").read_text()
                if int(text[text.rindex(")") + 2 :].split()[1]) == pid:
                    out.append(int(entry))
    return out


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, every process (/proc/stat)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields) - idle) * TICK_S, sum(fields) * TICK_S


@dataclass
class CpuClock:
    """CPU seconds of the processes a run is made of, read at two instants."""

    pids: dict[str, list[int]]
    start: dict[str, float] = field(default_factory=dict)
    machine0: tuple[float, float] = (0.0, 0.0)
    wall0: float = 0.0

    def read(self) -> dict[str, float]:
        return {name: sum(cpu_seconds(p) for p in pids) for name, pids in self.pids.items()}

    def begin(self) -> None:
        self.start, self.machine0, self.wall0 = self.read(), machine_cpu(), time.monotonic()

    def end(self) -> dict[str, float]:
        """CPU seconds per process since `begin`, and the machine's busy fraction (all processes)."""
        now, (busy, total) = self.read(), machine_cpu()
        used = {name: now[name] - self.start.get(name, 0.0) for name in now}
        used["wall_s"] = time.monotonic() - self.wall0
        used["machine_busy_fraction"] = (busy - self.machine0[0]) / max(total - self.machine0[1], 1e-9)
        return used


def push_log(
    state_db: Path, sent: dict[str, float], sends: dict[str, float] | None = None
) -> dict[str, list[float]]:
    """Where each measured alarm's time went, from the service's own outbox and delivery log (read
    after it stopped): published -> the alarm write (receive, queue, batch wait, decode, detect:
    the outbox row's `created_ts`), -> the dispatcher sends on the alarm topic (commit, wake, the
    dispatcher's reads), and the send itself (publish until the broker's PUBACK), in ms. `sends`
    gets each measured alarm's send start (`time.time()`), by device."""
    split: dict[str, list[float]] = {"to_alarm_write": [], "to_send": [], "send": []}
    with contextlib.closing(sqlite3.connect(state_db)) as db:
        rows = db.execute(
            "SELECT o.created_ts, o.payload, d.ts, d.seconds FROM outbox o "
            "JOIN deliveries d ON d.outbox_id = o.id WHERE o.route = 'mqtt-alarm-topic' AND d.ok "
            "ORDER BY o.id"
        ).fetchall()
    for created, payload, delivered, seconds in rows:
        t = orjson.loads(payload).get("transition", {})
        device = str(t.get("after", {}).get("device_id"))
        if t.get("action") != "raised" or t.get("after", {}).get("alarm_type") != ALARM_TYPE:
            continue
        if (published := sent.get(device)) is None or len(split["send"]) >= len(sent):
            continue
        split["to_alarm_write"].append((created - published) * 1000)
        split["to_send"].append((delivered - seconds - created) * 1000)
        split["send"].append(seconds * 1000)
        if sends is not None:
            sends[device] = delivered - seconds
    return split


def alarm_path(
    timings_file: Path, sent: dict[str, float], ws_first: dict[str, float], alarm_sends: dict[str, float]
) -> dict[str, list[float]]:
    """Each measured alarm's way through the service, in ms, from its alarm write's timings
    (`firewatch.pipeline.AlarmWriteTiming`, the first write of its device committed after the
    publish): published -> its batch leaves the receive queue (MQTT hop, receive queue, batch wait),
    -> its decoding begins (the hop into the detection thread), -> its events reach the alarm
    writer (decode, detect), -> the write begins (queued behind earlier writes), the write (wall
    time, commit included, and the alarm writer's CPU in it), -> the listeners are told, and from
    the commit to the WebSocket client's receipt and to the alarm topic's send."""
    timings = orjson.loads(timings_file.read_bytes())
    steps = (
        "to_batch",
        "to_detect_thread",
        "detect",
        "writer_queue",
        "write",
        "write_cpu",
        "to_listeners",
        "commit_to_websocket",
        "commit_to_alarm_topic_send",
    )
    split: dict[str, list[float]] = {k: [] for k in steps}
    for device, published in sent.items():
        mine = [t for t in timings if device in t["devices"] and t["committed"] >= published]
        if not mine:
            continue
        t = min(mine, key=lambda x: float(x["committed"]))
        split["to_batch"].append((t["taken"] - published) * 1000)
        split["to_detect_thread"].append((t["detecting"] - t["taken"]) * 1000)
        split["detect"].append((t["submitted"] - t["detecting"]) * 1000)
        split["writer_queue"].append((t["writing"] - t["submitted"]) * 1000)
        split["write"].append((t["committed"] - t["writing"]) * 1000)
        split["write_cpu"].append(t["write_cpu"] * 1000)
        split["to_listeners"].append((t["published"] - t["committed"]) * 1000)
        if device in ws_first:
            split["commit_to_websocket"].append((ws_first[device] - t["committed"]) * 1000)
        if device in alarm_sends:
            split["commit_to_alarm_topic_send"].append((alarm_sends[device] - t["committed"]) * 1000)
    return split


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_model() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


async def until(check: Callable[[], bool], limit_s: float, what: str) -> None:
    """Poll `check` (a flag another process or thread sets) until true, at most `limit_s`."""
    deadline = time.monotonic() + limit_s
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} within {limit_s:.0f} s")
        await asyncio.sleep(0.05)


def ready(http: str) -> bool:
    try:
        with urllib.request.urlopen(f"{http}/readyz", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


QUEUE_BEHIND = 5_000  # receive queue depth that counts as behind the load


@dataclass
class Step:
    """One rate of the live search: did the service keep up with it beside its load and broker?"""

    rate: float
    published_per_s: float
    ingested_per_s: float
    max_queue: float
    last_queue: float
    published: int

    @property
    def kept_up(self) -> bool:
        return (
            self.max_queue < QUEUE_BEHIND
            and self.last_queue < QUEUE_BEHIND
            and self.ingested_per_s >= 0.97 * self.published_per_s
        )


@dataclass
class LiveSearch:
    """The publishing rates the service sustained live, found by bisection."""

    steps: list[Step] = field(default_factory=list)
    seq_next: int = 0  # the next load process starts its seqs here

    @property
    def maximum(self) -> float:
        kept = [s.rate for s in self.steps if s.kept_up]
        return max(kept) if kept else 0.0


async def live_step(
    ctx: Any,
    broker: Mosquitto,
    http: str,
    background: list[int],
    rate: float,
    seconds: float,
    search: LiveSearch,
) -> Step:
    """Publish at `rate` for `seconds` and watch the receive queue; then let the service catch up."""
    stop, started, out = ctx.Event(), ctx.Event(), ctx.Queue()
    loader = ctx.Process(
        target=load,
        args=(broker.host, broker.port, background, rate, stop, started, out, search.seq_next),
        name="load-step",
    )
    loader.start()
    try:
        await until(started.is_set, 30, "the load process did not start")
        first = await asyncio.to_thread(service_metrics, http)
        t0, depths = time.monotonic(), []
        while time.monotonic() - t0 < seconds:
            await asyncio.sleep(0.5)
            depths.append((await asyncio.to_thread(service_metrics, http))["fw_ingest_queue_depth"])
            if len(depths) >= 3 and min(depths[-3:]) >= QUEUE_BEHIND:
                break  # behind for good (1.5 s over the mark): no need for a longer backlog to catch up on
        last = await asyncio.to_thread(service_metrics, http)
        elapsed = time.monotonic() - t0
    finally:
        stop.set()
    stats = await asyncio.to_thread(out.get, True, 30)
    loader.join(30)
    search.seq_next += -(-int(stats["sent"]) // len(background)) + 1
    step = Step(
        rate=rate,
        published_per_s=stats["sent"] / stats["seconds"],
        ingested_per_s=(last["fw_ingest_readings_total"] - first["fw_ingest_readings_total"]) / elapsed,
        max_queue=max(depths),
        last_queue=depths[-1],
        published=int(stats["sent"]),
    )
    # caught up: the queue and the telemetry writer empty (bounded: a service far behind still ends)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        m = await asyncio.to_thread(service_metrics, http)
        if m["fw_ingest_queue_depth"] == 0 and m["fw_telemetry_pending_messages"] == 0:
            break
        await asyncio.sleep(0.5)
    return step


async def live_maximum(
    ctx: Any,
    broker: Mosquitto,
    http: str,
    background: list[int],
    upper: float,
    args: argparse.Namespace,
    keepalive: Callable[[], None],
    progress: Progress,
) -> LiveSearch:
    """The highest publishing rate the running service keeps up with beside its load generator and
    broker. The first probe is half of `upper` (the backlog drain); while every probe keeps up the
    next is 1.5 times higher (live may sustain more than the drain measured: it runs at another
    moment of a shared machine), after the first that falls behind it bisects."""
    search, lo, hi = LiveSearch(), 0.0, float("inf")
    task = progress.add_task("live maximum (step search)", total=args.search_steps)
    for n in range(args.search_steps):
        rate = upper / 2 if n == 0 else (lo * 1.5 if hi == float("inf") else (lo + hi) / 2)
        keepalive()  # the alarm devices report, so none goes offline during the search
        step = await live_step(ctx, broker, http, background, rate, args.step_s, search)
        search.steps.append(step)
        lo, hi = (rate, hi) if step.kept_up else (lo, rate)
        progress.update(task, completed=n + 1)
    keepalive()
    return search


async def measure(
    broker: Mosquitto,
    data: Path,
    args: argparse.Namespace,
    rate: float | None,
    drain_max: float | None,
    progress: Progress,
) -> dict[str, Any]:
    """The alarm latencies at background `rate`; with `rate` None, at `args.load` of the live
    maximum searched first in the same service process (`live_maximum`)."""
    ctx = mp.get_context("spawn")
    http_port = free_port()
    http = f"http://127.0.0.1:{http_port}"
    log = data / "service.log"
    stop_service, stop_load, load_started = ctx.Event(), ctx.Event(), ctx.Event()
    token_out = ctx.Queue()
    service = ctx.Process(
        target=serve,
        args=(
            broker.url,
            str(data / "fw"),
            args.devices,
            args.alarms,
            http_port,
            stop_service,
            str(log),
            token_out,
            None if args.switch_interval_ms is None else args.switch_interval_ms / 1000,
        ),
        name="firewatch",
    )
    service.start()
    alarm_idx = alarm_device_indexes(args.alarms)
    alarm_set = set(alarm_idx)
    background = [i for i in range(args.devices) if i not in alarm_set]
    load_out = ctx.Queue()
    search: LiveSearch | None = None
    ws_path, mqtt_path = PushPath("WebSocket"), PushPath("MQTT alarm topic")
    sent: dict[str, float] = {}
    loader: mp.process.BaseProcess | None = None
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{uuid.uuid4().hex[:6]}")
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-flip-{uuid.uuid4().hex[:6]}")
    try:
        await until(lambda: ready(http), 60, "the service did not become ready")
        token: str = await asyncio.to_thread(token_out.get, True, 30)  # minted before it served
        sub.on_message = lambda _c, _u, msg: mqtt_path.saw(orjson.loads(msg.payload), time.time(), sent)
        subscribed = threading.Event()
        sub.on_subscribe = lambda *_a: subscribed.set()
        sub.connect(broker.host, broker.port)
        sub.loop_start()
        sub.subscribe(f"fw/v1/{SITE}/alarms", qos=1)
        pub.connect(broker.host, broker.port)
        pub.loop_start()
        await until(subscribed.is_set, 10, "the alarm topic subscription was not acknowledged")

        seq: dict[int, int] = dict.fromkeys(alarm_idx, 0)

        def send(i: int, smoke: float) -> None:
            seq[i] += 1
            body = {"ts": time.time(), "seq": seq[i], "v": {"smoke": smoke, "temp": 24.0}}
            pub.publish(f"fw/v1/{SITE}/{device_id(i)}/telemetry", orjson.dumps(body), qos=1)

        for i in alarm_idx:  # seen once before the load starts
            send(i, CLEAR)

        def keepalive() -> None:
            for j in alarm_idx:
                send(j, CLEAR)

        if rate is None:
            assert drain_max is not None, "the live search is bounded by the drain"
            search = await live_maximum(
                ctx,
                broker,
                http,
                background,
                drain_max,
                args,
                keepalive,
                progress,
            )
            rate = search.maximum * args.load
        loader = ctx.Process(
            target=load,
            args=(
                broker.host,
                broker.port,
                background,
                rate,
                stop_load,
                load_started,
                load_out,
                search.seq_next if search else 0,
            ),
            name="load",
        )

        async with connect(
            f"ws://127.0.0.1:{http_port}/api/v1/stream/alarms/ws?site={SITE}",
            additional_headers={"Authorization": f"Bearer {token}"},
            max_queue=None,
        ) as ws:

            async def receive() -> None:
                async for raw in ws:
                    ws_path.saw(orjson.loads(raw), time.time(), sent)

            receiver = asyncio.create_task(receive())
            loader.start()
            await until(load_started.is_set, 30, "the load process did not start")
            assert service.pid is not None
            assert loader.pid is not None
            cpu = CpuClock(
                {
                    "service": [service.pid],
                    "compactor": children(service.pid),
                    "load": [loader.pid],
                    "mosquitto": [mosquitto_pid(broker)],
                    "bench": [os.getpid()],
                }
            )
            cpu.begin()
            batches0 = await asyncio.to_thread(batch_buckets, http)
            readings0 = (await asyncio.to_thread(service_metrics, http))["fw_ingest_readings_total"]
            window_start = time.monotonic()
            samples: list[dict[str, float]] = []
            sampler = asyncio.create_task(sample(http, window_start, samples))
            warm = progress.add_task(f"warm-up at {rate:,.0f} readings/s", total=args.warmup)
            while (elapsed := time.monotonic() - window_start) < args.warmup:
                progress.update(warm, completed=elapsed)
                await asyncio.sleep(0.2)
            progress.update(warm, completed=args.warmup)

            bar = progress.add_task("fire alarms", total=args.alarms)
            flips_start = time.monotonic()
            last_keepalive = flips_start
            for n, i in enumerate(alarm_idx):
                tick = flips_start + n * args.every
                await asyncio.sleep(max(0.0, tick - time.monotonic()))
                if time.monotonic() - last_keepalive > KEEPALIVE_S:
                    for j in alarm_idx:  # report, so none goes offline (none is on fire now)
                        send(j, CLEAR)
                    last_keepalive = time.monotonic()
                sent[device_id(i)] = time.time()
                send(i, FIRE)
                await asyncio.sleep(max(0.0, tick + args.every / 2 - time.monotonic()))
                send(i, CLEAR)
                progress.update(bar, completed=n + 1)
                if time.monotonic() - flips_start > args.max_seconds:
                    console.print(f"[yellow]stopped after {n + 1} alarms: --max-seconds reached[/]")
                    break
            # The last ones get a bounded while to arrive; what has not arrived then is missed.
            with contextlib.suppress(RuntimeError):
                await until(lambda: ws_path.has(list(sent)) and mqtt_path.has(list(sent)), 10, "")
            used = cpu.end()
            batch_sizes = histogram_rows(batches0, await asyncio.to_thread(batch_buckets, http))
            # every alarm write of the run (the measured raises: the clears write nothing, fire latches)
            write_s = histogram_rows(
                {}, await asyncio.to_thread(batch_buckets, http, "fw_alarm_write_seconds")
            )
            used["readings"] = (await asyncio.to_thread(service_metrics, http))[
                "fw_ingest_readings_total"
            ] - readings0
            sampler.cancel()
            stop_load.set()
            load_stats = await asyncio.to_thread(load_out.get, True, 30)
            for task in (receiver, sampler):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    finally:
        stop_load.set()
        stop_service.set()
        for client in (sub, pub):
            client.loop_stop()
            with contextlib.suppress(Exception):
                client.disconnect()
        for proc in (loader, service) if loader is not None else (service,):
            if proc.pid is not None:
                proc.join(30)
                if proc.is_alive():
                    proc.terminate()
    first_sent = min(sent.values())
    alarm_sends: dict[str, float] = {}
    try:
        split = push_log(data / "fw" / "firewatch.sqlite", sent, alarm_sends)
    except sqlite3.Error as exc:  # a schema change: the breakdown is extra, the latencies stand
        console.print(f"[yellow]no breakdown from the service's outbox: {exc}[/]")
        split = {}
    if (data / "fw" / TIMINGS_FILE).exists():
        split |= alarm_path(data / "fw" / TIMINGS_FILE, sent, ws_path.first, alarm_sends)
    lines = log.read_text().splitlines()
    problems = [line for line in lines if " ERROR " in line or " WARNING " in line]
    # what the tracebacks end in: the exception that was raised
    causes = {line[:160] for line in lines if re.match(r"^[\w.]+(Error|Exception): ", line)}
    return {
        "alarms": len(sent),
        "every_s": args.every,
        "paths": {
            p.name: {
                **stats(p.latencies_ms(sent)),
                "received": len(set(sent) & set(p.first)),
                "missed": len(set(sent) - set(p.first)),
                "duplicates": p.duplicates,
                "other_transitions": p.others,
            }
            for p in (ws_path, mqtt_path)
        },
        "live_search": None
        if search is None
        else {
            "maximum_per_s": search.maximum,
            "step_s": args.step_s,
            "steps": [
                {
                    "rate": st.rate,
                    "published_per_s": st.published_per_s,
                    "ingested_per_s": st.ingested_per_s,
                    "max_queue": st.max_queue,
                    "last_queue": st.last_queue,
                    "kept_up": st.kept_up,
                }
                for st in search.steps
            ],
        },
        "background": {
            "target_per_s": rate,
            "published_per_s": load_stats["sent"] / load_stats["seconds"],
            "published": load_stats["sent"],
            "acknowledged_by_broker": load_stats["acked"],
        },
        "service": timeline(samples),
        "breakdown_ms": {k: stats(np.array(v)) for k, v in split.items()},
        "cpu_s": used,  # CPU seconds per process over the window (load start to the last alarm + wait)
        "batch_sizes": batch_sizes,  # batches per size class over the same window
        "alarm_write_s": write_s,  # alarm writes per duration class (seconds)
        "samples": samples,  # the service's counters once a second (seconds into the window)
        "series": [  # per alarm: seconds since the first, then the latency of each path (ms)
            [
                round(t - first_sent, 3),
                *(round((p.first[d] - t) * 1000, 2) if d in p.first else None for p in (ws_path, mqtt_path)),
            ]
            for d, t in sent.items()
        ],
        "service_log_warnings": len(problems),
        "service_log_sample": sorted({re.sub(r"^\S+ \S+ ", "", p)[:160] for p in problems})[:5],
        "service_log_exceptions": sorted(causes)[:5],
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    logging.basicConfig(level=logging.ERROR)  # the drain's reconnects are expected, not news
    with (
        tempfile.TemporaryDirectory() as tmp,
        Mosquitto(data_dir=Path(tmp) / "mq") as broker,
        Progress(console=console, transient=True) as progress,
    ):
        drain: Drain | None = None
        rate: float | None
        if args.rate:
            max_rate, rate = None, float(args.rate)
        else:
            drain = await full_path_measured(
                broker, args.devices, args.max_messages, Path(tmp) / "max", progress
            )
            max_rate = drain.readings_per_s
            rate = max_rate * args.load if args.maximum == "drain" else None
        result = await measure(broker, Path(tmp), args, rate, max_rate, progress)
    result["max_ingest_per_s"] = max_rate
    result["drain"] = (
        None
        if drain is None
        else {
            "readings_per_s": drain.readings_per_s,
            "seconds": drain.seconds,
            "cpu_us_per_message": drain.cpu_us_per_message,
            "broker_cpu_us_per_message": drain.broker_cpu_us_per_message,
            "batches": drain.batches,
            "mean_batch": drain.messages / max(drain.batches, 1),
            "batch_sizes": histogram_rows({}, drain.batch_hist),
        }
    )
    result["load_fraction"] = args.load if max_rate else None
    result["machine"] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "mosquitto": Mosquitto.version(),
        "date": time.strftime("%Y-%m-%d"),
    }
    return result


def report(r: dict[str, Any]) -> None:
    bg, m = r["background"], r["machine"]
    title = f"alarm latency, {r['alarms']} fire alarms, one every {r['every_s']:g} s"
    table = Table(title=title)
    for col in ("path", "p50 ms", "p95 ms", "p99 ms", "max ms", "received", "missed", "dupl."):
        table.add_column(col, justify="left" if col == "path" else "right")
    for name, p in r["paths"].items():
        cells = [f"{p[k]:.1f}" if k in p else "-" for k in ("p50", "p95", "p99", "max")]
        table.add_row(name, *cells, str(p["received"]), str(p["missed"]), str(p["duplicates"]))
    console.print(table)
    console.print("missed: not received within 10 s of the last alarm; dupl.: the same raise pushed twice")
    if r["max_ingest_per_s"]:
        console.print(f"maximum ingest (backlog drain, this run): {r['max_ingest_per_s']:,.0f} readings/s")
    if r["max_ingest_per_s"] and r["live_search"] is None:
        console.print(f"background target {r['load_fraction']:.0%} of the drain: {bg['target_per_s']:,.0f}/s")
    if (ls := r["live_search"]) is not None:
        for st in ls["steps"]:
            console.print(
                f"live search: {st['rate']:,.0f}/s for {ls['step_s']:g} s: published "
                f"{st['published_per_s']:,.0f}/s, ingested {st['ingested_per_s']:,.0f}/s, receive queue "
                f"at most {st['max_queue']:,.0f}: {'kept up' if st['kept_up'] else 'fell behind'}"
            )
        console.print(
            f"maximum ingest sustained live: {ls['maximum_per_s']:,.0f} readings/s; background target "
            f"{r['load_fraction']:.0%} of it: {bg['target_per_s']:,.0f}/s"
        )
    sv = r["service"]
    console.print(
        f"background: published {bg['published_per_s']:,.0f} readings/s; the service ingested "
        f"{sv['ingested_per_s']:,.0f}/s over the {sv['window_s']:.0f} s window in "
        f"{sv['batches_per_s']:.0f} batches/s of {sv['mean_batch_readings']:,.0f} readings "
        f"({sv['mean_batch_ms']:.1f} ms each); receive queue at most {sv['max_queue_depth']:,.0f} "
        f"({sv['queue_overflow']:,.0f} kept beyond its bound), "
        f"telemetry writer at most {sv['max_telemetry_pending']:,.0f} messages behind, "
        f"detection waited for it {sv['handoff_waits']:.0f} times"
    )
    if sv["queue_over_5000_from_s"] is not None:
        console.print(
            f"[yellow]the service fell behind the load from {sv['queue_over_5000_from_s']:.0f} s into the "
            "window (receive queue over 5,000): latency then grows with the queue[/]"
        )
    cpu, n = r["cpu_s"], max(r["cpu_s"]["readings"], 1.0)
    per = ", ".join(
        f"{k} {cpu[k]:.1f} s ({1e6 * cpu[k] / n:.0f} µs/reading)"
        for k in ("service", "compactor", "load", "mosquitto", "bench")
    )
    console.print(
        f"CPU over the {cpu['wall_s']:.0f} s window ({cpu['readings']:,.0f} readings ingested): {per}; "
        f"the machine was {cpu['machine_busy_fraction']:.0%} busy (every process, other work included)"
    )
    for step, st in r["breakdown_ms"].items():
        if st:
            console.print(
                f"breakdown {step}: p50 {st['p50']:.1f} ms, p95 {st['p95']:.1f} ms, p99 {st['p99']:.1f} ms, "
                f"max {st['max']:.1f} ms"
            )
    console.print(
        "alarm writes as the batch waited for them, commit included (writes): "
        + ", ".join(f"{k} s: {v}" for k, v in r["alarm_write_s"] if v)
    )
    console.print(f"live batch sizes (batches): {', '.join(f'{k}: {v}' for k, v in r['batch_sizes'] if v)}")
    if (d := r["drain"]) is not None:
        console.print(
            f"drain: {d['readings_per_s']:,.0f} readings/s, "
            f"service {d['cpu_us_per_message']:.0f} µs CPU/reading, "
            f"mosquitto {d['broker_cpu_us_per_message']:.0f} µs/reading, {d['batches']} batches of "
            f"{d['mean_batch']:,.0f} on average ({', '.join(f'{k}: {v}' for k, v in d['batch_sizes'] if v)})"
        )
    for name, p in r["paths"].items():
        if "p99" in p:
            verdict = "[green]met[/]" if p["p99"] < TARGET_P99_MS else "[red]missed[/]"
            console.print(f"{name}: p99 {p['p99']:.1f} ms, target < {TARGET_P99_MS:.0f} ms {verdict}")
    console.print(
        "telemetry storage is off this path: the pipeline publishes a batch's alarms before it hands "
        "the batch to the telemetry writer, which runs beside detection (firewatch/pipeline.py)"
    )
    if r["service_log_warnings"]:
        console.print(
            f"service log: {r['service_log_warnings']} warnings/errors, e.g. {r['service_log_sample']}"
            + (f"; exceptions: {r['service_log_exceptions']}" if r["service_log_exceptions"] else "")
        )
    console.print(
        f"machine: {m['cpu']}, {m['cores']} cores, {m['python']}, mosquitto {m['mosquitto']}; {m['date']}"
    )
    console.print("\nmarkdown:\n" + markdown(r), markup=False, highlight=False, soft_wrap=True)


def markdown(r: dict[str, Any]) -> str:
    bg, sv = r["background"], r["service"]
    load = f"{bg['published_per_s']:,.0f} published / {sv['ingested_per_s']:,.0f} ingested readings/s"
    rows = [
        "| path | background | p50 | p95 | p99 | max | received / missed / dupl. |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, p in r["paths"].items():
        cells = " | ".join(f"{p[k]:,.0f} ms" if k in p else "-" for k in ("p50", "p95", "p99", "max"))
        rows.append(f"| {name} | {load} | {cells} | {p['received']} / {p['missed']} / {p['duplicates']} |")
    return "\n".join(rows)


def cli() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--alarms", type=int, default=200, help="fire alarms to time (default 200)")
    parser.add_argument("--every", type=float, default=0.5, help="seconds between alarms (default 0.5)")
    parser.add_argument("--devices", type=int, default=5000, help="registered detectors (default 5000)")
    parser.add_argument(
        "--max-messages",
        type=int,
        default=100_000,
        help="backlog drained to measure the maximum (default 100000)",
    )
    parser.add_argument(
        "--maximum",
        choices=("live", "drain"),
        default="live",
        help="what the background load is a fraction of: the backlog drain, or the highest rate the "
        "service sustains live beside the load generator and broker (a step search bounded by the "
        "drain, in the measured service process)",
    )
    parser.add_argument(
        "--search-steps", type=int, default=5, help="rates tried by the live search (default 5)"
    )
    parser.add_argument(
        "--step-s", type=float, default=20.0, help="seconds of load per rate tried (default 20)"
    )
    parser.add_argument(
        "--switch-interval-ms",
        type=float,
        default=None,
        help="the service process's sys.setswitchinterval, in ms (default: the interpreter's 5 ms)",
    )
    parser.add_argument("--load", type=float, default=0.5, help="background load, fraction of the maximum")
    parser.add_argument("--rate", type=float, default=None, help="background readings/s (skips the maximum)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of load before the first alarm")
    parser.add_argument("--max-seconds", type=float, default=150.0, help="stop flipping after this long")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    result = asyncio.run(main(args))
    report(result)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        console.print(f"results written to {args.json}")


if __name__ == "__main__":
    cli()
