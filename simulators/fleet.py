"""A building's worth of simulated devices on the wire: links, delivery faults and incidents.

Wired devices sit behind their floor's gateway (one MQTT connection per floor, as a fire alarm
controller's or IoT gateway's uplink would be); wireless battery devices (tag `wireless`, NB-IoT
style) each hold their own connection with a last will, so the broker itself announces `offline`
when one drops off. A floor's power cut takes its gateway, and so its wired devices, off the air.

Delivery is imperfect the way radio and gateways are: a two-state (Gilbert-Elliott) loss model
gives bursts of lost messages on weak links, gateways repeat a message now and then (a QoS 1
retransmission the device never saw acknowledged) and sometimes deliver two out of order.

Time is the caller's: `step(t, ts)` publishes whatever is due at simulated second `t` (epoch `ts`),
so the same fleet runs in real time, compressed, or as fast as the broker takes it.
"""

from __future__ import annotations

import logging
import math
import random
import uuid
from collections import Counter, deque
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from core.domain import DeviceEventKind, DeviceKind
from core.registry import PlaceKind, Registry
from device_profiles.schema import Codec, Profile
from ingest.topics import MessageKind, device_topic
from simulators.devices import Frame, Malformed, SimDevice
from simulators.physics import (
    CableOverheat,
    DirtyChamber,
    FlamingFire,
    Gas,
    GasLeak,
    Growth,
    PumpFailure,
    Reach,
    Recording,
    SlowLeak,
    SmoulderingFire,
    SprinklerOpening,
    spread,
)

logger = logging.getLogger(__name__)

MAX_INFLIGHT = 1000  # per connection, far below the 65,535 at which paho and libmosquitto stall
WIRELESS_TAG = "wireless"
FIRE_KINDS = (DeviceKind.SMOKE, DeviceKind.HEAT, DeviceKind.SMOKE_HEAT)


class FleetError(ValueError):
    """A place or device a scenario names does not exist, or cannot suffer that incident."""


@dataclass
class LinkQuality:
    """Delivery faults of one link. Loss follows a Gilbert-Elliott chain: a good state losing
    `loss_good` of messages and a bad (fading, interference) state losing `loss_bad`, switching with
    the given per-message probabilities. Defaults are this simulator's assumptions."""

    p_good_to_bad: float = 0.0
    p_bad_to_good: float = 0.3
    loss_good: float = 0.0
    loss_bad: float = 0.6
    duplicate: float = 0.0
    reorder: float = 0.0
    bad: bool = False

    @classmethod
    def wireless(cls) -> LinkQuality:
        return cls(p_good_to_bad=0.01, loss_good=0.002, duplicate=0.002, reorder=0.002)

    @classmethod
    def wired(cls) -> LinkQuality:
        return cls(duplicate=0.0005, reorder=0.0005)

    def lost(self, rng: random.Random) -> bool:
        if self.bad:
            self.bad = rng.random() >= self.p_bad_to_good
        else:
            self.bad = rng.random() < self.p_good_to_bad
        return rng.random() < (self.loss_bad if self.bad else self.loss_good)


@dataclass
class Link:
    """One MQTT connection: a floor gateway's or a wireless device's own."""

    name: str
    devices: list[str]
    quality: LinkQuality
    will_topic: str | None = None  # a wireless device's status topic: the broker says 'offline'
    powered: bool = True
    client: mqtt.Client | None = None
    held: Frame | None = None  # a frame held back to be delivered after the next one
    pending: deque[mqtt.MQTTMessageInfo] = field(default_factory=deque)
    # The link's own draws for loss, reordering and duplication, seeded from the fleet's seed and
    # the link's name: what one link suffers depends only on what it sends, not on which other
    # devices happened to be due in the same tick of a compressed clock, so a scenario plays the
    # same losses run after run.
    rng: random.Random = field(default_factory=random.Random)


