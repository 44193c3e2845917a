"""The simulated hospital's devices behave like the real thing: quiet values in range and below
every alarm level, sensor-specific noise, heartbeats, batteries, broken frames the service rejects
for the right reason, and, on a real broker, retained status, last wills, gateways and power cuts."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections import Counter

import pytest
from paho.mqtt.client import Client, MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion

from core.domain import DeviceEventKind
from core.registry import Registry, load_registry
from device_profiles.loader import load_profiles
from device_profiles.schema import Codec
from firewatch.broker import Mosquitto
from ingest.decode import Decoder
from ingest.envelope import Message
from ingest.index import DeviceIndex
from simulators.devices import EXPECTED_REJECT, Malformed, SimDevice, daily_load
from simulators.fleet import Fleet, FleetError, LinkQuality
from simulators.hospital import DEMO_HOSPITAL, build_hospital

PROFILES = load_profiles()


def test_the_demo_hospital_has_200_to_300_devices_in_three_buildings_of_all_profiles() -> None:
    registry = load_registry(DEMO_HOSPITAL)
    assert 200 <= len(registry.devices) <= 300
    # outpatient and medical technology, inpatient, and the e-bike charging shed
    assert {loc.building for loc in registry.locations.values()} == {"b1", "b2", "eb"}
    mqtt_profiles = {pid for pid, p in PROFILES.items() if p.codec is Codec.JSON}
    assert set(Counter(d.profile for d in registry.devices.values())) == mqtt_profiles
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


TS0 = 1_795_000_000.0  # an epoch to stamp readings with


def device(profile_id: str, seed: int = 1, **kwargs: object) -> SimDevice:
    return SimDevice(f"d-{profile_id}", "sxzyy", PROFILES[profile_id], random.Random(seed), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("profile_id", sorted(PROFILES))
def test_quiet_values_stay_in_range_quantised_and_below_every_alarm_level(profile_id: str) -> None:
    profile = PROFILES[profile_id]
    for seed in range(5):
        sim = device(profile_id, seed)
        for t in range(0, 2 * 86_400, 300):  # two days: the daily load and temperature swing
            values = sim.values(float(t), TS0 + t)
            assert set(values) == set(profile.channels)
            for name, value in values.items():
                lo, hi = profile.channels[name].range
                assert lo <= value <= hi
                steps = value / profile.channels[name].resolution
                assert abs(steps - round(steps)) < 1e-6
            for detector in profile.thresholds():
                v = values[detector.channel]
                for level in detector.levels:
                    if level.for_s == 0:  # a door opened by a passer-by is held open only briefly
                        assert (v < level.at) if detector.direction.value == "above" else (v > level.at), (
                            profile_id,
                            level.name,
                            t,
                            v,
                        )


def test_room_temperature_follows_the_day_and_the_fire_main_its_jockey_pump() -> None:
    heat = device("heat-a1r")
    afternoon = [heat.values(float(t), TS0 + t)["temp"] for t in range(0, 86_400, 600)]
    assert max(afternoon) - min(afternoon) > 2.0  # a diurnal swing of a few degrees
    main = device("water-pressure")
    pressures = [main.values(float(t), TS0 + t)["pressure"] for t in range(0, 3600, 10)]
    rises = sum(1 for a, b in itertools.pairwise(pressures) if b - a > 0.003)
    assert 2 <= rises <= 60  # the pump restores pressure a few times an hour; otherwise it decays
    assert max(pressures) - min(pressures) < 0.06


def test_residual_current_and_cable_temperature_follow_the_buildings_load() -> None:
    monitor = device("electrical-fire")
    midnight = TS0 - ((TS0 / 3600 + 8) % 24) * 3600  # local midnight (UTC+8)
    night, day = midnight + 3 * 3600, midnight + 14 * 3600
    assert daily_load(day) > daily_load(night) + 0.2
    at_night = [monitor.values(0.0, night + k)["temp_l1"] for k in range(10)]
    by_day = [monitor.values(0.0, day + k)["temp_l1"] for k in range(10)]
    assert sum(by_day) / 10 > sum(at_night) / 10 + 5.0


def test_a_door_contact_reports_only_changes_and_its_heartbeat() -> None:
    door = device("fire-door")
    assert door.report_on_change
    assert not device("smoke-photoelectric").report_on_change
    sent = [door.report(float(t), TS0 + t) for t in range(0, 600, 30)]
    heartbeat = PROFILES["fire-door"].watch.heartbeat_s
    assert sum(f is not None for f in sent) >= 600 / heartbeat - 1
    assert sum(f is not None for f in sent) < len(sent)
    door.held_open_from = 600.0
    frame = door.report(600.0, TS0 + 600)
    assert frame is not None
    assert json.loads(frame.payload)["v"] == {"open": 1.0}


def test_wireless_devices_report_battery_and_signal_and_wired_ones_do_not() -> None:
    wireless = device("smoke-photoelectric", wireless=True)
    wired = device("smoke-photoelectric")
    w = json.loads(wireless.telemetry(wireless.values(0, TS0), TS0).payload)
    assert {"ts", "seq", "v", "batt", "rssi"} <= set(w)
    assert 0 <= w["batt"] <= 100
    assert "batt" not in json.loads(wired.telemetry(wired.values(0, TS0), TS0).payload)
    before = wireless.battery
    for t in range(1000):
        wireless.telemetry(wireless.values(t, TS0 + t), TS0 + t)
    assert 0 < before - wireless.battery < 1.0  # a battery lasts years, not days


def _decoder_for(sim: SimDevice) -> tuple[Decoder, Registry]:
    from core.registry import BuildingSpec, Device, FloorSpec, SiteSpec, ZoneSpec

    site = SiteSpec(
        id="sxzyy",
        name="t",
        buildings=[
            BuildingSpec(
                id="b1", name="b", floors=[FloorSpec(id="f1", name="1F", zones=[ZoneSpec(id="z1", name="z")])]
            )
        ],
    )
    registry = Registry([site], [Device(id=sim.device_id, profile=sim.profile.id, place="sxzyy/b1/f1/z1")])
    return Decoder(DeviceIndex.build(registry, PROFILES)), registry


@pytest.mark.parametrize("kind", list(Malformed))
def test_every_malformed_frame_is_rejected_by_the_service_for_its_own_reason(kind: Malformed) -> None:
    sim = device("smoke-photoelectric", wireless=True)
    decoder, _ = _decoder_for(sim)
    good = sim.report(0.0, TS0)
    bad = sim.malformed(kind, 1.0, TS0 + 1)
    assert good is not None
    batch = decoder.decode(
        [Message(good.topic, good.payload, TS0), Message(bad.topic, bad.payload, TS0 + 1)], TS0 + 1
    )
    assert batch.reading_dev.size == 1  # the good one is accepted
    assert [r.reason.value for r in batch.rejects] == [EXPECTED_REJECT[kind]]


def test_every_profile_s_telemetry_and_events_are_accepted_by_the_service() -> None:
    for profile_id, profile in sorted(PROFILES.items()):
        if profile.codec is not Codec.JSON:
            continue  # a fire alarm panel's point: reported through GB/T 26875.3, not MQTT
        sim = device(profile_id, wireless=profile.battery is not None)
        decoder, _ = _decoder_for(sim)
        frames = [sim.report(float(t), TS0 + t) for t in range(0, 300, 10)]
        frames += [sim.event(DeviceEventKind(e.value), TS0 + 301) for e in profile.events]
        messages = [Message(f.topic, f.payload, TS0 + 302) for f in frames if f is not None]
        batch = decoder.decode(messages, TS0 + 302)
        assert batch.rejects == [], (profile_id, batch.rejects[:1])


def test_loss_is_bursty_on_a_weak_link_and_absent_on_a_clean_one() -> None:
    rng = random.Random(4)
    weak = LinkQuality(p_good_to_bad=0.05, p_bad_to_good=0.2, loss_bad=0.9)
    losses = [weak.lost(rng) for _ in range(20_000)]
    share = sum(losses) / len(losses)
    assert 0.1 < share < 0.25
    runs = [len(r) for r in "".join("x" if x else "." for x in losses).split(".") if r]
    assert max(runs) >= 8  # losses come in bursts, not one by one
    clean = LinkQuality()
    assert not any(clean.lost(rng) for _ in range(10_000))


def test_what_a_link_loses_depends_only_on_its_own_traffic_so_a_scenario_replays_the_same() -> None:
    """The losses of one wireless device are the same whatever the rest of the hospital sends in
    between: at a compressed clock, which devices share a tick varies from run to run, and with one
    draw for the whole fleet a scenario's door lost its heartbeat in some runs and not in others."""

    def door_losses(chatter: int) -> list[bool]:
        fleet = Fleet(load_registry(DEMO_HOSPITAL), PROFILES, seed=7)
        door = next(d for d in fleet.devices.values() if d.wireless and d.profile.id == "fire-door")
        others = [d for d in fleet.devices.values() if d.device_id != door.device_id][:50]
        lost = []
        for i in range(3_000):
            before = fleet.stats.lost
            fleet.send_now(door.device_id, door.telemetry({"open": 1.0}, 1.7e9 + i))
            lost.append(fleet.stats.lost > before)
            for other in others[: chatter * (i % 3)]:
                fleet.send_now(other.device_id, other.telemetry(other.values(0.0, 1.7e9), 1.7e9 + i))
        return lost

    alone, among_others = door_losses(0), door_losses(5)
    assert any(alone)  # the wireless link does lose some
    assert alone == among_others


