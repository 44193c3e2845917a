"""A simulated device of any profile: what it measures when nothing happens, what incidents do to
its readings, and the frames it publishes, exactly as a real device on the topic scheme would.

Quiet behaviour is sensor-specific (the `_quiet_*` functions): a room's diurnal temperature swing,
the jockey pump's saw-tooth in a fire main, residual current and cable temperature following the
building's daily load, e-bike chargers plugged in of an evening, fire doors opened by passers-by.
Every value is clamped to the channel's range and quantised to its resolution, as an ADC and
firmware would. Incidents (simulators/physics.py) are layered on top.

Frames are bytes ready for MQTT; the fleet (simulators/fleet.py) delivers them through the
device's link, which may lose, repeat or reorder them.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from core.domain import DeviceEventKind, DeviceKind
from device_profiles.schema import Profile
from ingest.topics import MessageKind, device_topic
from simulators.physics import (
    CableOverheat,
    DirtyChamber,
    FlamingFire,
    GasLeak,
    JockeyCycle,
    PumpFailure,
    Recording,
    SlowLeak,
    SmoulderingFire,
    SprinklerOpening,
)

DAY = 86_400.0
# Element response of heat-sensing parts (simulator assumptions, of the order of EN 54-5 class A1
# heads and a smoke head's thermistor behind its insect screen): first-order lag time constants.
HEAT_ELEMENT_TAU_S = {DeviceKind.HEAT: 20.0, DeviceKind.SMOKE: 45.0, DeviceKind.SMOKE_HEAT: 30.0}

Fire = FlamingFire | SmoulderingFire
Water = SprinklerOpening | SlowLeak | PumpFailure


@dataclass(frozen=True)
class Frame:
    """One MQTT message as it leaves the device."""

    topic: str
    payload: bytes
    retain: bool = False
    seq: int | None = None  # telemetry/event sequence number, for delivery bookkeeping


class Malformed(StrEnum):
    """Broken frames a scenario can ask a device to send, one per reject reason the service has."""

    BAD_JSON = "bad_json"  # truncated JSON, as a radio glitch or a firmware bug leaves it
    NOT_OBJECT = "not_object"  # valid JSON, but a list
    MISSING_VALUES = "missing_values"  # no 'v'
    UNKNOWN_CHANNEL = "unknown_channel"
    NOT_A_NUMBER = "not_a_number"  # a channel value as a string
    OUT_OF_RANGE = "out_of_range"  # beyond the channel's physical range
    FUTURE_TIMESTAMP = "future_timestamp"  # a device clock an hour ahead
    BAD_TIMESTAMP = "bad_timestamp"  # a timestamp in no known format
    TOO_LARGE = "too_large"  # a payload far beyond any real reading
    UNKNOWN_EVENT = "unknown_event"
    BAD_TOPIC = "bad_topic"  # one level missing from the topic
    WRONG_SITE = "wrong_site"  # the device configured with another site's id


def daily_load(ts: float, phase_h: float = 0.0) -> float:
    """A hospital's electrical load as a fraction of rating over the day (local time of `ts`):
    about 0.45 at night, rising to 0.7 in the early afternoon (simulator assumption)."""
    hour = ((ts / 3600.0) + 8.0 + phase_h) % 24.0  # UTC+8: the hospitals this serves
    day = max(0.0, math.sin(math.pi * (hour - 7.0) / 14.0)) if 7.0 <= hour <= 21.0 else 0.0
    return 0.45 + 0.25 * day


def diurnal(ts: float) -> float:
    """-1..1 over the day, warmest at 15:00 local time (UTC+8)."""
    hour = ((ts / 3600.0) + 8.0) % 24.0
    return math.cos(2 * math.pi * (hour - 15.0) / 24.0)


@dataclass
class SimDevice:
    device_id: str
    site: str
    profile: Profile
    rng: random.Random
    place: str = ""
    room: str = ""  # the room's place path ('' for a zone-level device such as a corridor head)
    position: tuple[float, float] = (0.0, 0.0)
    wireless: bool = False
    prefix: str = "fw/v1"
    # state
    seq: int = 0
    battery: float = 100.0
    rssi: float = -70.0
    next_due: float = 0.0
    last_sent: float = -math.inf
    last_values: dict[str, float] = field(default_factory=dict)
    silent: bool = False
    fires: list[Fire] = field(default_factory=list)
    water: list[Water] = field(default_factory=list)
    leaks: list[GasLeak] = field(default_factory=list)
    overheats: list[CableOverheat] = field(default_factory=list)
    dirt: list[DirtyChamber] = field(default_factory=list)
    recordings: list[Recording] = field(default_factory=list)
    held_open_from: float | None = None  # a fire door wedged open
    baseline: dict[str, float] = field(default_factory=dict)  # its own normal value per channel
    _cycle: JockeyCycle | None = None
    _element: dict[str, tuple[float, float]] = field(default_factory=dict)  # channel -> (t, sensed rise)
    _door_until: float = -1.0
    _charge: tuple[float, float, float] = (19.0, 6.0, 2.0)  # plug-in hour, hours, amps
    _topics: dict[MessageKind, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        r = self.rng
        kind = self.profile.kind
        for name in self.profile.channels:
            self.baseline[name] = _baseline(kind, name, r)
        if kind is DeviceKind.WATER_PRESSURE:
            self._cycle = JockeyCycle(
                setpoint=self.baseline["pressure"],
                period_s=r.uniform(700.0, 1100.0),
                phase_s=r.uniform(0, 1100),
            )
        if kind is DeviceKind.CHARGING_SOCKET:
            self._charge = (r.uniform(17.0, 22.0), r.uniform(4.0, 7.0), r.uniform(1.2, 2.6))
        self.battery = r.uniform(60.0, 100.0)
        self.rssi = r.uniform(-95.0, -60.0)
        self._topics = {k: device_topic(self.site, self.device_id, k, self.prefix) for k in MessageKind}

    # --- what it measures ------------------------------------------------------------------------
    @property
    def report_on_change(self) -> bool:
        """Two-state devices (a door contact) report a change at once and otherwise only their
        heartbeat; analog sensors report every interval."""
        return all(
            c.resolution >= 1.0 and c.range[1] - c.range[0] <= 1.0 for c in self.profile.channels.values()
        )

    def values(self, t: float, ts: float) -> dict[str, float]:
        """Channel values at simulated time t (epoch `ts`), quantised and clamped like a real ADC."""
        out: dict[str, float] = {}
        for name, channel in self.profile.channels.items():
            v = self._value(name, t, ts)
            lo, hi = channel.range
            v = min(hi, max(lo, v))
            out[name] = round(round(v / channel.resolution) * channel.resolution, 6)
        return out

    def _value(self, name: str, t: float, ts: float) -> float:
        r = self.rng
        kind = self.profile.kind
        base = self.baseline[name]
        if name == "smoke":
            v = base + r.gauss(0, 0.0015) + sum(d.offset(t) for d in self.dirt)
            v += sum(f.smoke(self.device_id, t) for f in self.fires)
        elif name == "pressure" and self._cycle is not None:
            quiet = self._cycle.pressure(t)
            for w in self.water:
                if isinstance(w, PumpFailure):
                    quiet = w.pressure(self.device_id, quiet, t, self._cycle)
                else:
                    quiet = w.pressure(self.device_id, quiet, t)
            v = quiet + r.gauss(0, 0.001)
        elif name == "pressure":  # a regulated oxygen supply: no pump, a steady set point
            v = base + r.gauss(0, 0.0015)
        elif name == "residual_current":
            v = base * daily_load(ts) / 0.6 + r.gauss(0, 2.0)
            for o in self.overheats:
                v += o.leakage_ma_per_k * max(0.0, self._cable_temp(o.channel, t, ts) - 60.0)
        elif name.startswith("temp_"):  # cable temperatures of an electrical-fire monitor
            v = self._cable_temp(name, t, ts) + r.gauss(0, 0.1)
        elif name == "lel":
            v = max(0.0, base + r.gauss(0, 0.15)) + sum(g.lel(self.device_id, t) for g in self.leaks)
        elif name == "level":
            v = base + r.gauss(0, 0.003)
        elif name == "open":
            v = self._door(t)
        elif name == "current":
            v = self._charging_current(ts)
            for o in self.overheats:  # an overloaded charger draws more
                v *= o.load_factor if t >= o.start else 1.0
        elif name == "temp" and kind is DeviceKind.CHARGING_SOCKET:
            v = base + 1.5 * diurnal(ts) + 0.8 * self._charging_current(ts) + r.gauss(0, 0.1)
            for o in self.overheats:
                v += o.extra_rise(0.3, t)
        else:  # room temperature: the day's swing, plus any fire's hot gas through the head's lag
            v = base + 1.2 * diurnal(ts) + r.gauss(0, 0.05) + self._sensed_rise(name, t)
        for rec in self.recordings:
            if rec.channel == name:
                v = rec.value(v, t)
        return v

    def _sensed_rise(self, name: str, t: float) -> float:
        if not self.fires:
            return 0.0
        gas = sum(f.gas_rise(self.device_id, t) for f in self.fires)
        tau = HEAT_ELEMENT_TAU_S.get(self.profile.kind, 30.0)
        last_t, sensed = self._element.get(name, (t, 0.0))
        dt = max(0.0, t - last_t)
        sensed += (gas - sensed) * (1 - math.exp(-dt / tau))
        self._element[name] = (t, sensed)
        return sensed

    def _cable_temp(self, name: str, t: float, ts: float) -> float:
        """Ambient of a distribution board (about 28 °C) plus the Joule rise at today's load;
        the neutral carries only the phases' imbalance, so it runs cooler."""
        load = daily_load(ts)
        share = 0.3 if name == "temp_n" else 1.0
        v = self.baseline[name] + 0.8 * diurnal(ts) + 40.0 * share * load * load
        for o in self.overheats:
            if o.channel == name:
                v += o.extra_rise(load, t)
        return v

    def _charging_current(self, ts: float) -> float:
        start, hours, amps = self._charge
        hour = ((ts / 3600.0) + 8.0) % 24.0
        into = (hour - start) % 24.0
        if into >= hours:
            return 0.0
        taper = 1.0 if into < hours * 0.8 else 0.3  # constant current, then the charger tapers off
        return amps * taper

    def _door(self, t: float) -> float:
        if self.held_open_from is not None and t >= self.held_open_from:
            return 1.0
        if t < self._door_until:
            return 1.0
        # Passers-by: about four openings an hour, each closed by the door closer within a minute.
        if self.rng.random() < 4.0 / 3600.0 * self.profile.report_interval_s:
            self._door_until = t + self.rng.uniform(5.0, 40.0)
            return 1.0
        return 0.0

    # --- what it publishes -----------------------------------------------------------------------
    def due(self, t: float) -> bool:
        return not self.silent and t >= self.next_due

    def report(self, t: float, ts: float) -> Frame | None:
        """The telemetry frame due at t, or None when a report-on-change device has nothing new and
        its heartbeat is not due yet. Schedules the next report."""
        interval = self.profile.report_interval_s
        self.next_due = max(self.next_due + interval, t + interval * 0.5)
        values = self.values(t, ts)
        if (
            self.report_on_change
            and values == self.last_values
            and self.profile.liveness is not None
            and t - self.last_sent < self.profile.liveness.heartbeat_s - interval / 2
        ):
            return None
        self.last_values = values
        self.last_sent = t
        return self.telemetry(values, ts)

    def telemetry(self, values: dict[str, float], ts: float) -> Frame:
        self.seq += 1
        body: dict[str, Any] = {"ts": round(ts, 3), "seq": self.seq, "v": values}
        if self.wireless:
            if self.profile.battery is not None:
                # ~3 years on one battery: idle drain plus a little per transmission
                self.battery = max(
                    0.0, self.battery - 0.000015 - 0.002 * self.profile.report_interval_s / 3600
                )
                body["batt"] = round(self.battery)
            body["rssi"] = round(self.rssi + self.rng.gauss(0, 2.0))
        return Frame(self._topics[MessageKind.TELEMETRY], orjson.dumps(body), seq=self.seq)

    def event(
        self, kind: DeviceEventKind, ts: float, *, code: int | None = None, channel: str | None = None
    ) -> Frame:
        self.seq += 1
        body: dict[str, Any] = {"ts": round(ts, 3), "seq": self.seq, "event": kind.value}
        if code is not None:
            body["code"] = code
        if channel is not None:
            body["channel"] = channel
        return Frame(self._topics[MessageKind.EVENT], orjson.dumps(body), seq=self.seq)

    def status(self, online: bool) -> Frame:
        """The retained status a device (or its gateway) keeps on the broker."""
        return Frame(self._topics[MessageKind.STATUS], b"online" if online else b"offline", retain=True)

    def malformed(self, kind: Malformed, t: float, ts: float) -> Frame:
        """A broken frame of the given kind; the service must reject it with that reason."""
        topic = self._topics[MessageKind.TELEMETRY]
        values = self.values(t, ts)
        first = next(iter(values))
        body: Any = {"ts": round(ts, 3), "seq": self.seq + 1, "v": values}
        if kind is Malformed.BAD_JSON:
            return Frame(topic, orjson.dumps(body)[:-7])
        if kind is Malformed.NOT_OBJECT:
            body = [body]
        elif kind is Malformed.MISSING_VALUES:
            del body["v"]
        elif kind is Malformed.UNKNOWN_CHANNEL:
            body["v"] = {**values, "humidity": 55.0}
        elif kind is Malformed.NOT_A_NUMBER:
            body["v"] = {**values, first: "n/a"}
        elif kind is Malformed.OUT_OF_RANGE:
            body["v"] = {**values, first: self.profile.channels[first].range[1] * 10 + 1}
        elif kind is Malformed.FUTURE_TIMESTAMP:
            body["ts"] = round(ts + 3600.0, 3)
        elif kind is Malformed.BAD_TIMESTAMP:
            body["ts"] = "yesterday"
        elif kind is Malformed.TOO_LARGE:
            body["note"] = "x" * 20_000
        elif kind is Malformed.UNKNOWN_EVENT:
            return Frame(self._topics[MessageKind.EVENT], orjson.dumps({"ts": ts, "event": "self_destruct"}))
        elif kind is Malformed.BAD_TOPIC:
            topic = topic.rsplit("/", 2)[0] + "/telemetry"
        elif kind is Malformed.WRONG_SITE:
            topic = device_topic(self.site + "-x", self.device_id, MessageKind.TELEMETRY, self.prefix)
        return Frame(topic, orjson.dumps(body))