@dataclass
class FleetStats:
    published: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    malformed: Counter[str] = field(default_factory=Counter)


class Fleet:
    """Every device of a registry, simulated, and the connections they publish through."""

    def __init__(
        self,
        registry: Registry,
        profiles: dict[str, Profile],
        *,
        seed: int = 0,
        prefix: str = "fw/v1",
        qos: int = 1,
        impairments: bool = True,
    ) -> None:
        self.registry = registry
        self.prefix = prefix
        self.qos = qos
        self.rng = random.Random(seed)
        self.stats = FleetStats()
        self.devices: dict[str, SimDevice] = {}
        self.links: dict[str, Link] = {}
        self.link_of: dict[str, Link] = {}
        self.host: str | None = None
        self.port = 0
        # Devices a scenario run has claimed (simulators/claims.py): quiet here while it plays them.
        self.yielded: frozenset[str] = frozenset()
        # Rooms without detector positions get a nominal layout: 8 m between rooms (see _distance).
        self._room_rank: dict[str, int] = {}
        for device in sorted(registry.devices.values(), key=lambda d: d.id):
            loc = registry.locations[device.id]
            profile = profiles.get(device.profile)
            if profile is None:
                raise FleetError(f"device {device.id!r}: no profile {device.profile!r}")
            if profile.codec is not Codec.JSON:
                continue  # reported by a fire alarm panel (GB/T 26875.3), not published over MQTT
            room = device.place if registry.places[device.place].kind is PlaceKind.ROOM else ""
            sim = SimDevice(
                device.id,
                loc.site,
                profile,
                random.Random(self.rng.random()),
                place=device.place,
                room=room,
                position=device.position or (math.nan, math.nan),
                wireless=WIRELESS_TAG in device.tags,
                prefix=prefix,
            )
            # First reports spread over one interval, as devices powered up at different times.
            sim.next_due = self.rng.uniform(0, profile.report_interval_s)
            self.devices[device.id] = sim
            if sim.wireless:
                link = Link(
                    f"dev:{device.id}",
                    [device.id],
                    LinkQuality.wireless() if impairments else LinkQuality(),
                    will_topic=device_topic(loc.site, device.id, MessageKind.STATUS, prefix),
                    rng=random.Random(f"{seed}/dev:{device.id}"),
                )
            else:
                floor = "/".join(device.place.split("/")[:3])
                link = self.links.get(f"gw:{floor}") or Link(
                    f"gw:{floor}",
                    [],
                    LinkQuality.wired() if impairments else LinkQuality(),
                    rng=random.Random(f"{seed}/gw:{floor}"),
                )
                link.devices.append(device.id)
            self.links[link.name] = link
            self.link_of[device.id] = link
            if room:
                self._room_rank.setdefault(room, len(self._room_rank))

    # --- connections -----------------------------------------------------------------------------
    def connect(self, host: str, port: int) -> None:
        """Open every link's connection and publish the retained `online` status of its devices."""
        self.host, self.port = host, port
        # In parallel: a hospital has dozens of links, and at a compressed time scale a second
        # spent connecting them one by one is minutes of silence to the service.
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(self._open, self.links.values()))

    def _open(self, link: Link) -> None:
        link.powered = True
        if self.host is None:  # not connected (a dry run): only the bookkeeping
            return
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"fw-sim-{link.name[:40]}-{uuid.uuid4().hex[:6]}"
        )
        client.max_inflight_messages_set(MAX_INFLIGHT)
        client.max_queued_messages_set(0)
        if link.will_topic is not None:
            client.will_set(link.will_topic, b"offline", qos=1, retain=True)
        client.connect(self.host, self.port, keepalive=15)
        client.loop_start()
        link.client = client
        for device_id in link.devices:
            self._send(link, self.devices[device_id].status(True))

    def close(self) -> None:
        """Stop cleanly: gateways say their devices are going offline, then disconnect."""
        for link in self.links.values():
            client, link.client = link.client, None
            if client is None:
                continue
            for device_id in link.devices:
                client.publish(self.devices[device_id].status(False).topic, b"offline", qos=1, retain=True)
            for info in list(link.pending)[-50:]:
                if not info.is_published():
                    info.wait_for_publish(2.0)
            client.disconnect()
            client.loop_stop()

    def _kill(self, link: Link) -> None:
        """The link dies without a goodbye (power cut, radio gone): the broker notices the dead
        connection and publishes its last will, if it has one."""
        client, link.client = link.client, None
        link.powered = False
        if client is None:
            return
        client.loop_stop()
        sock = client.socket()
        if sock is not None:
            sock.close()

    def backlog(self) -> int:
        """Messages handed to the connections and not yet acknowledged by the broker."""
        total = 0
        for link in self.links.values():
            while link.pending and link.pending[0].is_published():
                link.pending.popleft()
            total += len(link.pending)
        return total

    # --- publishing ------------------------------------------------------------------------------
    def step(self, t: float, ts_origin: float) -> int:
        """Publish everything due at simulated second t; returns the frames published."""
        sent = 0
        ts = ts_origin + t
        for device in self.devices.values():
            if not device.due(t):
                continue
            if device.device_id in self.yielded:
                device.next_due = t + device.profile.report_interval_s
                continue
            link = self.link_of[device.device_id]
            if not link.powered:
                device.next_due = t + device.profile.report_interval_s
                continue
            frame = device.report(t, ts)
            if frame is not None:
                sent += self._deliver(link, frame)
        for link in self.links.values():  # a held frame waits one step at most
            if link.held is not None and link.powered:
                frame, link.held = link.held, None
                sent += self._send(link, frame)
        return sent

    def send_now(self, device_id: str, frame: Frame, *, impaired: bool = True) -> int:
        """Deliver a frame outside the report schedule (events, malformed frames)."""
        link = self.link_of[device_id]
        if not link.powered or device_id in self.yielded:
            return 0
        return self._deliver(link, frame) if impaired else self._send(link, frame)

    def _deliver(self, link: Link, frame: Frame) -> int:
        q = link.quality
        if q.lost(link.rng):
            self.stats.lost += 1
            return 0
        if link.held is None and q.reorder and link.rng.random() < q.reorder:
            link.held = frame  # goes out after the next frame on this link
            self.stats.reordered += 1
            return 0
        sent = self._send(link, frame)
        if link.held is not None:
            held, link.held = link.held, None
            sent += self._send(link, held)
        if q.duplicate and link.rng.random() < q.duplicate:
            sent += self._send(link, frame)
            self.stats.duplicated += 1
        return sent

    def _send(self, link: Link, frame: Frame) -> int:
        if link.client is None:
            return 0
        info = link.client.publish(frame.topic, frame.payload, qos=self.qos, retain=frame.retain)
        link.pending.append(info)
        self.stats.published += 1
        return 1

    def yield_to(self, claimed: frozenset[str], t: float) -> int:
        """Fall quiet for the devices a scenario run plays (claimed), resume the ones released:
        they report `online` again (the run's own devices said `offline` on leaving) and are due
        at once. Returns how many of this fleet's devices are yielded now."""
        mine = claimed & self.devices.keys()
        for device_id in sorted(self.yielded - mine):
            device = self.devices[device_id]
            device.next_due = t
            link = self.link_of[device_id]
            if link.powered and not device.silent:
                self._send(link, device.status(True))
        self.yielded = frozenset(mine)
        return len(mine)

    # --- places and devices ----------------------------------------------------------------------
    def device(self, device_id: str) -> SimDevice:
        sim = self.devices.get(device_id)
        if sim is None:
            raise FleetError(f"no simulated device {device_id!r}")
        return sim

    def devices_at(self, place: str) -> list[SimDevice]:
        """Devices at a place path or anywhere below it (a device id names that device)."""
        if place in self.devices:
            return [self.devices[place]]
        if place not in self.registry.places:
            raise FleetError(f"no place {place!r} in the registry")
        return [d for d in self.devices.values() if d.place == place or d.place.startswith(place + "/")]

    def _position(self, device: SimDevice) -> tuple[float, float] | None:
        x, y = device.position
        return None if math.isnan(x) else (x, y)

    def _distance(self, origin: SimDevice, device: SimDevice) -> float:
        a, b = self._position(origin), self._position(device)
        if a is not None and b is not None:
            return math.dist(a, b)
        # No floor plan: rooms along a corridor 8 m apart, 2 m within a room (nominal layout).
        if device.room and device.room == origin.room:
            return 0.0 if device is origin else 2.0
        ra = self._room_rank.get(origin.room, 0)
        rb = self._room_rank.get(device.room, ra + 1)
        return 4.0 + 8.0 * abs(ra - rb)

    def _origin(self, place: str, kinds: Iterable[DeviceKind]) -> tuple[SimDevice, str]:
        """The device nearest an incident's origin and the zone it is in."""
        wanted = tuple(kinds)
        here = [d for d in self.devices_at(place) if d.profile.kind in wanted]
        if not here:
            raise FleetError(f"no {'/'.join(k.value for k in wanted)} device at {place!r}")
        origin = sorted(here, key=lambda d: d.device_id)[0]
        zone = "/".join(origin.place.split("/")[:4])
        return origin, zone

    # --- incidents -------------------------------------------------------------------------------
    def flaming_fire(
        self,
        place: str,
        t: float,
        *,
        growth: Growth = Growth.MEDIUM,
        peak_kw: float = 1500.0,
        height_m: float = 2.8,
        offset_m: float = 1.5,
        corridor_speed_m_s: float = 1.0,
        door_delay_s: float = 30.0,
        decay_m: float = 15.0,
    ) -> list[str]:
        origin, zone = self._origin(place, FIRE_KINDS)
        reach = self._reach(origin, zone, offset_m, corridor_speed_m_s, door_delay_s, decay_m)
        fire = FlamingFire(t, reach, growth, peak_kw, height_m)
        for device_id in reach:
            self.devices[device_id].fires.append(fire)
        return sorted(reach, key=lambda d: reach[d].delay)

    def smouldering_fire(
        self,
        place: str,
        t: float,
        *,
        t_end_s: float = 900.0,
        smoke_end: float = 1.2,
        offset_m: float = 1.0,
        drift_speed_m_s: float = 0.1,
        door_delay_s: float = 120.0,
        decay_m: float = 10.0,
    ) -> list[str]:
        origin, zone = self._origin(place, FIRE_KINDS)
        reach = self._reach(origin, zone, offset_m, drift_speed_m_s, door_delay_s, decay_m)
        fire = SmoulderingFire(t, reach, t_end_s, smoke_end)
        for device_id in reach:
            self.devices[device_id].fires.append(fire)
        return sorted(reach, key=lambda d: reach[d].delay)

    def extinguish(self, place: str) -> list[str]:
        """The fires reaching devices at `place` are put out: their readings fall back at once."""
        out = [d.device_id for d in self.devices_at(place) if d.fires]
        for device_id in out:
            self.devices[device_id].fires.clear()
        return out

    def _reach(
        self, origin: SimDevice, zone: str, offset_m: float, speed: float, door_delay: float, decay: float
    ) -> dict[str, Reach]:
        reach: dict[str, Reach] = {}
        for device in self.devices_at(zone):
            if device.profile.kind not in FIRE_KINDS:
                continue
            same_room = device is origin or (bool(device.room) and device.room == origin.room)
            d = math.hypot(self._distance(origin, device), offset_m)
            reach[device.device_id] = spread(
                d, same_room, speed_m_s=speed, door_delay_s=door_delay, decay_m=decay
            )
        return reach

    def _water_devices(self, place: str) -> list[SimDevice]:
        site = place.split("/", 1)[0] if place not in self.devices else self.devices[place].site
        found = [
            d for d in self.devices.values() if d.site == site and d.profile.kind is DeviceKind.WATER_PRESSURE
        ]
        if not found:
            raise FleetError(f"no water-pressure transmitters on site {site!r}")
        return found

    def sprinkler(
        self,
        place: str,
        t: float,
        *,
        drop_mpa: float = 0.2,
        pump_start_s: float = 45.0,
        pump_mpa: float = 0.55,
    ) -> list[str]:
        """A head opens at `place`: every transmitter on the site's wet main sees the drop, the ones
        in the same building fully, the others half (friction along the longer pipe run)."""
        building = "/".join(place.split("/")[:2])
        devices = self._water_devices(place)
        factors = {d.device_id: 1.0 if d.place.startswith(building + "/") else 0.5 for d in devices}
        pumps = frozenset(d.device_id for d in devices if "pump" in d.place.rsplit("/", 1)[-1])
        opening = SprinklerOpening(
            t, factors, drop_mpa, pump_start_s=pump_start_s, pump_mpa=pump_mpa, pump_devices=pumps
        )
        for d in devices:
            d.water.append(opening)
        return sorted(factors)

    def slow_leak(self, place: str, t: float, *, rate_mpa_per_h: float = 0.6) -> list[str]:
        devices = self._water_devices(place)
        leak = SlowLeak(t, frozenset(d.device_id for d in devices), rate_mpa_per_h)
        for d in devices:
            d.water.append(leak)
        return sorted(leak.devices)

    def pump_failure(self, place: str, t: float, *, leakage_mpa_per_h: float | None = None) -> list[str]:
        devices = self._water_devices(place)
        failure = PumpFailure(t, frozenset(d.device_id for d in devices), leakage_mpa_per_h)
        for d in devices:
            d.water.append(failure)
        return sorted(failure.devices)

    def gas_leak(
        self,
        place: str,
        t: float,
        *,
        leak_m3_per_h: float = 3.0,
        room_volume_m3: float = 80.0,
        air_changes_per_h: float = 1.0,
        gas: Gas = Gas.NATURAL_GAS,
        stop_after_s: float | None = None,
    ) -> list[str]:
        detectors = [d for d in self.devices_at(place) if d.profile.kind is DeviceKind.COMBUSTIBLE_GAS]
        if not detectors:
            raise FleetError(f"no combustible-gas detector at {place!r}")
        origin = sorted(detectors, key=lambda d: d.device_id)[0]
        reach = {}
        for d in detectors:
            distance = self._distance(origin, d)
            reach[d.device_id] = Reach(distance / 0.3, 1.0, distance, True)  # gas drifts ~0.3 m/s
        leak = GasLeak(t, reach, leak_m3_per_h, room_volume_m3, air_changes_per_h, gas, stop_s=stop_after_s)
        for d in detectors:
            d.leaks.append(leak)
        return sorted(reach)

    def cable_overheat(
        self,
        device_id: str,
        t: float,
        *,
        channel: str | None = None,
        load_factor: float = 1.5,
        tau_s: float = 600.0,
    ) -> list[str]:
        device = self.device(device_id)
        temps = [c for c in device.profile.channels if c.startswith("temp")]
        if not temps:
            raise FleetError(
                f"device {device_id!r} ({device.profile.id}) measures no cable or socket temperature"
            )
        chosen = channel or temps[0]
        if chosen not in temps:
            raise FleetError(f"device {device_id!r} has no channel {chosen!r}; it has {temps}")
        device.overheats.append(CableOverheat(t, device_id, chosen, load_factor, tau_s=tau_s))
        return [device_id]

    def dirty_chamber(self, device_id: str, t: float, *, rate_db_m_per_day: float = 0.05) -> list[str]:
        device = self.device(device_id)
        if "smoke" not in device.profile.channels:
            raise FleetError(f"device {device_id!r} has no smoke chamber")
        device.dirt.append(DirtyChamber(t, device_id, rate_db_m_per_day))
        return [device_id]

    def replay(self, device_id: str, channel: str, recording: Recording) -> list[str]:
        device = self.device(device_id)
        if channel not in device.profile.channels:
            raise FleetError(
                f"device {device_id!r} has no channel {channel!r}; it has {sorted(device.profile.channels)}"
            )
        device.recordings.append(recording)
        return [device_id]

    # --- faults ----------------------------------------------------------------------------------
    def silence(self, device_id: str, *, disconnect: bool = False) -> list[str]:
        """The device stops reporting. `disconnect`: a wireless device's connection drops too, so
        the broker publishes its last will (`offline`)."""
        device = self.device(device_id)
        device.silent = True
        link = self.link_of[device_id]
        if disconnect and link.will_topic is not None:
            self._kill(link)
        return [device_id]

    def revive(self, device_id: str, t: float) -> list[str]:
        device = self.device(device_id)
        device.silent = False
        device.next_due = t
        link = self.link_of[device_id]
        if not link.powered:
            self._open(link)
        return [device_id]

    def power_cut(self, place: str) -> list[str]:
        """Mains power lost at a floor (or building): its gateways die; wireless battery devices on
        it keep reporting over their own radio."""
        floors = {"/".join(d.place.split("/")[:3]) for d in self.devices_at(place)}
        off: list[str] = []
        for floor in sorted(floors):
            link = self.links.get(f"gw:{floor}")
            if link is not None and link.powered:
                self._kill(link)
                off += link.devices
        return sorted(off)

    def power_restore(self, place: str, t: float) -> list[str]:
        floors = {"/".join(d.place.split("/")[:3]) for d in self.devices_at(place)}
        on: list[str] = []
        for floor in sorted(floors):
            link = self.links.get(f"gw:{floor}")
            if link is not None and not link.powered:
                self._open(link)
                for device_id in link.devices:
                    self.devices[device_id].next_due = t
                on += link.devices
        return sorted(on)

    def device_event(
        self, device_id: str, kind: DeviceEventKind, ts: float, *, code: int | None = None
    ) -> list[str]:
        device = self.device(device_id)
        if kind not in (DeviceEventKind.TEST, DeviceEventKind.RESET) and kind.value.removesuffix(
            "_clear"
        ) not in {e.value for e in device.profile.events}:
            raise FleetError(f"profile {device.profile.id!r} has no {kind.value!r} event")
        self.send_now(device_id, device.event(kind, ts, code=code), impaired=False)
        return [device_id]

    def battery(self, device_id: str, percent: float) -> list[str]:
        device = self.device(device_id)
        if not device.wireless or device.profile.battery is None:
            raise FleetError(f"device {device_id!r} is not a wireless battery device")
        device.battery = percent
        return [device_id]

    def door_held_open(self, device_id: str, t: float) -> list[str]:
        device = self.device(device_id)
        if "open" not in device.profile.channels:
            raise FleetError(f"device {device_id!r} is not a door monitor")
        device.held_open_from = t
        device.next_due = t  # a contact reports its change at once
        return [device_id]

    def malformed(self, device_id: str, kind: Malformed, t: float, ts: float, count: int = 1) -> list[str]:
        device = self.device(device_id)
        for _ in range(count):
            self.send_now(device_id, device.malformed(kind, t, ts), impaired=False)
        self.stats.malformed[kind.value] += count
        return [device_id]

    def impair(self, place: str, quality: LinkQuality) -> list[str]:
        """Change the delivery faults of the links serving the devices at `place`."""
        devices = self.devices_at(place)
        for link in {self.link_of[d.device_id].name: self.link_of[d.device_id] for d in devices}.values():
            link.quality = quality
        return sorted(d.device_id for d in devices)
