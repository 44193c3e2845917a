"""Load mode: many simulated devices from one command, over several processes, at a target rate.

`firewatch simulate load` publishes telemetry for up to hundreds of thousands of devices, exactly as
real devices would (topic `fw/v1/{site}/{device}/telemetry`, JSON payload with ts, seq, channel
values quantised to the profile's resolution, rssi), and reports the rate the broker acknowledged.

Why a publisher of its own and not paho: this one reached 4.6x the rate of paho-mqtt 2.2 at its best
(same two processes, median of three rounds) at a thirteenth of the CPU per message, and mosquitto
needs that CPU on a 2-core machine (docs/decisions/0005-load-generator.md). The MQTT 3.1.1
subset a publisher needs is small (CONNECT/CONNACK, PUBLISH, PUBACK, PINGREQ/PINGRESP, DISCONNECT),
and over a plain socket a whole batch of PUBLISH packets goes out in one write and a whole run of
PUBACKs is parsed with numpy. Per message, Python does one bytes formatting operation; the rest is
vectorised. No TLS, no credentials, no reconnection: a dropped connection ends the run with an error.

Bounded in-flight window: at most `max_inflight` QoS 1 messages per connection are sent and not yet
acknowledged (packet ids are 16-bit, so never more than 65,535: paho and libmosquitto stall beyond).
When the window is full the generator waits for PUBACKs: real backpressure from the broker.

Each worker process (multiprocessing "spawn" context) owns a contiguous shard of the devices and its
own connection(s); each connection publishes its devices in turn, round-robin. Workers report their
counters through shared memory (progress) and their final report through a queue.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import multiprocessing as mp
import os
import queue
import re
import select
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise, repeat
from multiprocessing.process import BaseProcess
from multiprocessing.sharedctypes import SynchronizedArray
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from rich.markup import escape
from rich.table import Table

from core.registry import ID_RE, BuildingSpec, Device, FloorSpec, SiteSpec, ZoneSpec, dump_registry
from device_profiles.loader import load_profiles
from device_profiles.schema import Channel, Profile
from ingest.mqtt_wire import remaining_length

MQTT_MAX_INFLIGHT = 65_535  # 16-bit packet ids; paho and libmosquitto stall above this many unacked
DEFAULT_MAX_INFLIGHT = 1_000
DEFAULT_PROFILE = "smoke-photoelectric"
DEVICES_PER_ZONE = 50  # the --registry-out layout: 50 devices per zone, 20 zones per floor
ZONES_PER_FLOOR = 20
BATCH = 256  # messages per write: large enough to amortise the syscall, small next to the window
KEEPALIVE_S = 60
CONNECT_TIMEOUT_S = 5.0
DRAIN_TIMEOUT_S = 15.0  # after the last publish, how long to wait for the outstanding PUBACKs
STARTUP_TIMEOUT_S = 120.0  # spawning, importing numpy and connecting all workers
SEQ_EPOCH = 1_767_225_600  # 2026-01-01T00:00:00Z: seq counts tenths of a second from here
NOISE_CLIP = 6.0  # noise is cut at 6 standard deviations so a value table covers every outcome

# Baseline (uniform low, high) and noise standard deviation per channel name, in the channel's unit;
# the same quiet-room values as simulators/devices.py. Other channels sit low in their range.
BASELINES: dict[str, tuple[float, float, float]] = {
    "smoke": (0.005, 0.03, 0.002),
    "temp": (22.0, 26.0, 0.1),
    "pressure": (0.30, 0.45, 0.002),
    "level": (3.0, 4.0, 0.003),
    "current": (0.5, 3.0, 0.05),
    "residual_current": (50.0, 150.0, 3.0),
    "lel": (0.0, 2.0, 0.2),
    "open": (0.0, 0.0, 0.0),
}

# MQTT 3.1.1 control packets (fixed header first byte).
CONNECT, CONNACK, PUBLISH, PUBACK = 0x10, 0x20, 0x30, 0x40
PINGREQ, PINGRESP, DISCONNECT = 0xC0, 0xD0, 0xE0
CONNACK_CODES = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorised",
}


class LoadOptionError(ValueError):
    """An option the load generator cannot run with; the message says what to change."""


class BrokerUnreachableError(ConnectionError):
    """The broker could not be connected to (or refused the connection); the message names it."""


# --- options and reports ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadConfig:
    """Everything one load run needs; `check()` refuses what cannot work before anything starts."""

    host: str = "127.0.0.1"
    port: int = 1883
    devices: int = 100_000
    rate: float = 0.0  # messages/s in total; 0 = as fast as the broker acknowledges
    duration: float = 30.0  # seconds: always a bound
    messages: int | None = None  # total count: an optional second bound
    processes: int = 0  # 0 = os.cpu_count()
    connections_per_process: int = 1
    qos: int = 1
    max_inflight: int = DEFAULT_MAX_INFLIGHT
    site: str = "load"
    prefix: str = "fw/v1"
    id_prefix: str = "load"
    profile: str = DEFAULT_PROFILE
    seed: int = 0
    drain_timeout: float = DRAIN_TIMEOUT_S

    @property
    def n_processes(self) -> int:
        """Worker processes: the option, or one per CPU (never more than there are devices)."""
        return self.processes or min(os.cpu_count() or 1, max(1, self.devices))

    @property
    def broker_url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def check(self) -> None:
        """Raise LoadOptionError naming the option and what to do."""
        if self.devices < 1:
            raise LoadOptionError(f"--devices must be at least 1, got {self.devices}")
        if not self.duration > 0 or not math.isfinite(self.duration):
            raise LoadOptionError(f"--duration must be a positive number of seconds, got {self.duration}")
        if self.messages is not None and self.messages < 1:
            raise LoadOptionError(f"--messages must be at least 1 (or left out), got {self.messages}")
        if self.rate < 0 or not math.isfinite(self.rate):
            raise LoadOptionError(
                f"--rate must be >= 0 messages/s (0 = as fast as possible), got {self.rate}"
            )
        if self.qos not in (0, 1):
            raise LoadOptionError(f"--qos must be 0 or 1, got {self.qos}")
        if not 1 <= self.max_inflight <= MQTT_MAX_INFLIGHT:
            raise LoadOptionError(
                f"--max-inflight must be between 1 and {MQTT_MAX_INFLIGHT:,}, got {self.max_inflight:,}: "
                f"MQTT packet ids are 16-bit, and paho and libmosquitto stall above {MQTT_MAX_INFLIGHT:,} "
                "unacknowledged messages; the default 1,000 is plenty"
            )
        if self.processes < 0 or self.connections_per_process < 1:
            raise LoadOptionError("--processes must be >= 1 and --connections-per-process >= 1")
        if self.n_processes * self.connections_per_process > self.devices:
            raise LoadOptionError(
                f"{self.n_processes} processes x {self.connections_per_process} connections need at least "
                f"as many devices, got --devices {self.devices}: use fewer processes or more devices"
            )
        for name, value in (("--site", self.site), ("device id prefix", self.id_prefix)):
            if not re.match(ID_RE, value):
                raise LoadOptionError(f"{name} {value!r} must be a registry id (letters, digits, _ . -)")
        if not self.prefix or any(c in self.prefix for c in "+#") or self.prefix.strip("/") != self.prefix:
            raise LoadOptionError(f"--prefix {self.prefix!r} must be topic levels like fw/v1, no wildcards")
        if not self.drain_timeout > 0:
            raise LoadOptionError("the drain timeout must be positive")


@dataclass
class ProcessReport:
    """What one worker process did."""

    process: int
    devices: int
    connections: int
    qos: int = 1
    sent: int = 0
    acked: int = 0  # PUBACKs received (QoS 1); 0 at QoS 0
    duration_s: float = 0.0  # from the common start to the last acknowledgement
    max_inflight_seen: int = 0  # the most unacknowledged messages on any one of its connections
    cpu_s: float = 0.0  # CPU time the worker spent from the start to the end of its drain
    error: str | None = None
    unreachable: bool = False  # the error is that the broker could not be connected to

    @property
    def rate(self) -> float:
        """Achieved messages/s: acknowledged (QoS 1) or sent (QoS 0) over the duration."""
        done = self.acked if self.qos else self.sent
        return done / self.duration_s if self.duration_s > 0 else 0.0


@dataclass
class LoadReport:
    """The machine-readable summary of a run (the CLI's --json prints `as_dict()`)."""

    broker: str
    devices: int
    qos: int
    max_inflight: int
    rate_target: float
    processes: list[ProcessReport] = field(default_factory=list)
    started_at: float = 0.0  # epoch seconds
    interrupted: bool = False

    @property
    def sent(self) -> int:
        return sum(p.sent for p in self.processes)

    @property
    def acked(self) -> int:
        return sum(p.acked for p in self.processes)

    @property
    def duration_s(self) -> float:
        return max((p.duration_s for p in self.processes), default=0.0)

    @property
    def rate(self) -> float:
        """Total achieved messages/s: all acknowledged (QoS 1) or sent (QoS 0) over the longest worker."""
        done = self.acked if self.qos == 1 else self.sent
        return done / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def max_inflight_seen(self) -> int:
        return max((p.max_inflight_seen for p in self.processes), default=0)

    @property
    def cpu_us_per_message(self) -> float:
        """The generator's own CPU time per message sent, all workers together."""
        return 1e6 * sum(p.cpu_s for p in self.processes) / self.sent if self.sent else 0.0

    @property
    def errors(self) -> list[str]:
        return [f"process {p.process}: {p.error}" for p in self.processes if p.error]

    @property
    def complete(self) -> bool:
        """Every sent message was acknowledged (QoS 1), and no worker failed."""
        return not self.errors and (self.qos == 0 or self.acked == self.sent)

    def as_dict(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in asdict(self).items() if k != "processes"},
            "sent": self.sent,
            "acked": self.acked,
            "duration_s": round(self.duration_s, 3),
            "rate": round(self.rate, 1),
            "max_inflight_seen": self.max_inflight_seen,
            "cpu_us_per_message": round(self.cpu_us_per_message, 2),
            "complete": self.complete,
            "errors": self.errors,
            "processes": [
                asdict(p)
                | {"duration_s": round(p.duration_s, 3), "cpu_s": round(p.cpu_s, 3), "rate": round(p.rate, 1)}
                for p in self.processes
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)


# --- devices, topics and payloads --------------------------------------------------------------------


def device_id(config: LoadConfig, index: int) -> str:
    """`load-000001` for device index 0: ids keep a fixed width so they sort as they count."""
    width = max(6, len(str(config.devices)))
    return f"{config.id_prefix}-{index + 1:0{width}d}"


def shard(n: int, parts: int) -> list[range]:
    """Split range(n) into `parts` contiguous ranges whose sizes differ by at most one."""
    bounds = np.linspace(0, n, parts + 1).round().astype(int).tolist()
    return [range(a, b) for a, b in pairwise(bounds)]


def _decimals(resolution: float) -> int:
    """Digits after the point needed to write multiples of the resolution exactly (0.25 -> 2)."""
    return next((d for d in range(10) if abs(round(resolution, d) - resolution) < 1e-12), 10)


@dataclass(frozen=True)
class ChannelTable:
    """Every value a channel can take, written once: the steps lo..hi of its resolution as JSON bytes.

    A device's value is then an index into `text` (a baseline step plus rounded noise), so writing a
    reading costs a table look-up instead of float formatting.
    """

    name: str
    step_lo: int  # the range in whole resolution steps
    step_hi: int
    text: npt.NDArray[np.object_]  # bytes per step - step_lo
    length: npt.NDArray[np.int64]

    @classmethod
    def build(cls, name: str, channel: Channel) -> ChannelTable:
        res = channel.resolution
        lo = math.ceil(channel.range[0] / res - 1e-9)
        hi = math.floor(channel.range[1] / res + 1e-9)
        if hi - lo > 5_000_000:
            raise LoadOptionError(f"channel {name!r} has {hi - lo:,} steps: too fine for load mode's tables")
        d = _decimals(res)
        text = [f"{k * res:.{d}f}".encode() for k in range(lo, hi + 1)]
        return cls(name, lo, hi, np.array(text, dtype=object), np.array([len(t) for t in text]))


class PacketBuilder:
    """Builds the PUBLISH packets of one connection's devices, round-robin, a batch at a time.

    Per device it keeps the topic (already encoded as the packet's topic field), a baseline step per
    channel and a signal strength; noise is drawn per batch with numpy. Each packet is then one bytes
    formatting of pre-written pieces, its length computed with numpy beforehand.

    There is no battery field: the service does not need one, and without it a packet stays within
    127 bytes, so its MQTT length fits one byte; mosquitto 2.0 reads a packet's length a byte per
    read(), so that saves the broker a system call per message.
    """

    def __init__(self, config: LoadConfig, profile: Profile, devices: range) -> None:
        self.qos = config.qos
        self.n = len(devices)
        self.rng = np.random.default_rng([config.seed, devices.start])
        topics = [f"{config.prefix}/{config.site}/{device_id(config, i)}/telemetry".encode() for i in devices]
        self.topic_field = np.array([len(t).to_bytes(2, "big") + t for t in topics], dtype=object)
        self.topic_len = np.array([len(t) for t in self.topic_field], dtype=np.int64)
        self.tables = [ChannelTable.build(name, ch) for name, ch in profile.channels.items()]
        self.base: list[npt.NDArray[np.int64]] = []  # baseline per device, in resolution steps
        self.noise: list[float] = []  # standard deviation, in resolution steps
        for table, (name, ch) in zip(self.tables, profile.channels.items(), strict=True):
            lo, hi, sd = BASELINES.get(name, (*_low_band(ch), 2 * ch.resolution))
            steps = np.rint(self.rng.uniform(lo, hi, self.n) / ch.resolution)
            self.base.append(np.clip(steps, table.step_lo, table.step_hi).astype(np.int64))
            self.noise.append(sd / ch.resolution)
        self.rssi_base = self.rng.uniform(-95.0, -60.0, self.n)
        self.rssi_text = np.array([b"%d" % r for r in range(-127, 1)], dtype=object)  # index: rssi + 127
        self.rssi_len = np.array([len(t) for t in self.rssi_text], dtype=np.int64)
        values = ",".join(f'"{t.name}":%b' for t in self.tables)
        payload = ('{"ts":%b,"seq":%d,"v":{' + values + '},"rssi":%b}').encode()
        self.payload_fixed = len(payload) - 2 * (len(self.tables) + 3)  # without its 2-byte placeholders
        # fixed header (type and remaining length), topic field, packet id (QoS 1 only), payload
        self.template = b"%b%b" + (b"%b" if self.qos else b"") + payload
        self.header = header_table(PUBLISH | (self.qos << 1))
        self.cursor = 0  # messages built so far: device cursor % n, in round cursor // n
        self.seq_start = int((time.time() - SEQ_EPOCH) * 10)

    def seq_of(self, position: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """A device's seq is its round number counted from the run's start in tenths of a second
        since 2026, so a rerun against the same service continues above the last run's numbers
        (unless a device sent more than 10 messages/s) instead of being dropped as duplicates."""
        return self.seq_start + position // self.n

    def build(self, count: int, packet_ids: npt.NDArray[np.object_] | None) -> bytes:
        """The next `count` PUBLISH packets as one buffer (with their packet ids at QoS 1)."""
        position = self.cursor + np.arange(count, dtype=np.int64)
        self.cursor += count
        dev = position % self.n
        seq = self.seq_of(position)
        ts = b"%.3f" % time.time()  # one clock read per batch: the batch is built within a millisecond
        length = self.topic_len[dev] + (self.payload_fixed + len(ts) + (2 if self.qos else 0)) + _digits(seq)
        values = []
        for table, base, sd in zip(self.tables, self.base, self.noise, strict=True):
            steps = base[dev]
            if sd > 0:
                noise = np.clip(self.rng.normal(0.0, sd, count), -NOISE_CLIP * sd, NOISE_CLIP * sd)
                steps = np.clip(steps + np.rint(noise).astype(np.int64), table.step_lo, table.step_hi)
            index = steps - table.step_lo
            values.append(table.text[index].tolist())
            length += table.length[index]
        rssi = np.rint(self.rssi_base[dev] + self.rng.normal(0.0, 2.0, count)).astype(np.int64)
        rssi = np.clip(rssi, -127, 0) + 127
        length += self.rssi_len[rssi]
        columns: list[Iterable[object]] = [self.header[length].tolist(), self.topic_field[dev].tolist()]
        if packet_ids is not None:
            columns.append(packet_ids.tolist())
        columns += [repeat(ts, count), seq.tolist(), *values, self.rssi_text[rssi].tolist()]
        template = self.template
        return b"".join([template % row for row in zip(*columns, strict=False)])  # repeat() is endless


def _low_band(channel: Channel) -> tuple[float, float]:
    """A quiet baseline for a channel without a known one: 5-15 % up its range."""
    lo, hi = channel.range
    return lo + 0.05 * (hi - lo), lo + 0.15 * (hi - lo)


def _digits(n: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """How many characters `%d` writes for each non-negative integer."""
    return np.maximum(1, np.searchsorted(_POW10, n, side="right"))


_POW10 = np.array([10**k for k in range(19)], dtype=np.int64)


@functools.cache
def header_table(first: int, longest: int = 1 << 16) -> npt.NDArray[np.object_]:
    """Fixed headers (first byte + remaining length) for every packet length up to `longest`."""
    return np.array([bytes([first]) + remaining_length(n) for n in range(longest)], dtype=object)


PACKET_IDS = np.array([i.to_bytes(2, "big") for i in range(1 << 16)], dtype=object)


# --- the MQTT connection ---------------------------------------------------------------------------


def connect_packet(client_id: str, keepalive: int = KEEPALIVE_S) -> bytes:
    """CONNECT, MQTT 3.1.1, clean session, no will, no credentials."""
    cid = client_id.encode()
    body = b"\x00\x04MQTT\x04\x02" + keepalive.to_bytes(2, "big") + len(cid).to_bytes(2, "big") + cid
    return bytes([CONNECT]) + remaining_length(len(body)) + body


def open_connection(
    host: str, port: int, client_id: str, timeout: float = CONNECT_TIMEOUT_S
) -> socket.socket:
    """A TCP connection with a completed MQTT handshake, or BrokerUnreachableError saying why."""
    url = f"mqtt://{host}:{port}"
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise BrokerUnreachableError(
            f"cannot reach the MQTT broker at {url}: {exc.strerror or exc}; check --broker"
        ) from None
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(connect_packet(client_id))
        ack = b""
        while len(ack) < 4:
            chunk = sock.recv(4 - len(ack))
            if not chunk:
                raise BrokerUnreachableError(f"{url} closed the connection before CONNACK; is it MQTT?")
            ack += chunk
    except (OSError, BrokerUnreachableError) as exc:
        sock.close()
        if isinstance(exc, BrokerUnreachableError):
            raise
        raise BrokerUnreachableError(f"no MQTT handshake with {url}: {exc}; check --broker") from None
    if ack[0] != CONNACK or ack[3] != 0:
        sock.close()
        reason = CONNACK_CODES.get(ack[3], f"code {ack[3]}") if ack[0] == CONNACK else f"packet {ack[0]:#x}"
        raise BrokerUnreachableError(f"{url} refused the connection: {reason}")
    sock.setblocking(False)
    _quickack(sock)
    return sock


def check_broker(host: str, port: int) -> None:
    """Connect and disconnect once, so a wrong --broker fails before any worker starts."""
    sock = open_connection(host, port, f"fw-load-check-{uuid.uuid4().hex[:8]}")
    with contextlib.suppress(OSError):
        sock.setblocking(True)
        sock.sendall(bytes([DISCONNECT, 0]))
    sock.close()


class ProtocolError(ConnectionError):
    """The broker sent something a publisher never expects, or closed the connection."""


class Publisher:
    """One MQTT connection publishing its builder's devices with at most `max_inflight` unacknowledged.

    Non-blocking, and frugal with system calls because the broker needs the CPU more: a batch goes
    out only once the window has room for a whole one, PUBACKs are read only when the window lacks
    that room, and `wait_acks` asks the kernel (SO_RCVLOWAT) to wake the worker only once enough
    PUBACKs for the next batch have arrived, not at every single one.
    """

    def __init__(self, sock: socket.socket, builder: PacketBuilder, max_inflight: int) -> None:
        self.sock = sock
        self.builder = builder
        self.qos = builder.qos
        self.window = max_inflight
        self.batch = min(BATCH, max_inflight)
        self.pending = np.zeros(1 << 16, dtype=np.bool_)  # packet id -> awaiting its PUBACK
        self.next_id = 1
        self.out = memoryview(b"")
        self.rest = b""  # an incomplete packet at the end of the last read
        self.sent = 0
        self.acked = 0
        self.max_inflight_seen = 0
        self.pong_wanted = False
        self.last_write = time.monotonic()
        self.last_ack = 0.0
        self.lowat = 1

    @property
    def inflight(self) -> int:
        return self.sent - self.acked if self.qos else 0

    def room(self) -> int:
        """How many more messages may be sent now: the window's free part (unbounded at QoS 0)."""
        if self.out:
            return 0  # the previous batch is still being written
        return self.window - self.inflight if self.qos else self.batch

    def ready(self, remaining: int | None) -> int:
        """How many to send now: a whole batch (or what is left of the quota), else 0."""
        want = self.batch if remaining is None else min(self.batch, remaining)
        room = self.room()
        if room < want and not self.out and self.qos:
            self.read()
            room = self.room()
        return want if room >= want else 0

    def wait_acks(self, remaining: int | None) -> bool:
        """Before sleeping: whether to wake for input, and if so only once the PUBACKs the next batch
        needs are in (4 bytes each). When the window has room the worker is waiting for tokens
        instead: the PUBACKs that are in are read now, and the worker wakes for the tokens."""
        want = self.batch if remaining is None else min(self.batch, remaining)
        missing = want - self.room() if self.qos and not self.out else 0
        if missing <= 0 and self.inflight:
            self.read()
        self.set_lowat(4 * missing if missing > 0 else 1)
        return missing > 0 or self.pong_wanted

    def set_lowat(self, nbytes: int) -> None:
        if nbytes != self.lowat:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, nbytes)
            self.lowat = nbytes

    def publish(self, count: int) -> None:
        """Build `count` packets and start writing them; at QoS 1 they take the next free packet ids."""
        ids = None
        if self.qos:
            pid = (self.next_id - 1 + np.arange(count)) % MQTT_MAX_INFLIGHT + 1
            busy = self.pending[pid]
            if busy.any():  # only if the broker acknowledged out of order: wait for that id
                count = int(np.argmax(busy))
                pid = pid[:count]
                if not count:
                    return
            self.pending[pid] = True
            self.next_id = int(pid[-1]) % MQTT_MAX_INFLIGHT + 1
            ids = PACKET_IDS[pid]
        self.out = memoryview(self.builder.build(count, ids))
        self.sent += count
        self.max_inflight_seen = max(self.max_inflight_seen, self.inflight)
        self.flush()

    def flush(self) -> bool:
        """Write as much of the pending output as the socket accepts; True if anything was written."""
        if not self.out:
            return False
        try:
            n = self.sock.send(self.out)
        except BlockingIOError:
            return False
        self.out = self.out[n:]
        self.last_write = time.monotonic()
        return n > 0

    def ping(self) -> None:
        """PINGREQ: keeps an idle connection alive, and at the end proves the broker read everything
        before it (it answers in order)."""
        self.out = memoryview(bytes(self.out) + bytes([PINGREQ, 0]))
        self.pong_wanted = True
        self.flush()

    def read(self) -> int:
        """Parse whatever has arrived; returns the number of PUBACKs."""
        try:
            data = self.sock.recv(1 << 18)
        except BlockingIOError:
            return 0
        if not data:
            raise ProtocolError("the broker closed the connection")
        # Acknowledge at once: mosquitto writes each PUBACK on its own without TCP_NODELAY, so Nagle
        # holds the next ones until our TCP ACK; a delayed ACK would stall the window (measured: the
        # rate fell from ~50,000 to ~18,000 msg/s). Linux clears the flag again, so it is renewed here.
        _quickack(self.sock)
        if self.rest:
            data, self.rest = self.rest + data, b""
        return self._parse(data)

    def _parse(self, data: bytes) -> int:
        acks = 0
        i = 0
        while i < len(data):
            run = _puback_run(data, i)
            if run:
                ids = np.frombuffer(data, dtype=">u2", count=2 * run, offset=i)[1::2]
                if not self.pending[ids].all() or np.unique(ids).size != run:
                    raise ProtocolError("PUBACK for a packet id that was not in flight")
                self.pending[ids] = False
                acks += run
                i += 4 * run
                continue
            size = _packet_size(data, i)
            if size is None or i + size > len(data):
                self.rest = data[i:]
                break
            if data[i] != PINGRESP:  # every well-formed PUBACK was taken by _puback_run
                raise ProtocolError(f"unexpected MQTT packet {data[i : i + size]!r} from the broker")
            self.pong_wanted = False
            i += size
        if acks:
            self.acked += acks
            self.last_ack = time.monotonic()
        return acks

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.setblocking(True)
            self.sock.settimeout(1.0)
            self.sock.sendall(bytes(self.out) + bytes([DISCONNECT, 0]))
        self.sock.close()


def _quickack(sock: socket.socket) -> None:
    if hasattr(socket, "TCP_QUICKACK"):  # Linux only; elsewhere delayed ACKs may slow the window
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


def _puback_run(data: bytes, start: int) -> int:
    """How many complete PUBACKs (4 bytes each: 0x40 0x02 id id) follow `start`, found with numpy."""
    whole = (len(data) - start) // 4
    if not whole:
        return 0
    head = np.frombuffer(data, dtype=np.uint8, count=4 * whole, offset=start).reshape(whole, 4)[:, :2]
    ok = (head[:, 0] == PUBACK) & (head[:, 1] == 2)
    return whole if ok.all() else int(np.argmin(ok))


def _packet_size(data: bytes, start: int) -> int | None:
    """The whole length of the packet at `start`, or None if its header is not complete yet."""
    value, shift = 0, 0
    for k in range(1, 5):
        if start + k >= len(data):
            return None
        byte = data[start + k]
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return 1 + k + value
    raise ProtocolError("malformed remaining length from the broker")


# --- the worker process ----------------------------------------------------------------------------


class TokenBucket:
    """At most `rate` messages/s on average (0 = unlimited), released a batch at a time.

    Tokens accrue continuously up to 50 ms worth; a caller gets tokens only once there are enough
    for the batch it wants (or the bucket is full), so a worker spinning on a slow rate sends a few
    large writes instead of many one-message ones.
    """

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1, int(rate * 0.05))
        self.tokens = float(self.capacity)  # starts full, so the first batch goes at once
        self.need = 1
        self.last = time.monotonic()

    def take(self, want: int, now: float) -> int:
        if not self.rate:
            return want
        self.tokens = min(float(self.capacity), self.tokens + (now - self.last) * self.rate)
        self.last = now
        self.need = min(want, self.capacity)
        if self.tokens < self.need:
            return 0
        n = min(want, int(self.tokens))
        self.tokens -= n
        return n

    def wait(self) -> float:
        """Seconds until the batch asked for last may go."""
        return 0.0 if not self.rate else max(0.0, (self.need - self.tokens) / self.rate)


@dataclass(frozen=True)
class _Shared:
    """What the parent hands each worker besides its config: counters, start and stop signals."""

    counters: SynchronizedArray[int]  # per process: sent, acked, inflight
    results: mp.Queue[tuple[str, int, Any]]
    go: Event
    stop: Event


def worker(config: LoadConfig, index: int, shared: _Shared) -> None:
    """Entry point of one worker process: connect its shard, wait for the common start, publish."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it sets `stop`, we drain
    devices = shard(config.devices, config.n_processes)[index]
    report = ProcessReport(index, len(devices), config.connections_per_process, config.qos)
    publishers: list[Publisher] = []
    try:
        profile = load_profiles()[config.profile]
        run = uuid.uuid4().hex[:6]
        for c, part in enumerate(shard(len(devices), config.connections_per_process)):
            sub = range(devices.start + part.start, devices.start + part.stop)
            builder = PacketBuilder(config, profile, sub)
            sock = open_connection(config.host, config.port, f"fw-load-{run}-{index}-{c}")
            publishers.append(Publisher(sock, builder, config.max_inflight))
        shared.results.put(("ready", index, None))
        if not shared.go.wait(STARTUP_TIMEOUT_S):
            return
        _run(config, index, publishers, shared, report)
    except BrokerUnreachableError as exc:
        report.error, report.unreachable = str(exc), True
    except Exception as exc:  # reported to the parent, which shows it with the run's report
        report.error = f"{type(exc).__name__}: {exc}"
    finally:
        for p in publishers:
            report.sent += p.sent
            report.acked += p.acked
            report.max_inflight_seen = max(report.max_inflight_seen, p.max_inflight_seen)
            p.close()
        shared.results.put(("done", index, asdict(report)))


def _quota(config: LoadConfig, index: int) -> int | None:
    if config.messages is None:
        return None
    base, extra = divmod(config.messages, config.n_processes)
    return base + (index < extra)


def _run(
    config: LoadConfig, index: int, pubs: list[Publisher], shared: _Shared, report: ProcessReport
) -> None:
    """Publish until the duration or the message quota is reached, then wait for the last PUBACKs."""
    start, cpu = time.monotonic(), time.process_time()
    deadline = start + config.duration
    remaining = _quota(config, index)
    bucket = TokenBucket(config.rate / config.n_processes)
    counters, base = shared.counters, 3 * index
    while remaining != 0 and not shared.stop.is_set():
        now = time.monotonic()
        if now >= deadline:
            break
        progressed = False
        for p in pubs:
            progressed |= p.flush()
            want = p.ready(remaining)
            n = bucket.take(want, now) if want else 0
            if n:
                p.publish(n)
                progressed = True
                if remaining is not None:
                    remaining -= n
            elif now - p.last_write > KEEPALIVE_S / 2 and not p.pong_wanted:
                p.ping()
        _publish_counters(counters, base, pubs)
        if not progressed:
            readers = [p for p in pubs if p.wait_acks(remaining)]
            # Waiting for tokens, wake at least every 2 ms to read PUBACKs: reading re-arms the quick
            # TCP ACKs mosquitto's next PUBACKs wait for (see Publisher.read).
            unread = any(p.inflight and p not in readers for p in pubs)
            nap = min(max(bucket.wait(), 0.0005), 0.002 if unread else 0.05)
            _wait(pubs, readers, min(nap, max(0.0, deadline - now)))
    _drain(pubs, config.drain_timeout, counters, base)
    report.cpu_s = time.process_time() - cpu
    end = max(p.last_ack for p in pubs) if config.qos else time.monotonic()
    report.duration_s = max(0.0, end - start) if end else time.monotonic() - start
    _publish_counters(counters, base, pubs)


def _drain(pubs: list[Publisher], timeout: float, counters: SynchronizedArray[int], base: int) -> None:
    """Write what is left and wait for every PUBACK (QoS 1) or a PINGRESP (QoS 0: the broker answers
    in order, so it has read every message before it)."""
    if pubs[0].qos == 0:
        for p in pubs:
            p.ping()
    give_up = time.monotonic() + timeout
    for p in pubs:
        p.set_lowat(1)
    while time.monotonic() < give_up:
        busy = [p for p in pubs if p.out or p.inflight or p.pong_wanted]
        if not busy:
            break
        for p in busy:
            p.flush()
            p.read()
        _publish_counters(counters, base, pubs)
        _wait(busy, busy, 0.05)
    for p in pubs:
        if p.qos == 0:
            p.last_ack = time.monotonic()


def _wait(pubs: list[Publisher], readers: list[Publisher], timeout: float) -> None:
    """Sleep until a reader has input, a connection with output left can take more, or the timeout."""
    select.select([p.sock for p in readers], [p.sock for p in pubs if p.out], [], timeout)


def _publish_counters(counters: SynchronizedArray[int], base: int, pubs: list[Publisher]) -> None:
    counters[base] = sum(p.sent for p in pubs)
    counters[base + 1] = sum(p.acked for p in pubs)
    counters[base + 2] = sum(p.inflight for p in pubs)


# --- the parent: start, watch, collect --------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """A snapshot of the whole run while it goes, for a progress display."""

    elapsed_s: float
    sent: int
    acked: int
    inflight: int
    rate: float  # messages/s over the last snapshot interval
    duration_s: float


ProgressCallback = Callable[[Progress], None]


def run_load(
    config: LoadConfig, on_progress: ProgressCallback | None = None, interval: float = 0.25
) -> LoadReport:
    """Run one bounded load test and return its report.

    Raises LoadOptionError for options that cannot work and BrokerUnreachableError when the broker
    cannot be reached; a worker failing mid-run is recorded in the report (`errors`, `complete`).
    """
    config.check()
    check_profile(config)
    check_broker(config.host, config.port)
    ctx = mp.get_context("spawn")
    n = config.n_processes
    shared = _Shared(ctx.Array("q", 3 * n, lock=False), ctx.Queue(), ctx.Event(), ctx.Event())
    report = LoadReport(config.broker_url, config.devices, config.qos, config.max_inflight, config.rate)
    procs = [ctx.Process(target=worker, args=(config, i, shared), daemon=True) for i in range(n)]
    for proc in procs:
        proc.start()
    done: dict[int, ProcessReport] = {}
    try:
        _await_ready(procs, shared, done)
        report.started_at = time.time()
        shared.go.set()
        _watch(config, procs, shared, done, on_progress, interval)
    except KeyboardInterrupt:  # stop early, but still collect what the workers did
        report.interrupted = True
        shared.stop.set()
        shared.go.set()
        _watch(config, procs, shared, done, None, interval)
    finally:
        shared.stop.set()
        shared.go.set()
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
    report.processes = [
        done.get(i) or ProcessReport(i, 0, 0, config.qos, error="exited without a report") for i in range(n)
    ]
    return report


def check_profile(config: LoadConfig) -> Profile:
    """The profile to publish, or LoadOptionError naming the known ones."""
    profiles = load_profiles()
    if config.profile not in profiles:
        known = ", ".join(sorted(profiles))
        raise LoadOptionError(f"--profile {config.profile!r} is not a device profile; known: {known}")
    profile = profiles[config.profile]
    for name, channel in profile.channels.items():
        ChannelTable.build(name, channel)  # too fine a channel fails here, not in every worker
    return profile


def _receive(procs: Sequence[BaseProcess], shared: _Shared, timeout: float) -> list[tuple[str, int, Any]]:
    """The next message from the workers, if one comes within `timeout`; raises RuntimeError if
    they all died without a word (a crash before they could report)."""
    try:
        return [shared.results.get(timeout=timeout)]
    except queue.Empty:
        if not any(p.is_alive() for p in procs):
            raise RuntimeError("every load worker exited unexpectedly") from None
        return []


def _await_ready(procs: Sequence[BaseProcess], shared: _Shared, done: dict[int, ProcessReport]) -> None:
    """Wait until every worker is connected; a worker that cannot connect ends the run at once."""
    ready: set[int] = set()
    give_up = time.monotonic() + STARTUP_TIMEOUT_S
    while len(ready) < len(procs):
        if time.monotonic() > give_up:
            raise RuntimeError(f"load workers not ready after {STARTUP_TIMEOUT_S:.0f} s")
        for kind, index, payload in _receive(procs, shared, 0.5):
            if kind == "ready":
                ready.add(index)
                continue
            failed = done[index] = ProcessReport(**payload)
            if failed.unreachable:
                raise BrokerUnreachableError(str(failed.error))
            raise RuntimeError(f"load worker {index} stopped before the start: {failed.error}")


def _watch(
    config: LoadConfig,
    procs: Sequence[BaseProcess],
    shared: _Shared,
    done: dict[int, ProcessReport],
    on_progress: ProgressCallback | None,
    interval: float,
) -> None:
    """Collect final reports, calling `on_progress` every `interval` seconds until all are in."""
    start = time.monotonic()
    give_up = start + config.duration + config.drain_timeout + 30.0
    last_t, last_done = start, 0
    while len(done) < len(procs) and time.monotonic() < give_up:
        for kind, index, payload in _receive(procs, shared, interval):
            if kind == "done":
                done[index] = ProcessReport(**payload)
        if not any(p.is_alive() for p in procs) and shared.results.empty():
            break
        now = time.monotonic()
        if on_progress is not None and now - last_t >= interval:
            c = shared.counters[:]
            sent, acked, inflight = sum(c[0::3]), sum(c[1::3]), sum(c[2::3])
            finished = acked if config.qos else sent
            rate = (finished - last_done) / max(now - last_t, 1e-9)
            last_t, last_done = now, finished
            on_progress(Progress(now - start, sent, acked, inflight, rate, config.duration))


# --- the registry of the simulated devices -----------------------------------------------------------


def registry_layout(config: LoadConfig) -> tuple[list[SiteSpec], list[Device]]:
    """One site, one building, floors of 20 zones of 50 devices each, in device order."""
    zones = math.ceil(config.devices / DEVICES_PER_ZONE)
    floors = math.ceil(zones / ZONES_PER_FLOOR)
    fw, zw = len(str(floors)), len(str(ZONES_PER_FLOOR))
    floor_specs = []
    for f in range(floors):
        first = f * ZONES_PER_FLOOR
        zone_specs = [
            ZoneSpec(id=f"z{z - first + 1:0{zw}d}", name=f"zone {z - first + 1}")
            for z in range(first, min(zones, first + ZONES_PER_FLOOR))
        ]
        floor_specs.append(FloorSpec(id=f"f{f + 1:0{fw}d}", name=f"{f + 1}F", zones=zone_specs))
    site = SiteSpec(
        id=config.site,
        name="load test",
        buildings=[BuildingSpec(id="b1", name="load building", floors=floor_specs)],
    )
    devices = []
    for i in range(config.devices):
        zone = i // DEVICES_PER_ZONE
        floor, z = divmod(zone, ZONES_PER_FLOOR)
        place = f"{config.site}/b1/f{floor + 1:0{fw}d}/z{z + 1:0{zw}d}"
        devices.append(Device(id=device_id(config, i), profile=config.profile, place=place))
    return [site], devices


def write_registry(config: LoadConfig, path: Path) -> None:
    """Write the registry YAML of exactly the devices this config simulates, so a firewatch service
    started with it accepts every message of the load test."""
    sites, devices = registry_layout(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_registry(sites, devices), encoding="utf-8")


# --- what a person reads ---------------------------------------------------------------------------


def report_table(report: LoadReport) -> Table:
    """The achieved-rate report: one row per worker process and the total."""
    qos1 = report.qos == 1
    title = (
        f"{report.devices:,} devices -> {report.broker}, QoS {report.qos}, "
        f"max in-flight {report.max_inflight:,}/connection, target "
        + (f"{report.rate_target:,.0f} msg/s" if report.rate_target else "as fast as possible")
    )
    table = Table(title=title)
    for name in ("process", "devices", "sent", "acked", "duration", "msg/s", "max in-flight"):
        table.add_column(name, justify="left" if name == "process" else "right")

    def row(name: str, devices: int, sent: int, acked: int, duration: float, rate: float, peak: int) -> None:
        table.add_row(
            name,
            f"{devices:,}",
            f"{sent:,}",
            f"{acked:,}" if qos1 else "- (QoS 0)",
            f"{duration:.2f} s",
            f"{rate:,.0f}",
            f"{peak:,}" if qos1 else "-",
        )

    for p in report.processes:
        row(str(p.process), p.devices, p.sent, p.acked, p.duration_s, p.rate, p.max_inflight_seen)
    table.add_section()
    row(
        "total",
        report.devices,
        report.sent,
        report.acked,
        report.duration_s,
        report.rate,
        report.max_inflight_seen,
    )
    return table


def verdict(report: LoadReport) -> str:
    """One line saying whether the run is complete, and if not, what is missing."""
    if report.errors:
        return "[red]failed[/]: " + escape("; ".join(report.errors))
    if not report.complete:
        missing = report.sent - report.acked
        return f"[red]incomplete[/]: {missing:,} of {report.sent:,} messages were never acknowledged"
    what = "acknowledged" if report.qos else "sent"
    stopped = " (interrupted)" if report.interrupted else ""
    return f"[green]all {report.sent:,} messages {what}[/]{stopped}: {report.rate:,.0f} msg/s achieved"
