"""Every detail a detector writes renders in Chinese without its English or its identifiers
(alarms/describe.py), from the producers themselves: the shipped profiles' compiled units, liveness,
device events, zone fusion and the service's own alarms."""

from __future__ import annotations

import re

import pytest

from alarms.describe import describe
from alarms.type_names import type_zh
from core.domain import DetectorEventKind, DeviceEventKind
from detectors.catalog import compile_banks
from detectors.device_events import DeviceEventMapper
from detectors.liveness import LivenessWatch
from device_profiles.loader import load_profiles
from firewatch.faults import DETAIL, Condition
from ingest.decode import DeviceEventMsg
from ingest.gb26875.points import unregistered_name
from tests.test_detector_layout import shipped_index

# What may stay Latin in a Chinese detail: units, device ids, a GB/T 26875.3 address.
_UNITS = {"dB/m", "C", "MPa", "LEL", "mA", "A", "m", "dBm", "%", "s", "z", "min"}
_LATIN = re.compile(r"(?<![\w-])[A-Za-z_][A-Za-z_./]*")


def latin_words(text: str, device_ids: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Latin words left in a text, units and the device ids named aside."""
    for device_id in sorted(device_ids, key=len, reverse=True):
        text = text.replace(device_id, "")
    words = []
    for w in (w.rstrip("./") for w in _LATIN.findall(text)):
        if w in _UNITS or re.fullmatch(r"[A-Z]|0x[0-9a-f]*|x[0-9a-f]+", w):  # L1, N: phases
            continue
        words.append(w)
    return words


def test_a_smoke_fire_alarm_reads_as_its_channel_and_threshold_in_chinese() -> None:
    detail = "smoke >= 0.15 dB/m (clears below 0.1); 0.18 dB/m"
    d = describe("smoke.alarm", detail, channel="smoke", value=0.18)
    assert d.zh == "烟雾 ≥ 0.15 dB/m（低于 0.1 dB/m 恢复）；读数 0.18 dB/m"
    assert d.en == "Smoke ≥ 0.15 dB/m (clears below 0.1 dB/m); reading 0.18 dB/m"


def test_an_offline_device_and_a_device_fault_read_in_chinese() -> None:
    offline = describe("device.offline", "no message for 90 s (limit 90 s)")
    assert offline.zh == "90 秒未收到设备消息（超过 90 秒即离线）"
    assert describe("device.fault", "device reported fault (code 3)").zh == "设备上报故障（代码 3）"


def test_an_unregistered_gb26875_point_is_named_by_its_addresses() -> None:
    detail = f"device reported unregistered (channel {unregistered_name((1, 1, 23, 0x90001))} code 3)"
    assert describe("device.unregistered", detail).zh == (
        "设备上报未登记部件（部件 系统类型 1、系统地址 1、部件类型 23、部件地址 0x90001，代码 3）"
    )


def test_every_compiled_unit_of_the_shipped_profiles_renders_in_chinese() -> None:
    index = shipped_index(per_profile=1)
    seen = 0
    for bank in compile_banks(index):
        for info in bank.info:
            detail = f"{info.detail}; {1.25:g} {info.evidence}"  # as detectors/engine.py appends it
            d = describe(info.alarm_type, detail, channel=info.channel, value=1.25)
            assert d.zh, (info.alarm_type, detail)
            assert latin_words(d.zh) == [], (info.alarm_type, detail, d.zh)
            assert "_" not in d.en, (detail, d.en)
            seen += 1
    assert seen > 50


@pytest.mark.parametrize("event", sorted(DeviceEventKind, key=str))
def test_every_device_event_that_raises_renders_in_chinese(event: DeviceEventKind) -> None:
    index = shipped_index(per_profile=1)
    mapper = DeviceEventMapper(index)
    for dev, device_id in enumerate(index.device_ids):
        msg = DeviceEventMsg(dev, device_id, 100.0, event, "gb:1/1/23/0x90001", 3)
        for e in mapper.map([msg]):
            d = describe(e.alarm_type, e.detail, channel=e.channel, value=e.value)
            assert d.zh.startswith("设备上报"), (e.detail, d.zh)
            assert latin_words(d.zh) == [], (e.detail, d.zh)


def test_an_offline_device_from_the_liveness_watch_renders_in_chinese() -> None:
    index = shipped_index(per_profile=1)
    watch = LivenessWatch(index, start=0.0)
    events = [e for e in watch.check(100_000.0) if e.kind is DetectorEventKind.RAISE]
    assert events
    for e in events:
        d = describe(e.alarm_type, e.detail, channel=e.channel, value=e.value)
        assert d.zh, e.detail
        assert latin_words(d.zh, index.device_ids) == [], (e.detail, d.zh)


@pytest.mark.parametrize("condition", list(Condition))
def test_the_services_own_alarms_show_their_chinese_head(condition: Condition) -> None:
    d = describe(condition.value, f"{DETAIL[condition]}: broker at 127.0.0.1:1883 refused")
    assert d.zh == DETAIL[condition].split(" / ")[0]
    assert "refused" in d.en


def test_zone_fusion_names_both_detectors_in_chinese() -> None:
    d = describe("zone.fire_confirmed", "smoke (SD-1) and a temperature rise (HD-2 temp.rise) in 2F 东区")
    assert d.zh == "2F 东区：SD-1 感烟报警，且 HD-2 温度温升报警"


def test_a_detail_no_pattern_knows_is_never_shown_raw_in_chinese() -> None:
    d = describe("pressure.low", "pressure went somewhere odd", channel="pressure", value=0.12)
    assert d.zh == "压力 0.12 MPa"
    assert d.en == "pressure went somewhere odd"


def test_every_shipped_alarm_type_has_a_chinese_name_without_identifiers() -> None:
    for profile in load_profiles().values():
        for alarm_type in profile.alarm_types():
            assert latin_words(type_zh(alarm_type)) in ([], ["InfluxDB"]), alarm_type
