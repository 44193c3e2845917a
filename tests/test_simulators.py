"""The simulated hospital and its devices behave like the real thing, on the real topics."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter

import pytest
from paho.mqtt.client import Client, MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion

from core.registry import Registry, load_registry
from device_profiles.loader import load_profiles
from firewatch.broker import Mosquitto
from simulators.hospital import DEMO_HOSPITAL, build_hospital
from simulators.models import DeviceModel, Fire, GasLeak, PressureDrop
from simulators.publisher import Simulation, SimulationError

PROFILES = load_profiles()


def test_the_demo_hospital_has_200_devices_in_two_buildings_of_all_five_kinds() -> None:
    registry = load_registry(DEMO_HOSPITAL)
    assert len(registry.devices) >= 200
    assert {loc.building for loc in registry.locations.values()} == {"b1", "b2"}
    assert set(Counter(d.profile for d in registry.devices.values())) == set(PROFILES)
    departments = {d.department for d in registry.devices.values()}
    assert {"检验科", "病理科", "药剂科"} <= departments
    assert all(d.responsible for d in registry.devices.values())


def test_generation_is_deterministic_and_the_shipped_registry_is_up_to_date() -> None:
    from core.registry import dump_registry

    assert dump_registry(*build_hospital()) == DEMO_HOSPITAL.read_text(encoding="utf-8")
    assert build_hospital(seed=3) == build_hospital(seed=3)


def test_scale_grows_the_hospital() -> None:
    _, small = build_hospital()
    _, large = build_hospital(scale=2.0)
    assert len(large) > 1.8 * len(small)
    Registry(*build_hospital(scale=2.0))  # still a consistent place tree


@pytest.mark.parametrize("profile_id", sorted(PROFILES))
def test_quiet_values_stay_in_range_quantised_and_below_every_alarm_level(profile_id: str) -> None:
    profile = PROFILES[profile_id]
    model = DeviceModel("d1", "s1", profile, random.Random(1))
    for t in range(0, 86_400, 600):
        values = model.values(float(t))
        assert set(values) == set(profile.channels)
        for name, value in values.items():
            lo, hi = profile.channels[name].range
            assert lo <= value <= hi
            steps = value / profile.channels[name].resolution
            assert abs(steps - round(steps)) < 1e-6
    for detector in profile.thresholds():
        for level in detector.levels:
            v = model.values(3600.0)[detector.channel]
            assert (v < level.at) if detector.direction.value == "above" else (v > level.at), (
                profile_id,
                level.name,
            )


def test_a_fire_drives_smoke_past_the_fire_level_at_the_origin_first() -> None:
    smoke = PROFILES["smoke-photoelectric"]
    fire = Fire(start=100.0, delays={"origin": 0.0, "neighbour": 20.0})
    origin = DeviceModel("origin", "s1", smoke, random.Random(1), fires=[fire])
    neighbour = DeviceModel("neighbour", "s1", smoke, random.Random(2), fires=[fire])
    assert origin.values(100.0)["smoke"] < 0.05
    assert origin.values(115.0)["smoke"] > 0.15
    assert neighbour.values(115.0)["smoke"] < 0.05
    assert neighbour.values(140.0)["smoke"] > 0.15
    assert origin.values(160.0)["temp"] > 57.0  # the ceiling jet is hot enough for a heat detector


def test_a_pressure_drop_falls_below_the_sprinkler_minimum_within_seconds() -> None:
    model = DeviceModel(
        "p", "s1", PROFILES["water-pressure"], random.Random(1), drops=[PressureDrop(start=10.0)]
    )
    assert model.values(9.0)["pressure"] > 0.25
    assert model.values(25.0)["pressure"] < 0.05


def test_a_gas_leak_passes_both_alarm_levels() -> None:
    model = DeviceModel("g", "s1", PROFILES["combustible-gas"], random.Random(1), leaks=[GasLeak(start=0.0)])
    assert model.values(30.0)["lel"] > 25.0
    assert model.values(60.0)["lel"] > 50.0


def test_injecting_into_something_that_does_not_exist_is_an_error() -> None:
    sim = Simulation(load_registry(DEMO_HOSPITAL), PROFILES, host="127.0.0.1", port=1)
    with pytest.raises(SimulationError):
        sim.inject_fire("sxzyy/b9/f1/z1")
    with pytest.raises(SimulationError):
        sim.silence("no-such-device")


@pytest.mark.integration
async def test_simulated_devices_publish_real_payloads_and_a_silenced_one_stops(mosquitto: Mosquitto) -> None:
    registry = load_registry(DEMO_HOSPITAL)
    received: list[MQTTMessage] = []
    sub = Client(CallbackAPIVersion.VERSION2)
    sub.on_message = lambda _c, _u, m: received.append(m)
    sub.connect(mosquitto.host, mosquitto.port)
    sub.subscribe("fw/v1/sxzyy/#", qos=1)
    sub.loop_start()
    await asyncio.sleep(0.3)
    sim = Simulation(
        registry, PROFILES, host=mosquitto.host, port=mosquitto.port, report_interval_override=0.5
    )
    silent = sorted(registry.devices)[0]
    task = asyncio.create_task(sim.run(duration=3.0))
    await asyncio.sleep(1.0)
    sim.silence(silent)
    silenced_at = len(received)
    await task
    await asyncio.sleep(0.5)
    sub.loop_stop()
    sub.disconnect()

    telemetry = [m for m in received if m.topic.endswith("/telemetry")]
    statuses = [m for m in received if m.topic.endswith("/status")]
    assert len(statuses) == len(registry.devices)
    assert len(telemetry) >= 3 * len(registry.devices)
    body = json.loads(telemetry[0].payload)
    assert set(body) >= {"ts", "seq", "v", "rssi"}
    device = telemetry[0].topic.split("/")[3]
    assert set(body["v"]) == set(PROFILES[registry.devices[device].profile].channels)
    seqs = [json.loads(m.payload)["seq"] for m in telemetry if m.topic.split("/")[3] == device]
    assert seqs == sorted(seqs)
    assert seqs[0] == 1
    late = [m for m in received[silenced_at + 50 :] if m.topic.split("/")[3] == silent]
    assert late == []
