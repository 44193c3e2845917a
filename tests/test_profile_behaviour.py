"""The shipped profiles through the real engine: a simulated day of normal operation raises nothing,
and each kind's incident raises the alarm it is meant to."""

from __future__ import annotations

import random

import numpy as np
import pytest

from core.domain import AlarmCategory, DetectorEvent
from core.registry import BuildingSpec, Device, FloorSpec, Registry, SiteSpec, ZoneSpec
from detectors.engine import Engine
from detectors.samples import Samples
from device_profiles.loader import load_profiles
from device_profiles.schema import Codec
from ingest.index import DeviceIndex
from simulators.devices import SimDevice

PROFILES = load_profiles()
T0 = 1_800_000_000.0
DAY = 86_400.0


def one_zone(profile: str, n: int) -> DeviceIndex:
    site = SiteSpec(
        id="s",
        name="s",
        buildings=[
            BuildingSpec(
                id="b", name="b", floors=[FloorSpec(id="f", name="f", zones=[ZoneSpec(id="z", name="z")])]
            )
        ],
    )
    devices = [Device(id=f"d{i}", profile=profile, place="s/b/f/z") for i in range(n)]
    return DeviceIndex.build(Registry([site], devices), PROFILES)


def run(
    index: DeviceIndex, values: dict[str, np.ndarray], t: np.ndarray, chunk: int = 360
) -> list[DetectorEvent]:
    """values: channel -> (readings, devices) array at times t; fed in chunks like live batches."""
    engine = Engine(index, start=T0)
    events: list[DetectorEvent] = []
    n_dev = index.n_devices
    for lo in range(0, t.size, chunk):
        hi = min(t.size, lo + chunk)
        slots, ts, vals = [], [], []
        for channel, v in values.items():
            slot = np.array([index.slot(f"d{i}", channel) for i in range(n_dev)], dtype=np.int32)
            slots.append(np.broadcast_to(slot, (hi - lo, n_dev)))
            ts.append(np.broadcast_to((T0 + t[lo:hi])[:, None], (hi - lo, n_dev)))
            vals.append(v[lo:hi])
        events += engine.process_samples(
            Samples(
                np.stack(slots, axis=1).reshape(-1),
                np.stack(ts, axis=1).reshape(-1),
                np.stack(vals, axis=1).reshape(-1),
            )
        )
    return events


def simulated_day(profile_id: str, n: int = 4) -> tuple[DeviceIndex, dict[str, np.ndarray], np.ndarray]:
    profile = PROFILES[profile_id]
    index = one_zone(profile_id, n)
    rng = random.Random(7)
    models = [SimDevice(f"d{i}", "s", profile, rng) for i in range(n)]
    t = np.arange(0.0, DAY, profile.report_interval_s)
    per = [[m.values(float(x), T0 + float(x)) for x in t] for m in models]
    values = {
        ch: np.array([[per[d][k][ch] for d in range(n)] for k in range(t.size)]) for ch in profile.channels
    }
    return index, values, t


# The profiles of devices that report readings over MQTT (a fire alarm panel's points report changes
# of state through GB/T 26875.3: tests/test_gb26875_listener.py).
MQTT_PROFILES = sorted(pid for pid, p in PROFILES.items() if p.codec is Codec.JSON)


@pytest.mark.parametrize("profile_id", MQTT_PROFILES)
def test_a_simulated_day_of_normal_operation_raises_no_alarm(profile_id: str) -> None:
    index, values, t = simulated_day(profile_id)
    events = run(index, values, t)
    assert [(e.device_id, e.alarm_type, e.ts - T0) for e in events] == []


def ramp(t: np.ndarray, start: float, base: float, per_s: float) -> np.ndarray:
    return base + np.maximum(t - start, 0.0) * per_s


def raised(events: list[DetectorEvent]) -> dict[str, AlarmCategory]:
    return {e.alarm_type: e.category for e in events if e.kind.value == "raise"}


def test_a_growing_fire_under_heat_detectors_raises_the_ambient_rise_first() -> None:
    index = one_zone("heat-a1r", 1)
    t = np.arange(0.0, 1800.0, 10.0)
    temp = ramp(t, 900.0, 22.0, 4.0 / 60.0)[:, None]  # 4 °C/min from 15 min: below the R element
    events = run(index, {"temp": temp}, t)
    first = min((e for e in events if e.category is AlarmCategory.FIRE), key=lambda e: e.ts)
    assert first.alarm_type == "temp.rise"
    assert first.ts - T0 - 900.0 <= 60.0  # the classic 8.3 °C/min element never fires at 4 °C/min
    assert "temp.rate_of_rise" not in raised(events)


