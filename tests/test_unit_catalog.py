"""Detector units compiled a profile at a time: the same units, in the same order, as one device at
a time gives, and each unit's description made only when asked for."""

from __future__ import annotations

from core.domain import AlarmCategory
from core.registry import Device
from detectors.catalog import UnitInfo, compile_banks
from detectors.engine import Engine
from ingest.index import DeviceIndex
from tests.conftest import PROFILES, small_registry


def mixed_index() -> DeviceIndex:
    # Profiles interleaved in id order: prs-1, prs-2 sort among the smoke detectors.
    registry = small_registry(zones=2, smoke_per_zone=2).with_device(
        Device(id="smk-1-15", profile="t-pressure", place="s1/b1/f1/z2")
    )
    return DeviceIndex.build(registry, PROFILES)


def test_units_are_in_device_order_and_in_profile_order_within_a_device() -> None:
    index = mixed_index()
    banks = {b.name: b for b in compile_banks(index)}
    threshold = banks["threshold"]
    keys = [(i.device_id, i.alarm_type) for i in threshold.info]
    assert keys == [
        ("prs-1", "pressure.low"),
        ("smk-1-1", "smoke.pre_alarm"),
        ("smk-1-1", "smoke.alarm"),
        ("smk-1-15", "pressure.low"),
        ("smk-1-2", "smoke.pre_alarm"),
        ("smk-1-2", "smoke.alarm"),
        ("smk-2-1", "smoke.pre_alarm"),
        ("smk-2-1", "smoke.alarm"),
        ("smk-2-2", "smoke.pre_alarm"),
        ("smk-2-2", "smoke.alarm"),
    ]
    # Each unit watches its own device's channel, with its own level's parameters.
    for u, info in enumerate(threshold.info):
        assert info.channel is not None
        assert threshold.detector.unit_slot[u] == index.slot(info.device_id, info.channel)
    at = dict(zip(keys, threshold.detector.unit_params("at").tolist(), strict=True))
    assert at[("smk-2-1", "smoke.alarm")] == 0.15
    assert at[("smk-1-15", "pressure.low")] == 0.10
    assert threshold.info[2] == UnitInfo(
        "smk-1-1",
        "smoke.alarm",
        AlarmCategory.FIRE,
        "smoke",
        "GB 4715-2024 §5.7",
        threshold.info[2].detail,
        "dB/m",
    )
    # Battery units are by device, for the profiles that have a battery.
    battery = banks["battery"]
    assert [i.device_id for i in battery.info] == [
        d for d in index.device_ids if d.startswith("smk-") and d != "smk-1-15"
    ]
    assert battery.detector.unit_slot.tolist() == [index.dev_of[i.device_id] for i in battery.info]


def test_units_of_one_profile_entry_share_one_parameter_row() -> None:
    banks = {b.name: b for b in compile_banks(mixed_index())}
    threshold = banks["threshold"].detector
    # Two smoke levels and one pressure level: three rows for ten units, each row a distinct entry.
    assert threshold.params["at"].size == 3
    rows = {(i.alarm_type, int(threshold.row[u])) for u, i in enumerate(banks["threshold"].info)}
    assert len(rows) == 3
    assert len({r for _, r in rows}) == 3
    # A parameter keeps the type the profile gives it: a repeat count is an integer, as per unit before.
    assert threshold.params["repeat"].dtype == threshold.unit_params("repeat").dtype
    assert threshold.params["repeat"].dtype.kind == "i"


def test_the_engine_finds_a_unit_by_device_and_alarm_type() -> None:
    engine = Engine(mixed_index(), start=0.0)
    engine.resume({("smk-2-1", "smoke.alarm"), ("smk-1-15", "pressure.low"), ("nobody", "smoke.alarm")})
    assert engine.is_active("smk-2-1", "smoke.alarm")
    assert engine.is_active("smk-1-15", "pressure.low")
    assert not engine.is_active("smk-2-1", "smoke.pre_alarm")
    assert not engine.is_active("smk-2-2", "smoke.alarm")
    assert not engine.is_active("nobody", "smoke.alarm")
    engine.forget_device("smk-2-1")  # a reset: its fire and pre-alarm units start afresh
    assert not engine.is_active("smk-2-1", "smoke.alarm")
    assert engine.is_active("smk-1-15", "pressure.low")