def test_naming_a_place_or_device_that_does_not_exist_is_an_error() -> None:
    fleet = Fleet(load_registry(DEMO_HOSPITAL), PROFILES)
    with pytest.raises(FleetError, match="no place"):
        fleet.flaming_fire("sxzyy/b9/f1/z1", 0.0)
    with pytest.raises(FleetError, match="no simulated device"):
        fleet.silence("no-such-device")
    with pytest.raises(FleetError, match="no combustible-gas"):
        fleet.gas_leak("sxzyy/b2/f3/z1/r303", 0.0)
    with pytest.raises(FleetError, match="not a wireless battery device"):
        fleet.battery("b2-f3-z1-r303-smk", 10)


def test_a_fire_reaches_the_room_first_then_the_zone_and_never_another_zone() -> None:
    fleet = Fleet(load_registry(DEMO_HOSPITAL), PROFILES, impairments=False)
    reached = fleet.flaming_fire("sxzyy/b2/f3/z1/r303", 0.0)
    assert reached[0] == "b2-f3-z1-r303-smk"
    assert all(d.startswith("b2-f3-z1-") for d in reached)
    assert len(reached) > 5

    def first_over(device_id: str, level: float) -> float:
        sim = fleet.devices[device_id]
        return next(t for t in range(0, 900, 2) if sim.values(float(t), TS0 + t)["smoke"] >= level)

    room, corridor = first_over("b2-f3-z1-r303-smk", 0.15), first_over("b2-f3-z1-corr-smk-1", 0.15)
    far_room = first_over("b2-f3-z1-r307-smk", 0.15)
    assert room < 60
    assert room + 20 < corridor < far_room  # through the door, then along the corridor
    assert "b2-f3-z2-r308-smk" not in reached


