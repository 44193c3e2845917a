"""A place's label says each name once (core/place_label.py), whether the registry's zone and room
names repeat their floor's name or not."""

from __future__ import annotations

from core.place_label import said_once
from core.registry import BuildingSpec, Device, FloorSpec, Registry, RoomSpec, SiteSpec, ZoneSpec
from device_profiles.loader import load_profiles
from ingest.index import DeviceIndex


def test_a_zone_named_with_its_floor_reads_the_floor_once() -> None:
    assert said_once(["门诊医技楼", "1F", "1F 门诊大厅"]) == ["门诊医技楼", "1F", "门诊大厅"]


def test_a_room_named_with_its_floor_and_zone_keeps_only_its_own_name() -> None:
    names = ["住院楼", "2F", "2F 西区呼吸内科病区", "2F 西区呼吸内科病区走廊"]
    assert said_once(names) == ["住院楼", "2F", "西区呼吸内科病区", "走廊"]


def test_names_that_do_not_repeat_are_kept_as_they_are() -> None:
    assert said_once(["住院楼", "3F", "东区", "305病房"]) == ["住院楼", "3F", "东区", "305病房"]


def test_a_room_named_exactly_like_its_zone_is_left_out() -> None:
    assert said_once(["门诊医技楼", "1F", "门诊大厅", "门诊大厅"]) == ["门诊医技楼", "1F", "门诊大厅"]


def test_the_service_labels_a_place_without_repeats() -> None:
    room = RoomSpec(id="hall", name="1F 门诊大厅")
    zone = ZoneSpec(id="z1", name="1F 门诊大厅", rooms=[room])
    floor = FloorSpec(id="f1", name="1F", zones=[zone])
    site = SiteSpec(id="h", name="医院", buildings=[BuildingSpec(id="b1", name="门诊医技楼", floors=[floor])])
    device = Device(id="SD-1F-01", profile="smoke-photoelectric", place="h/b1/f1/z1/hall")
    index = DeviceIndex.build(Registry([site], [device]), load_profiles())
    assert index.place_label("h/b1/f1/z1/hall") == "门诊医技楼 1F 门诊大厅"
