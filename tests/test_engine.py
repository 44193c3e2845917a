"""The detection engine as a whole: every detector type from profiles, zone fusion, snapshots,
battery/signal/channel liveness and sensor health fed by ingest's out-of-range readings."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from core.domain import AlarmCategory, DetectorEvent
from core.registry import BuildingSpec, Device, FloorSpec, Registry, RoomSpec, SiteSpec, ZoneSpec
from detectors.engine import Engine, SnapshotError
from detectors.fusion import CONFIRMED
from detectors.samples import Samples
from device_profiles.schema import Profile
from ingest.decode import Decoder
from ingest.envelope import Message
from ingest.index import DeviceIndex

T0 = 1_800_000_000.0

HEAD = Profile.model_validate(
    {
        "id": "t-head",
        "name": "multi-sensor head",
        "name_zh": "复合探测器",
        "kind": "smoke_heat",
        "system": "fire_alarm",
        "report_interval_s": 10,
        "liveness": {"heartbeat_s": 30, "weak_signal_dbm": -100},
        "battery": {"low_percent": 20},
        "channels": {
            "smoke": {"unit": "dB/m", "range": [0, 2], "resolution": 0.001},
            "temp": {"unit": "°C", "range": [-20, 120], "resolution": 0.1},
        },
        "detectors": [
            {
                "type": "threshold",
                "channel": "smoke",
                "levels": [{"name": "alarm", "category": "fire", "at": 0.15, "clear": 0.1, "basis": "test"}],
            },
            {
                "type": "threshold",
                "channel": "temp",
                "levels": [{"name": "alarm", "category": "fire", "at": 57, "clear": 50, "basis": "test"}],
            },
            {
                "type": "rate_of_rise",
                "channel": "temp",
                "name": "rising",
                "category": "pre_alarm",
                "per_min": 5.0,
                "window_s": 30,
                "basis": "test",
            },
            {
                "type": "drift",
                "channel": "smoke",
                "name": "dirty",
                "category": "hazard",
                "reference": 0.02,
                "slack": 0.01,
                "limit": 0.3,
                "ignore_beyond": 0.1,
                "basis": "test",
            },
            {"type": "health", "channel": "temp", "stuck_s": 3600, "basis": "test"},
        ],
    }
)

GATEWAY = Profile.model_validate(
    {
        "id": "t-gateway",
        "name": "electrical fire monitor",
        "name_zh": "电气火灾监控",
        "kind": "electrical_fire",
        "system": "electrical_fire",
        "report_interval_s": 10,
        "liveness": {"heartbeat_s": 30, "channel_offline_after": 3},
        "channels": {
            "residual_current": {"unit": "mA", "range": [0, 2000], "resolution": 1},
            "temp_l1": {"unit": "°C", "range": [-20, 200], "resolution": 0.1},
        },
        "detectors": [
            {
                "type": "threshold",
                "channel": "temp_l1",
                "levels": [{"name": "alarm", "category": "fire", "at": 80, "clear": 70, "basis": "test"}],
            },
        ],
    }
)

PROFILES = {p.id: p for p in (HEAD, GATEWAY)}


def registry(without: str = "") -> Registry:
    zones = [
        ZoneSpec(id=f"z{z}", name=f"{z}区", rooms=[RoomSpec(id=f"r{z}", name=f"{z}号房")]) for z in (1, 2)
    ]
    site = SiteSpec(
        id="s1",
        name="医院",
        buildings=[BuildingSpec(id="b1", name="楼", floors=[FloorSpec(id="f1", name="1F", zones=zones)])],
    )
    devices = [
        Device(id=f"h{z}{i}", profile="t-head", place=f"s1/b1/f1/z{z}/r{z}") for z in (1, 2) for i in (1, 2)
    ]
    devices.append(Device(id="efm", profile="t-gateway", place="s1/b1/f1/z1"))
    return Registry([site], [d for d in devices if d.id != without])


@pytest.fixture
def index() -> DeviceIndex:
    return DeviceIndex.build(registry(), PROFILES)


def feed(engine: Engine, rows: Sequence[tuple[float, str, str, float]]) -> list[DetectorEvent]:
    idx = engine.index
    slot = np.array([idx.slot(d, c) for _, d, c, _ in rows], dtype=np.int32)
    ts = np.array([T0 + t for t, *_ in rows])
    value = np.array([v for *_, v in rows])
    return engine.process_samples(Samples(slot, ts, value))


def raised(events: list[DetectorEvent]) -> list[tuple[str, str]]:
    return [(e.device_id, e.alarm_type) for e in events if e.kind.value == "raise"]


def test_two_devices_of_one_zone_confirm_a_fire_after_both_single_alarms(index: DeviceIndex) -> None:
    engine = Engine(index, start=T0)
    first = feed(engine, [(0, "h11", "smoke", 0.3)])
    assert raised(first) == [("h11", "smoke.alarm")]  # the single alarm is not held back
    second = feed(engine, [(30, "h12", "smoke", 0.3)])
    assert raised(second) == [("h12", "smoke.alarm"), ("h11", CONFIRMED)]
    confirm = second[-1]
    assert confirm.category is AlarmCategory.FIRE
    assert "GB 50116" in confirm.basis


def test_devices_of_different_zones_or_far_apart_in_time_do_not_confirm(index: DeviceIndex) -> None:
    engine = Engine(index, start=T0)
    feed(engine, [(0, "h11", "smoke", 0.3), (1, "h21", "smoke", 0.3)])
    assert CONFIRMED not in {a for _, a in raised(feed(engine, [(2, "h11", "smoke", 0.3)]))}
    engine = Engine(index, start=T0, fusion_window_s=60)
    feed(engine, [(0, "h11", "smoke", 0.3), (10, "h11", "smoke", 0.01)])  # raised and cleared
    assert raised(feed(engine, [(200, "h12", "smoke", 0.3)])) == [("h12", "smoke.alarm")]


def test_smoke_plus_a_temperature_rise_confirms_even_on_one_head(index: DeviceIndex) -> None:
    engine = Engine(index, start=T0)
    rows = [(t, "h21", "temp", 22.0 + max(0, t - 20) * 0.2) for t in range(0, 80, 10)]  # 12 °C/min
    rows.append((75, "h21", "smoke", 0.2))
    events = feed(engine, rows)
    assert ("h21", "temp.rising") in raised(events)
    assert ("h21", CONFIRMED) in raised(events)


def test_the_confirmation_clears_when_the_zone_is_quiet(index: DeviceIndex) -> None:
    engine = Engine(index, start=T0)
    feed(engine, [(0, "h11", "smoke", 0.3), (1, "h12", "smoke", 0.3)])
    feed(engine, [(100, "h11", "smoke", 0.0)])
    events = feed(engine, [(110, "h12", "smoke", 0.0)])
    assert [(e.alarm_type, e.kind.value) for e in events if e.alarm_type == CONFIRMED] == [
        (CONFIRMED, "clear")
    ]


def test_a_dirty_chamber_is_a_hazard_and_a_fire_does_not_count_as_drift(index: DeviceIndex) -> None:
    engine = Engine(index, start=T0)
    fire = feed(engine, [(t, "h11", "smoke", 0.5) for t in range(0, 600, 10)])
    assert "smoke.dirty" not in {a for _, a in raised(fire)}
    engine = Engine(index, start=T0)
    creep = [(t * 600.0, "h12", "smoke", 0.02 + t * 0.002) for t in range(40)]  # +0.002 dB/m per 10 min
    events = feed(engine, creep)
    dirty = [e for e in events if e.alarm_type == "smoke.dirty"]
    assert [e.category for e in dirty] == [AlarmCategory.HAZARD]
    assert not [e for e in events if e.category is AlarmCategory.FIRE]


def test_a_snapshot_file_resumes_windows_and_baselines_after_a_restart(
    index: DeviceIndex, tmp_path: Path
) -> None:
    rising = [(t, "h11", "temp", 22.0 + max(0, t - 20) * 0.2) for t in range(0, 40, 10)]
    rest = [(t, "h11", "temp", 22.0 + max(0, t - 20) * 0.2) for t in range(40, 80, 10)]
    uninterrupted = Engine(index, start=T0)
    feed(uninterrupted, rising)
    expected = raised(feed(uninterrupted, rest))
    before = Engine(index, start=T0)
    feed(before, rising)
    before.save(tmp_path / "detectors.npz")
    after = Engine(index, start=T0)
    assert after.load(tmp_path / "detectors.npz") == after.n_units
    assert raised(feed(after, rest)) == expected == [("h11", "temp.rising")]


def test_a_snapshot_restores_into_a_changed_registry_by_device_and_alarm_type(
    index: DeviceIndex, tmp_path: Path
) -> None:
    engine = Engine(index, start=T0)
    feed(engine, [(0, "h11", "smoke", 0.3)])
    engine.save(tmp_path / "s.npz")
    other = Engine(DeviceIndex.build(registry(without="h12"), PROFILES), start=T0)
    # Every unit of the smaller registry resumes, though its devices' indexes moved up.
    assert other.load(tmp_path / "s.npz") == other.n_units < engine.n_units
    assert other.is_active("h11", "smoke.alarm")
    (tmp_path / "bad.npz").write_bytes(b"not a snapshot")
    with pytest.raises(SnapshotError):
        other.load(tmp_path / "bad.npz")
    # A snapshot of an earlier format is refused (the service then starts its detectors cold).
    np.savez(tmp_path / "v1.npz", version=np.array(1))
    with pytest.raises(SnapshotError, match="version"):
        other.load(tmp_path / "v1.npz")


def test_a_partial_restore_takes_only_the_listed_devices_and_keeps_the_rest(index: DeviceIndex) -> None:
    # A worker taking a partition over restores that partition's devices from the previous owner's
    # snapshot; the devices it owned already keep what it knows of them.
    rising = [(t, "h21", "temp", 22.0 + max(0, t - 20) * 0.2) for t in range(0, 40, 10)]
    rest = [(t, "h21", "temp", 22.0 + max(0, t - 20) * 0.2) for t in range(40, 80, 10)]
    previous = Engine(index, start=T0)
    feed(previous, [(0, "h11", "smoke", 0.3), (0, "h22", "smoke", 0.3), *rising])
    blob = previous.snapshot_bytes()
    taker = Engine(index, start=T0)
    feed(taker, [(0, "h12", "smoke", 0.3)])
    warm = taker.restore_bytes(blob, devices=["h11", "h21"])
    units_of = sum(len(b.info.units_of(index.dev_of[d])) for b in taker.banks for d in ("h11", "h21"))
    assert warm == units_of
    assert taker.is_active("h11", "smoke.alarm")  # taken over: as the snapshot had it
    assert not taker.is_active("h22", "smoke.alarm")  # not listed: the snapshot's state is not taken
    assert taker.is_active("h12", "smoke.alarm")  # its own: kept
    assert raised(feed(taker, rest)) == [("h21", "temp.rising")]  # the window resumes where it was


def test_a_listed_device_the_snapshot_lacks_starts_cold(index: DeviceIndex) -> None:
    smaller = Engine(DeviceIndex.build(registry(without="h12"), PROFILES), start=T0)
    taker = Engine(index, start=T0)
    feed(taker, [(0, "h12", "smoke", 0.3)])  # stale knowledge from an earlier ownership
    taker.restore_bytes(smaller.snapshot_bytes(), devices=["h12"])
    assert not taker.is_active("h12", "smoke.alarm")


def test_a_partial_restore_brings_the_listed_devices_zone_signals_along(index: DeviceIndex) -> None:
    previous = Engine(index, start=T0)
    feed(previous, [(0, "h11", "smoke", 0.3)])  # zone 1's first signal, seen by the previous owner
    taker = Engine(index, start=T0)
    feed(taker, [(0, "h21", "smoke", 0.3)])  # zone 2's first signal, the taker's own device
    taker.restore_bytes(previous.snapshot_bytes(), devices=["h11"])
    # The second signal of each zone confirms it: the taken device's signal came with its state,
    # and the taker's own signal was kept.
    assert ("h11", CONFIRMED) in raised(feed(taker, [(30, "h12", "smoke", 0.3)]))
    assert ("h21", CONFIRMED) in raised(feed(taker, [(31, "h22", "smoke", 0.3)]))


def test_a_worker_watches_the_liveness_of_its_own_devices_only(index: DeviceIndex) -> None:
    # Devices of partitions another worker owns are that worker's to call offline: here they are
    # never silent. Devices taken over count their silence from the takeover: the engine ran since
    # T0 without hearing them, and liveness is not in a snapshot, so they would be raised at once.
    later = T0 + 3600
    devices = np.array(index.device_ids)
    mine = np.isin(devices, ["h11", "efm", "h21"])
    gained = np.isin(devices, ["h11", "efm"])
    taken = Engine(index, start=T0)
    taken.own(mine, gained, later)
    cold = Engine(index, start=T0)

    def silent(engine: Engine, now: float) -> set[str]:
        # Checks in the 30 s after `now`: within every window here (90 s for a device, 30 s for a
        # gateway's channel), so a device raised then was silent before `now`.
        events = [e for t in range(0, 30, 10) for e in engine.check(now + t)]
        raised_ = [e for e in events if e.kind.value == "raise"]
        return {e.device_id for e in raised_} | {m for e in raised_ for m in e.members}

    assert {"h11", "efm", "h21", "h12"} <= silent(cold, later)  # the check would raise them
    assert silent(taken, later) == {"h21"}  # its own, not taken just now: silent since T0
    assert not silent(taken, later + 3600) - {"h11", "efm", "h21"}  # never another worker's


def test_snapshot_bytes_round_trip_and_garbage_is_refused(index: DeviceIndex) -> None:
    engine = Engine(index, start=T0)
    feed(engine, [(0, "h11", "smoke", 0.3)])
    other = Engine(index, start=T0)
    assert other.restore_bytes(engine.snapshot_bytes()) == other.n_units
    assert other.is_active("h11", "smoke.alarm")
    with pytest.raises(SnapshotError):
        other.restore_bytes(b"not a snapshot")


def test_resume_aligns_restored_state_with_the_alarm_store(index: DeviceIndex) -> None:
    engine = Engine(index, start=T0)
    feed(engine, [(0, "h11", "smoke", 0.3)])
    engine.resume(set())  # a person cleared it while the service was down
    assert raised(feed(engine, [(10, "h11", "smoke", 0.3)])) == [("h11", "smoke.alarm")]


def test_low_battery_weak_signal_and_health_come_from_telemetry(index: DeviceIndex) -> None:
    engine = Engine(index, start=T0)
    decoder = Decoder(index)

    def msg(seq: int, body: str) -> Message:
        return Message(
            "fw/v1/s1/h11/telemetry", f'{{"ts": {T0 + seq}, "seq": {seq}, {body}}}'.encode(), T0 + seq
        )

    batch = decoder.decode(
        [
            msg(1, '"batt": 15, "rssi": -105, "v": {"temp": 22.0}'),
            msg(2, '"batt": 15, "rssi": -106, "v": {"temp": 22.0}'),
            msg(3, '"batt": 15, "rssi": -107, "v": {"temp": 22.0}'),
            msg(4, '"batt": 15, "rssi": -107, "v": {"temp": 500.0}'),  # out of range: rejected, counted
        ],
        T0 + 5,
    )
    assert [r.reason.value for r in batch.rejects] == ["out_of_range"]
    events = engine.process(batch)
    assert set(raised(events)) >= {
        ("h11", "device.low_battery"),
        ("h11", "device.weak_signal"),
        ("h11", "temp.out_of_range"),
    }
    assert all(e.category is AlarmCategory.FAULT for e in events)


def test_a_silent_channel_behind_a_live_device_goes_stale(index: DeviceIndex) -> None:
    engine = Engine(index, start=T0)
    decoder = Decoder(index)
    for i in range(1, 6):
        body = f'{{"ts": {T0 + i * 10}, "seq": {i}, "v": {{"residual_current": 40}}}}'.encode()
        engine.process(decoder.decode([Message("fw/v1/s1/efm/telemetry", body, T0 + i * 10)], T0 + i * 10))
    events = engine.check(T0 + 51)
    assert raised(events) == [("efm", "temp_l1.stale")]
    assert "efm" not in {d for d, a in raised(events) if a == "device.offline"}
