"""The backlog `bench.peer_drain` has every consumer drain: smoke-detector readings in firewatch's
envelope on its real topics, in time order, and a fast QoS 1 publisher for it.

Two datasets: "crossings", where every device's smoke value crosses the profile's fire level
(0.15 dB/m, cleared below 0.10) and comes back a few times in its run, and "quiet", where every
value stays well below the pre-alarm level (0.08 dB/m).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ingest.mqtt_wire import remaining_length
from ingest.topics import MessageKind, device_topic

SITE = "bench"
PROFILE = "smoke-photoelectric"
FIRE_AT = 0.15  # smoke-photoelectric.yaml, level "alarm"
FIRE_CLEAR = 0.10
PRE_ALARM_AT = 0.08
INTERVAL_S = 10.0  # the profile's report interval
EPISODES = 3  # threshold crossings per device in the "crossings" dataset
DATASETS = ("crossings", "quiet")


def device_id(i: int) -> str:
    return f"d{i:06d}"


@dataclass(frozen=True)
class Backlog:
    """`smoke[d, k]` and `temp[d, k]` are device d's k-th reading; published reading by reading,
    all devices' k-th before any (k+1)-th, as a fleet's readings queue up during an outage."""

    smoke: npt.NDArray[np.float64]
    temp: npt.NDArray[np.float64]
    start: float  # epoch seconds of the first reading

    @property
    def devices(self) -> int:
        return int(self.smoke.shape[0])

    @property
    def per_device(self) -> int:
        return int(self.smoke.shape[1])

    def __len__(self) -> int:
        return self.devices * self.per_device

    def messages(self) -> list[tuple[bytes, bytes]]:
        """(topic, payload) in publishing order."""
        topics = [
            device_topic(SITE, device_id(d), MessageKind.TELEMETRY).encode() for d in range(self.devices)
        ]
        out: list[tuple[bytes, bytes]] = []
        for k in range(self.per_device):
            for d in range(self.devices):
                ts = self.start + k * INTERVAL_S + (d % 100) * 0.01
                payload = (
                    f'{{"ts":{ts:.2f},"seq":{k + 1},"v":{{"smoke":{self.smoke[d, k]:.3f},'
                    f'"temp":{self.temp[d, k]:.1f}}},"batt":87}}'
                )
                out.append((topics[d], payload.encode()))
        return out


def make_backlog(dataset: str, devices: int, messages: int, seed: int = 7) -> Backlog:
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    if messages % devices:
        raise ValueError(f"messages ({messages}) must be a multiple of devices ({devices})")
    per_device = messages // devices
    rng = np.random.default_rng(seed)
    # Clean air: each chamber its own level, a little noise; well under the pre-alarm level.
    base = rng.uniform(0.015, 0.035, size=(devices, 1))
    smoke = np.clip(base + rng.normal(0.0, 0.002, size=(devices, per_device)), 0.005, 0.06)
    temp = 22.0 + rng.uniform(-2.0, 2.0, size=(devices, 1)) + rng.normal(0.0, 0.2, (devices, per_device))
    if dataset == "crossings":
        # EPISODES smoke episodes per device, spread over its run after the drift detector's warm-up
        # (30 readings), each 3 to 6 readings at or over the fire level, then back to clean air.
        span = per_device // EPISODES
        for d in range(devices):
            for e in range(EPISODES):
                length = int(rng.integers(3, 7))
                lo = e * span + min(span // 3, 30)
                hi = max(lo + 1, (e + 1) * span - length - 1)
                at = int(rng.integers(lo, hi))
                smoke[d, at : at + length] = rng.uniform(0.16, 0.30, size=len(smoke[d, at : at + length]))
    return Backlog(np.round(smoke, 3), np.round(temp, 1), start=time.time() - per_device * INTERVAL_S)


def raises(values: npt.NDArray[np.float64], at: float = FIRE_AT, clear: float = FIRE_CLEAR) -> int:
    """How many times one device's series raises an alarm at `at` that clears below `clear`."""
    on, count = False, 0
    for v in values.tolist():
        if not on and v >= at:
            on, count = True, count + 1
        elif on and v < clear:
            on = False
    return count