# Which reject reason the service gives each malformed frame (ingest/decode.py).
EXPECTED_REJECT: dict[Malformed, str] = {
    Malformed.BAD_JSON: "bad_json",
    Malformed.NOT_OBJECT: "bad_payload",
    Malformed.MISSING_VALUES: "bad_payload",
    Malformed.UNKNOWN_CHANNEL: "unknown_channel",
    Malformed.NOT_A_NUMBER: "bad_payload",
    Malformed.OUT_OF_RANGE: "out_of_range",
    Malformed.FUTURE_TIMESTAMP: "future_timestamp",
    Malformed.BAD_TIMESTAMP: "bad_timestamp",
    Malformed.TOO_LARGE: "too_large",
    Malformed.UNKNOWN_EVENT: "unknown_event",
    Malformed.BAD_TOPIC: "bad_topic",
    Malformed.WRONG_SITE: "site_mismatch",
}


def _baseline(kind: DeviceKind, name: str, r: random.Random) -> float:
    """A device's own normal value of a channel (installation and sensor spread)."""
    if name == "smoke":
        return r.uniform(0.005, 0.03)  # clean-air reading of a photoelectric chamber
    if name == "pressure" and kind is DeviceKind.OXYGEN_PRESSURE:
        return r.uniform(0.39, 0.41)  # medical oxygen pipeline regulated around 0.4 MPa
    if name == "pressure":
        return r.uniform(0.30, 0.45)  # a wet main's static pressure at the transmitter
    if name == "open":
        return 0.0  # fire doors are kept closed
    if name == "level":
        return r.uniform(3.0, 4.0)  # metres of water in the fire tank
    if name == "current":
        return 0.0
    if name == "residual_current":
        return r.uniform(40.0, 120.0)  # mA: the normal leakage of a floor's circuits
    if name.startswith("temp_"):
        return r.uniform(26.0, 30.0)  # a distribution board's ambient
    if name == "lel":
        return r.uniform(0.0, 1.0)
    if kind is DeviceKind.CHARGING_SOCKET:
        return r.uniform(18.0, 26.0)  # an outdoor shed
    return r.uniform(22.0, 26.0)  # room air