@pytest.mark.integration
async def test_devices_publish_real_payloads_with_retained_status_and_a_last_will(
    mosquitto: Mosquitto,
) -> None:
    registry = load_registry(DEMO_HOSPITAL)
    received: list[MQTTMessage] = []
    sub = Client(CallbackAPIVersion.VERSION2)
    sub.on_message = lambda _c, _u, m: received.append(m)
    sub.connect(mosquitto.host, mosquitto.port)
    sub.subscribe("fw/v1/sxzyy/#", qos=1)
    sub.loop_start()
    await asyncio.sleep(0.3)
    fleet = Fleet(registry, PROFILES, impairments=False)
    fleet.connect(mosquitto.host, mosquitto.port)
    door = "b2-f3-z1-st1-door"  # wireless: its own connection with a last will
    try:
        for t in range(0, 61, 2):
            fleet.step(float(t), TS0)
        # Everything sent before the cut is in before the cut is marked: on a loaded machine the
        # subscriber can lag, and a reading sent before the cut would count as one after it.
        deadline = time.monotonic() + 20
        while len(received) < fleet.stats.published:
            assert time.monotonic() < deadline, f"{len(received)} of {fleet.stats.published} arrived"
            await asyncio.sleep(0.05)
        fleet.silence(door, disconnect=True)
        cut = fleet.power_cut("sxzyy/b2/f5")
        cut_at = len(received)
        await asyncio.sleep(0.5)
        for t in range(62, 121, 2):
            fleet.step(float(t), TS0)
        deadline = time.monotonic() + 30  # the broker notices a dead connection within 1.5 keepalives
        while not any(m.topic.endswith(f"{door}/status") and m.payload == b"offline" for m in received):
            assert time.monotonic() < deadline, "no last will"
            await asyncio.sleep(0.2)
    finally:
        fleet.close()
        sub.loop_stop()
        sub.disconnect()

    statuses = {
        m.topic.split("/")[3] for m in received if m.topic.endswith("/status") and m.payload == b"online"
    }
    assert statuses == set(registry.devices)  # every device announced online (retained)
    telemetry = [m for m in received if m.topic.endswith("/telemetry")]
    assert len(telemetry) >= 4 * len(registry.devices)
    body = json.loads(telemetry[0].payload)
    dev = telemetry[0].topic.split("/")[3]
    assert set(body["v"]) == set(PROFILES[registry.devices[dev].profile].channels)
    seqs = [json.loads(m.payload)["seq"] for m in telemetry if m.topic.split("/")[3] == dev]
    assert seqs == list(range(1, len(seqs) + 1))
    after_cut = {m.topic.split("/")[3] for m in received[cut_at:] if m.topic.endswith("/telemetry")}
    assert cut
    assert not (set(cut) & after_cut)
    assert any(d.startswith("b2-f5-") for d in after_cut)  # its battery door monitors did not
    assert all(registry.devices[d].tags == [] for d in cut)