# --- a QoS 1 publisher that keeps many messages in flight -----------------------------------------
# A small MQTT 3.1.1 client of our own, because the backlog is published once per consumer run
# (up to 18 times at full size): paho's Python loop takes tens of seconds for 200,000 messages, and
# `mosquitto_pub -l` sends to one topic per process, so readings could not be in time order.


def _string(s: bytes) -> bytes:
    return struct.pack("!H", len(s)) + s


def connect_packet(client_id: str, keepalive: int = 60) -> bytes:
    body = _string(b"MQTT") + bytes([4, 0x02]) + struct.pack("!H", keepalive) + _string(client_id.encode())
    return b"\x10" + remaining_length(len(body)) + body


def publish_packet(topic: bytes, packet_id: int, payload: bytes) -> bytes:
    body = _string(topic) + struct.pack("!H", packet_id) + payload
    return b"\x32" + remaining_length(len(body)) + body  # PUBLISH, QoS 1, no retain


class _Acks:
    """Reads CONNACK and PUBACKs off the socket in a thread and counts them."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.connected = threading.Event()
        self.count = 0
        self.error: str | None = None
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="backlog-acks", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        buf = b""
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return
                buf += data
                acks = 0
                while len(buf) >= 4:  # CONNACK and PUBACK are both 4 bytes in 3.1.1
                    kind, rest = buf[0], buf[2:4]
                    if kind == 0x20:
                        if rest[1] != 0:
                            self.error = f"CONNACK refused, code {rest[1]}"
                            return
                        self.connected.set()
                    elif kind == 0x40:
                        acks += 1
                    else:
                        self.error = f"unexpected packet type {kind:#x}"
                        return
                    buf = buf[4:]
                if acks:
                    with self.changed:
                        self.count += acks
                        self.changed.notify_all()
        except OSError as exc:
            self.error = repr(exc)
        finally:
            self.connected.set()
            with self.changed:
                self.changed.notify_all()


def publish(
    host: str, port: int, messages: list[tuple[bytes, bytes]], *, window: int = 10_000, timeout: float = 120.0
) -> float:
    """Publish every message at QoS 1 and return once the broker has acknowledged them all (so they
    are queued for every offline session); seconds taken."""
    assert window < 65_535  # packet ids in flight must stay unique
    started = time.monotonic()
    deadline = started + timeout
    with socket.create_connection((host, port), timeout=timeout) as sock:
        acks = _Acks(sock)
        sock.sendall(connect_packet(f"peer-backlog-{time.monotonic_ns() % 10**9}"))
        acks.connected.wait(timeout)
        if acks.error or not acks.connected.is_set():
            raise RuntimeError(f"backlog publisher: {acks.error or 'no CONNACK'}")
        chunk = 500
        for lo in range(0, len(messages), chunk):
            part = messages[lo : lo + chunk]
            data = b"".join(
                publish_packet(topic, (lo + j) % 65_535 + 1, payload)
                for j, (topic, payload) in enumerate(part)
            )
            with acks.changed:
                while lo + len(part) - acks.count > window and acks.error is None:
                    if not acks.changed.wait(max(0.0, deadline - time.monotonic())):
                        raise TimeoutError(f"backlog publisher: {acks.count}/{len(messages)} acknowledged")
            sock.sendall(data)
        with acks.changed:
            while acks.count < len(messages) and acks.error is None:
                if not acks.changed.wait(max(0.0, deadline - time.monotonic())):
                    raise TimeoutError(f"backlog publisher: {acks.count}/{len(messages)} acknowledged")
        if acks.error:
            raise RuntimeError(f"backlog publisher: {acks.error}")
        sock.sendall(b"\xe0\x00")  # DISCONNECT
    return time.monotonic() - started