def test_a_dirty_smoke_chamber_becomes_a_hazard_not_a_fire() -> None:
    index = one_zone("smoke-photoelectric", 1)
    t = np.arange(0.0, 3 * DAY, 10.0)
    smoke = ramp(t, 3600.0, 0.02, 0.04 / DAY)[:, None]  # +0.04 dB/m a day
    got = raised(run(index, {"smoke": smoke, "temp": np.full_like(smoke, 22.0)}, t, chunk=2000))
    assert got.get("smoke.dirty_chamber") is AlarmCategory.HAZARD
    assert AlarmCategory.FIRE not in got.values()


@pytest.mark.parametrize(
    ("profile_id", "channel", "values", "every", "expected"),
    [
        ("water-pressure", "pressure", lambda t: np.where(t < 600, 0.40, 0.30), 10.0, "pressure.sudden_drop"),
        (
            "water-pressure",
            "pressure",
            lambda t: ramp(t, 1200, 0.40, -0.1 / 3600),
            10.0,
            "pressure.slow_leak",
        ),
        (
            "oxygen-pressure",
            "pressure",
            lambda t: np.where(t < 600, 0.40, 0.34),
            10.0,
            "pressure.sudden_drop",
        ),
        ("oxygen-pressure", "pressure", lambda t: np.where(t < 600, 0.40, 0.30), 10.0, "pressure.low"),
        ("fire-door", "open", lambda t: (t >= 600).astype(float), 30.0, "open.held_open"),
        ("water-tank", "level", lambda t: ramp(t, 1800, 3.5, -0.5 / 3600), 60.0, "level.slow_leak"),
        ("water-tank", "level", lambda t: np.where(t < 1800, 3.5, 1.5), 60.0, "level.jump"),
        ("combustible-gas", "lel", lambda t: np.where(t < 600, 0.5, 30.0), 10.0, "lel.level1"),
    ],
)
def test_each_kind_raises_its_alarm_on_its_incident(
    profile_id: str, channel: str, values: object, every: float, expected: str
) -> None:
    profile = PROFILES[profile_id]
    index = one_zone(profile_id, 1)
    t = np.arange(0.0, 6 * 3600.0, every)
    model = SimDevice("d0", "s", profile, random.Random(1))
    normal = {ch: np.full((t.size, 1), model.baseline[ch]) + 0.0 for ch in profile.channels}
    assert callable(values)
    normal[channel] = np.asarray(values(t), dtype=float)[:, None]
    assert expected in raised(run(index, normal, t, chunk=1000))


def test_an_overheating_charging_socket_pre_alarms_then_alarms() -> None:
    index = one_zone("charging-socket", 1)
    t = np.arange(0.0, 5400.0, 10.0)
    temp = ramp(t, 600, 30.0, 1.0 / 60)[:, None]  # +1 °C/min under load
    got = raised(run(index, {"current": np.full_like(temp, 3.0), "temp": temp}, t))
    assert got["temp.hot"] is AlarmCategory.PRE_ALARM
    assert got["temp.alarm"] is AlarmCategory.FIRE


def test_insulation_ageing_is_a_hazard_before_the_residual_current_reaches_its_pre_alarm() -> None:
    index = one_zone("electrical-fire", 1)
    t = np.arange(0.0, DAY, 10.0)
    residual = ramp(t, 3600.0, 100.0, 10.0 / 3600)[:, None]  # +10 mA an hour
    values = {ch: np.full_like(residual, 35.0) for ch in PROFILES["electrical-fire"].channels}
    values["residual_current"] = residual
    events = run(index, values, t, chunk=2000)
    rising = next(e for e in events if e.alarm_type == "residual_current.rising")
    assert rising.category is AlarmCategory.HAZARD
    assert residual[int((rising.ts - T0) // 10), 0] < 300.0  # before the pre-alarm level


def test_a_room_far_from_its_own_normal_temperature_is_supervisory_not_fire() -> None:
    index = one_zone("smoke-photoelectric", 1)
    t = np.arange(0.0, 4 * 3600.0, 10.0)
    temp = np.where(t < 3 * 3600, 22.0, 30.0)[:, None]  # the air conditioning of a pharmacy failed
    got = raised(run(index, {"smoke": np.full_like(temp, 0.02), "temp": temp}, t, chunk=2000))
    assert got == {"temp.unusual": AlarmCategory.SUPERVISORY}
