"""A city of small sites on a clustered deployment (docs/scale.md): the registry, and devices that
publish to whichever engine node answers.

Each site is one small building: one floor, two zones, photoelectric smoke detectors. A site is
one engine partition (the engine maps by site), so many sites spread over the workers.

`CityFleet` publishes each device's readings over MQTT QoS 1 to one of the engine's MQTT
listeners and keeps every message until its PUBACK. When its node goes away it connects to the
next one and publishes again every message not yet acknowledged — as a device whose broker
failed would — so a message may reach the engine twice, never zero times; firewatch stores a
reading by its key (device, channel, timestamp), so twice is once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from core.registry import BuildingSpec, Device, FloorSpec, Registry, RoomSpec, SiteSpec, ZoneSpec

PROFILE = "smoke-photoelectric"
CLEAN_AIR = 0.02  # dB/m: well under the pre-alarm level (0.08)
SMOKE = 0.4  # dB/m: over the fire level (0.15 dB/m, GB 4715-2024 §5.7)


def site_id(i: int) -> str:
    return f"c{i:04d}"


def device_ids(sites: int, per_site: int) -> list[tuple[str, str]]:
    """(site, device) of every device, in site order."""
    return [(site_id(s), f"{site_id(s)}-smk-{d:02d}") for s in range(sites) for d in range(per_site)]


def city_registry(sites: int, per_site: int) -> Registry:
    specs = []
    devices = []
    for s in range(sites):
        sid = site_id(s)
        zones = [
            ZoneSpec(id=f"z{z}", name=f"{z}区", rooms=[RoomSpec(id=f"r{z}01", name=f"{z}01室")])
            for z in (1, 2)
        ]
        specs.append(
            SiteSpec(
                id=sid,
                name=f"城区建筑{s + 1:04d}",
                buildings=[
                    BuildingSpec(id="b1", name="主楼", floors=[FloorSpec(id="f1", name="1F", zones=zones)])
                ],
            )
        )
        for d in range(per_site):
            z = 1 + d % 2
            devices.append(Device(id=f"{sid}-smk-{d:02d}", profile=PROFILE, place=f"{sid}/b1/f1/z{z}/r{z}01"))
    return Registry(specs, devices)


def reading(seq: int, ts: float, smoke: float) -> bytes:
    return orjson.dumps({"ts": round(ts, 3), "seq": seq, "v": {"smoke": smoke, "temp": 22.0}})


@dataclass
class FleetStats:
    published: int = 0  # distinct readings handed to MQTT
    acked: int = 0  # distinct readings acknowledged by the engine
    resent: int = 0  # publications again after a node was lost
    failovers: int = 0
    fired: set[str] = field(default_factory=set)  # devices that reported smoke


class CityFleet:
    """Every device of a city registry on one MQTT connection, failing over between engine nodes."""

    def __init__(
        self,
        ports: Sequence[int],
        devices: Sequence[tuple[str, str]],
        *,
        client_id: str = "city-fleet",
        host: str = "127.0.0.1",
    ) -> None:
        self.ports = list(ports)
        self.devices = list(devices)
        self.host = host
        self.client_id = client_id
        self.stats = FleetStats()
        self._node = 0
        self._lock = threading.Lock()
        self._unacked: dict[int, tuple[str, bytes]] = {}  # mid -> (topic, payload)
        self._early: set[int] = set()  # acknowledged before noted as sent
        self._seq = dict.fromkeys((d for _, d in self.devices), 0)
        self._client: mqtt.Client | None = None
        self._connected = threading.Event()

    # --- connection --------------------------------------------------------------------------------
    def connect(self, timeout_s: float = 60.0) -> None:
        """Connect to a node, trying each in turn, as long as `timeout_s` (a node that lost a peer
        answers CONNECT once the engine has re-elected its leaders: seconds, more under load)."""
        deadline = time.monotonic() + timeout_s
        while True:
            port = self.ports[self._node % len(self.ports)]
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2, client_id=f"{self.client_id}-{self._node}", clean_session=True
            )
            client.max_inflight_messages_set(1000)
            client.max_queued_messages_set(0)
            client.on_publish = self._on_publish
            client.on_disconnect = self._on_disconnect
            client.on_connect = lambda c, u, f, rc, p: self._connected.set() if not rc.is_failure else None
            try:
                client.connect(self.host, port, keepalive=5)
            except OSError:
                self._node += 1
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
                continue
            client.loop_start()
            if self._connected.wait(10.0):
                self._client = client
                return
            client.loop_stop()
            self._node += 1
            if time.monotonic() > deadline:
                raise ConnectionError(f"no engine node accepted a connection on ports {self.ports}")

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int, rc: object, props: object) -> None:
        if client is not self._client:
            return  # a connection given up on: what it had not acknowledged is sent again
        with self._lock:
            if self._unacked.pop(mid, None) is not None:
                self.stats.acked += 1
            else:  # acknowledged before `_publish` noted it
                self._early.add(mid)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: object, flags: object, rc: object, props: object
    ) -> None:
        if client is self._client:
            self._connected.clear()

    def fail_over(self) -> None:
        """Connect to the next node and publish again what the lost one did not acknowledge."""
        old = self._client
        self._client = None
        if old is not None:
            old.loop_stop()
            old.disconnect()
        self._node += 1
        self.stats.failovers += 1
        with self._lock:
            pending = list(self._unacked.values())
            self._unacked.clear()
            self._early.clear()
        self.connect()
        for topic, payload in pending:
            self._publish(topic, payload)
            self.stats.resent += 1

    @property
    def node_port(self) -> int:
        return self.ports[self._node % len(self.ports)]

    def close(self) -> None:
        if self._client is not None:
            self._client.loop_stop()
            self._client.disconnect()
            self._client = None

    # --- publishing --------------------------------------------------------------------------------
    def _publish(self, topic: str, payload: bytes) -> None:
        assert self._client is not None
        # Not under `_lock`: paho calls `_on_publish` holding its own lock, which `publish` takes.
        info = self._client.publish(topic, payload, qos=1)
        with self._lock:
            if info.mid in self._early:
                self._early.discard(info.mid)
                self.stats.acked += 1
            else:
                self._unacked[info.mid] = (topic, payload)

    def round(self, ts: float, smoky: Sequence[str] = ()) -> None:
        """One reading from every device at `ts`; devices in `smoky` report smoke."""
        if not self._connected.is_set():
            self.fail_over()
        fire = set(smoky)
        for site, device in self.devices:
            seq = self._seq[device] = self._seq[device] + 1
            smoke = SMOKE if device in fire else CLEAN_AIR
            self._publish(f"fw/v1/{site}/{device}/telemetry", reading(seq, ts, smoke))
            self.stats.published += 1
        self.stats.fired |= fire

    def unacked(self) -> int:
        with self._lock:
            return len(self._unacked)

    def drain(self, timeout_s: float = 20.0) -> bool:
        """Wait until every reading is acknowledged, failing over when the node is gone."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.unacked():
                return True
            if not self._connected.is_set():
                self.fail_over()
            time.sleep(0.05)
        return not self.unacked()
