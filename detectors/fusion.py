"""Zone fusion: independent signals in one zone confirm a fire.

GB 50116-2013 §4.1.6 (S, STANDARDS.md) has automatic linkage wait for two independent alarm
signals (an AND of two triggers). firewatch applies the same logic to raise `zone.fire_confirmed`:

- two different fire-alarm devices of one zone raising a fire alarm within `window_s`; or
- smoke evidence (a smoke fire alarm) plus a temperature rise (any raise on a temperature channel,
  pre-alarm included) in the same zone within `window_s` — two physical quantities agreeing, even on
  one multi-sensor head.

Fusion only *adds* an alarm. It runs after the single detectors and never holds, delays or removes
their events: each device's own fire alarm has already been raised when the confirmation follows.
Gas and electrical-fire alarms are kept apart (their systems are not the fire alarm system).
The confirmation is stored under the zone's first alarming device and clears when no signal of
the zone is active any more.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.domain import AlarmCategory, DetectorEvent, DetectorEventKind, DeviceKind, SystemType
from ingest.index import DeviceIndex

CONFIRMED = "zone.fire_confirmed"
_SMOKE_KINDS = {DeviceKind.SMOKE, DeviceKind.SMOKE_HEAT}
BASIS = (
    "GB 50116-2013 §4.1.6 (S): two independent alarm signals confirm a fire (used for linkage); "
    "fusion confirms, it never suppresses or delays a single detector's alarm"
)


@dataclass
class _Signal:
    device_id: str
    alarm_type: str
    raised: float
    cleared: float | None  # None while active
    fire: bool  # a fire-category alarm
    smoke: bool  # a smoke fire alarm
    warm: bool  # a temperature rise


@dataclass
class _Zone:
    signals: dict[tuple[str, str], _Signal] = field(default_factory=dict)
    confirmed_on: str | None = None  # the device the confirmation is stored under, while raised


class ZoneFusion:
    def __init__(self, index: DeviceIndex, window_s: float = 120.0) -> None:
        self.index = index
        self.window_s = window_s
        self.zones: dict[str, _Zone] = {}

    def _classify(self, e: DetectorEvent) -> tuple[str, bool, bool, bool] | None:
        dev = self.index.dev_of.get(e.device_id)
        if dev is None or e.alarm_type == CONFIRMED:
            return None
        profile = self.index.profiles[dev]
        if profile.system is not SystemType.FIRE_ALARM:
            return None  # gas, electrical fire, water, doors: not fire-alarm evidence
        location = self.index.locations[dev]  # made on demand from the registry's columns: once
        if not location.zone:
            return None
        zone = location.zone_path
        channel = e.channel
        unit = profile.channels[channel].unit if channel in profile.channels else ""
        fire = e.category is AlarmCategory.FIRE
        smoke = fire and (channel == "smoke" or (channel is None and profile.kind in _SMOKE_KINDS))
        warm = unit == "°C" and e.category in (AlarmCategory.FIRE, AlarmCategory.PRE_ALARM)
        if not (fire or warm):
            return None
        return zone, fire, smoke, warm

    def update(self, events: list[DetectorEvent]) -> list[DetectorEvent]:
        out: list[DetectorEvent] = []
        for e in events:
            c = self._classify(e)
            if c is None:
                continue
            zone_path, fire, smoke, warm = c
            zone = self.zones.setdefault(zone_path, _Zone())
            key = (e.device_id, e.alarm_type)
            if e.kind is DetectorEventKind.RAISE:
                zone.signals[key] = _Signal(e.device_id, e.alarm_type, e.ts, None, fire, smoke, warm)
            elif key in zone.signals:
                zone.signals[key].cleared = e.ts
            out += self._decide(zone_path, zone, e.ts)
        return out

    def _decide(self, zone_path: str, zone: _Zone, now: float) -> list[DetectorEvent]:
        horizon = now - self.window_s
        live = [s for s in zone.signals.values() if s.cleared is None or s.cleared >= horizon]
        zone.signals = {(s.device_id, s.alarm_type): s for s in live}
        if zone.confirmed_on is None:
            reason = self._confirmation(live)
            if reason is None:
                return []
            origin = min(live, key=lambda s: s.raised).device_id
            zone.confirmed_on = origin
            return [self._event(origin, DetectorEventKind.RAISE, now, f"{reason} in {self._name(zone_path)}")]
        if not any(s.cleared is None for s in live):
            origin, zone.confirmed_on = zone.confirmed_on, None
            return [self._event(origin, DetectorEventKind.CLEAR, now, "no signal of the zone is active")]
        return []

    def _confirmation(self, live: list[_Signal]) -> str | None:
        fire_devices = sorted({s.device_id for s in live if s.fire})
        if len(fire_devices) >= 2:
            return f"fire alarms from {fire_devices[0]} and {fire_devices[1]}"
        smoke = [s for s in live if s.smoke]
        warm = [s for s in live if s.warm]
        if smoke and warm:
            rise = f"{warm[0].device_id} {warm[0].alarm_type}"
            return f"smoke ({smoke[0].device_id}) and a temperature rise ({rise})"
        return None

    def _name(self, zone_path: str) -> str:
        return self.index.place_names.get(zone_path, zone_path)

    def _event(self, device_id: str, kind: DetectorEventKind, ts: float, detail: str) -> DetectorEvent:
        return DetectorEvent(
            device_id=device_id,
            alarm_type=CONFIRMED,
            kind=kind,
            category=AlarmCategory.FIRE,
            ts=ts,
            detail=detail,
            basis=BASIS,
        )

    def snapshot(self) -> dict[str, object]:
        return {
            "window_s": self.window_s,
            "zones": {
                path: {
                    "confirmed_on": z.confirmed_on,
                    "signals": [vars(s).copy() for s in z.signals.values()],
                }
                for path, z in self.zones.items()
            },
        }

    def restore(self, state: dict[str, object]) -> None:
        zones = state.get("zones", {})
        assert isinstance(zones, dict)
        self.zones = {
            path: _Zone(
                signals={(s["device_id"], s["alarm_type"]): _Signal(**s) for s in z["signals"]},
                confirmed_on=z["confirmed_on"],
            )
            for path, z in zones.items()
        }

    def restore_devices(self, state: dict[str, object], devices: set[str]) -> None:
        """Take the signals of `devices` from a saved state (another worker's, for partitions taken
        over) in place of what this one knew of them; every other signal and every zone's
        confirmation stay as they are."""
        for zone in self.zones.values():
            zone.signals = {k: s for k, s in zone.signals.items() if s.device_id not in devices}
        zones = state.get("zones", {})
        assert isinstance(zones, dict)
        for path, z in zones.items():
            for saved in z["signals"]:
                if saved["device_id"] in devices:
                    signal = _Signal(**saved)
                    zone = self.zones.setdefault(path, _Zone())
                    zone.signals[(signal.device_id, signal.alarm_type)] = signal

    def restore_confirmed(self, keys: set[tuple[str, str]]) -> None:
        """Align with the store: zones whose confirmation is open there stay confirmed, no others."""
        for zone in self.zones.values():
            zone.confirmed_on = None
        for device_id, alarm_type in keys:
            dev = self.index.dev_of.get(device_id)
            if alarm_type == CONFIRMED and dev is not None:
                self.zones.setdefault(self.index.locations[dev].zone_path, _Zone()).confirmed_on = device_id
