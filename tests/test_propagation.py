"""Propagation up the place tree: the pure function, then the places API over a real SQLite store."""

from __future__ import annotations

import doctest
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import alarms.propagation
from alarms.propagation import AlarmRecord, PlaceStatus, ancestors, propagate
from alarms.service import AlarmService
from core.domain import (
    SEVERITY_OF,
    AlarmCategory,
    AlarmState,
    DetectorEvent,
    DetectorEventKind,
    Severity,
    SystemType,
)
from core.registry import BuildingSpec, Device, FloorSpec, Registry, RoomSpec, SiteSpec, ZoneSpec
from device_profiles.schema import Profile
from tests.conftest import PROFILES, SMOKE, alarm_service, asgi_api

T0 = 1_800_000_000.0
ROOM = "s/b1/f3/z1/r305"
PLACES = [
    "s",
    "s/b1",
    "s/b1/f3",
    "s/b1/f3/z1",
    ROOM,
    "s/b1/f3/z2",
    "s/b2",
    "s/b2/f1",
    "s/b2/f1/z1",
]

_ids = iter(range(1, 1_000_000))


def alarm(
    place: str,
    category: AlarmCategory = AlarmCategory.FIRE,
    *,
    system: SystemType = SystemType.FIRE_ALARM,
    state: AlarmState = AlarmState.ACTIVE_UNACKNOWLEDGED,
    severity: Severity | None = None,
    first_ts: float = T0,
    device: str = "dev",
    alarm_id: int | None = None,
) -> AlarmRecord:
    return AlarmRecord(
        id=alarm_id if alarm_id is not None else next(_ids),
        device_id=device,
        alarm_type=f"{category.value}.test",
        category=category,
        severity=severity or SEVERITY_OF[category],
        system=system.value,
        place=place,
        state=state,
        first_ts=first_ts,
    )


def counts(s: PlaceStatus) -> dict[str, int]:
    return {c.value: n for c, n in s.counts.items()}


# --- the pure function ---------------------------------------------------------------------------


def test_the_module_examples_hold() -> None:
    failures, tried = doctest.testmod(alarms.propagation)
    assert tried > 0
    assert failures == 0


def test_ancestors_walk_up_to_the_site() -> None:
    assert ancestors(ROOM) == [ROOM, "s/b1/f3/z1", "s/b1/f3", "s/b1", "s"]
    assert ancestors("s") == ["s"]


def test_a_fire_in_a_room_shows_at_its_zone_floor_building_and_site() -> None:
    fire = alarm(ROOM, device="smk-305")
    status = propagate(PLACES, [fire])
    for path in (ROOM, "s/b1/f3/z1", "s/b1/f3", "s/b1", "s"):
        worst = status[path].worst
        assert worst is not None, path
        assert (worst.id, worst.device_id, worst.place) == (fire.id, "smk-305", ROOM)
        assert counts(status[path]) == {"fire": 1}
    for path in ("s/b1/f3/z2", "s/b2", "s/b2/f1", "s/b2/f1/z1"):  # siblings and cousins stay quiet
        assert status[path] == PlaceStatus(path)


def test_a_fault_elsewhere_does_not_outrank_the_fire() -> None:
    fire = alarm(ROOM, first_ts=T0 + 60)  # later than the fault: rank goes by category first
    fault = alarm("s/b2/f1/z1", AlarmCategory.FAULT, first_ts=T0)
    hazard = alarm("s/b1/f3/z1", AlarmCategory.HAZARD)
    for order in ([fire, fault, hazard], [hazard, fault, fire]):
        status = propagate(PLACES, order)
        assert status["s"].worst == fire
        assert counts(status["s"]) == {"fire": 1, "fault": 1, "hazard": 1}
        assert status["s"].total == 3
        assert status["s/b1"].worst == fire
        assert counts(status["s/b1"]) == {"fire": 1, "hazard": 1}
        assert status["s/b2"].worst == fault  # the other building shows its own worst
        assert counts(status["s/b2"]) == {"fault": 1}


def test_worst_goes_by_category_rank_then_severity_then_the_oldest() -> None:
    supervisory = alarm("s/b1/f3/z2", AlarmCategory.SUPERVISORY)
    pre_alarm = alarm("s/b2/f1/z1", AlarmCategory.PRE_ALARM)
    assert propagate(PLACES, [supervisory, pre_alarm])["s"].worst == pre_alarm

    minor = alarm("s/b1/f3/z2", AlarmCategory.FAULT, severity=Severity.MINOR)
    major = alarm("s/b2/f1/z1", AlarmCategory.FAULT, severity=Severity.MAJOR)
    assert propagate(PLACES, [minor, major])["s"].worst == major

    newer = alarm("s/b1/f3/z2", first_ts=T0 + 5, alarm_id=1)
    older = alarm("s/b2/f1/z1", first_ts=T0, alarm_id=2)
    assert propagate(PLACES, [newer, older])["s"].worst == older  # where the fire began
    same_a = alarm("s/b1/f3/z2", alarm_id=11)
    same_b = alarm("s/b2/f1/z1", alarm_id=10)
    assert propagate(PLACES, [same_a, same_b])["s"].worst == same_b  # and never by input order


def test_a_gas_alarm_takes_the_gas_slot_and_never_the_fire_side_worst() -> None:
    gas = alarm("s/b1/f3/z2", AlarmCategory.FIRE, system=SystemType.COMBUSTIBLE_GAS, device="gas-1")
    gas_fault = alarm("s/b1/f3/z2", AlarmCategory.FAULT, system=SystemType.COMBUSTIBLE_GAS)
    fault = alarm(ROOM, AlarmCategory.FAULT)
    status = propagate(PLACES, [gas, gas_fault, fault])
    for path in ("s/b1/f3", "s/b1", "s"):
        assert status[path].worst == fault  # a gas "fire" does not outrank a fire-side fault
        assert status[path].worst_gas == gas
        assert counts(status[path]) == {"fault": 1}
        assert {c.value: n for c, n in status[path].gas_counts.items()} == {"fire": 1, "fault": 1}
        assert (status[path].total, status[path].gas_total) == (1, 2)
    assert status["s/b1/f3/z2"].worst is None  # only gas there
    assert status["s/b1/f3/z2"].worst_gas == gas
    assert status["s/b1/f3/z1"].worst_gas is None


def test_cleared_and_closed_alarms_do_not_propagate_acknowledged_ones_do() -> None:
    cleared = alarm(ROOM, state=AlarmState.CLEARED_UNACKNOWLEDGED)
    cleared_acked = alarm(ROOM, state=AlarmState.CLEARED_ACKNOWLEDGED)
    closed = alarm(ROOM, state=AlarmState.CLOSED)
    gas_cleared = alarm(ROOM, system=SystemType.COMBUSTIBLE_GAS, state=AlarmState.CLEARED_UNACKNOWLEDGED)
    status = propagate(PLACES, [cleared, cleared_acked, closed, gas_cleared])
    for path in PLACES:
        assert status[path] == PlaceStatus(path)
        assert status[path].total == status[path].gas_total == 0

    acked = alarm(ROOM, state=AlarmState.ACTIVE_ACKNOWLEDGED)
    assert propagate(PLACES, [closed, acked])["s"].worst == acked


def test_every_place_is_reported_and_so_is_every_ancestor_of_an_alarm() -> None:
    stray = alarm("t/b9/f1/z1")  # a place the given list does not know (e.g. the registry changed)
    no_place = alarm("")  # a device no longer registered: nowhere to show it
    status = propagate(PLACES, [stray, no_place])
    assert set(status) == {*PLACES, "t", "t/b9", "t/b9/f1", "t/b9/f1/z1"}
    assert status["t"].worst == stray
    assert all(status[p].worst is None for p in PLACES)


def test_many_alarms_are_counted_once_per_ancestor() -> None:
    many = [alarm(f"s/b1/f3/z{z}", AlarmCategory.FAULT) for z in range(1, 3) for _ in range(500)]
    status = propagate(PLACES, many)
    assert counts(status["s"]) == {"fault": 1000}
    assert counts(status["s/b1/f3/z1"]) == {"fault": 500}
    assert status["s/b2"].total == 0


# --- the API over a real store -------------------------------------------------------------------

GAS = Profile.model_validate(
    {
        **SMOKE.model_dump(mode="json", exclude_none=True),
        "id": "t-gas",
        "name": "test gas detector",
        "name_zh": "测试可燃气体探测器",
        "kind": "combustible_gas",
        "system": "combustible_gas",
    }
)
API_PROFILES = {**PROFILES, GAS.id: GAS}


def hospital() -> Registry:
    """s1 > 住院楼 b1 > 3F f3 > zones z1 (room r305), z2 (kitchen); 门诊楼 b2 > 1F > z1; and site s2."""
    s1 = SiteSpec(
        id="s1",
        name="测试医院",
        buildings=[
            BuildingSpec(
                id="b1",
                name="住院楼",
                floors=[
                    FloorSpec(
                        id="f3",
                        name="3F",
                        zones=[
                            ZoneSpec(id="z1", name="东区病区", rooms=[RoomSpec(id="r305", name="305病房")]),
                            ZoneSpec(id="z2", name="配餐间"),
                        ],
                    )
                ],
            ),
            BuildingSpec(
                id="b2",
                name="门诊楼",
                floors=[FloorSpec(id="f1", name="1F", zones=[ZoneSpec(id="z1", name="大厅")])],
            ),
        ],
    )
    s2 = SiteSpec(
        id="s2",
        name="分院",
        buildings=[
            BuildingSpec(
                id="b1",
                name="综合楼",
                floors=[FloorSpec(id="f1", name="1F", zones=[ZoneSpec(id="z1", name="A区")])],
            )
        ],
    )
    devices = [
        Device(id="smk-305", profile="t-smoke", place="s1/b1/f3/z1/r305"),
        Device(id="smk-z2", profile="t-smoke", place="s1/b1/f3/z2"),
        Device(id="gas-z2", profile="t-gas", place="s1/b1/f3/z2"),
        Device(id="smk-b2", profile="t-smoke", place="s1/b2/f1/z1"),
        Device(id="smk-s2", profile="t-smoke", place="s2/b1/f1/z1"),
    ]
    return Registry([s1, s2], devices)


@pytest.fixture
def service(tmp_path: Path) -> AlarmService:
    return alarm_service(tmp_path / "state.sqlite", T0, hospital(), API_PROFILES)


@pytest.fixture
async def api(service: AlarmService, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_api(service, tmp_path) as client:
        # the status board is for reading: a wall display's viewer account asks for it
        client.headers.update(client.as_("wall-display", "viewer", display_name="监控大屏"))
        yield client


def event(
    device: str, alarm_type: str, category: AlarmCategory, kind: DetectorEventKind = DetectorEventKind.RAISE
) -> DetectorEvent:
    return DetectorEvent(device, alarm_type, kind, category, T0, 0.3)


@pytest.fixture
def incident(service: AlarmService) -> dict[str, int]:
    """A fire in room 305, a gas alarm in the kitchen zone, a fault in the other building, a fire
    at the other site; a kitchen smoke alarm that has been reset (a fire alarm latches until then)."""
    raised, _ = service.apply(
        [
            event("smk-305", "smoke.alarm", AlarmCategory.FIRE),
            event("gas-z2", "gas.alarm", AlarmCategory.FIRE),
            event("smk-b2", "device.fault", AlarmCategory.FAULT),
            event("smk-s2", "smoke.alarm", AlarmCategory.FIRE),
            event("smk-z2", "smoke.alarm", AlarmCategory.FIRE),
        ]
    )
    ids = {t.after["device_id"]: t.alarm_id for t in raised}
    service.reset(ids["smk-z2"], actor="op")
    return ids


def zero(**nonzero: int) -> dict[str, int]:
    return {c.value: nonzero.get(c.value, 0) for c in AlarmCategory}


async def test_the_site_shows_the_fire_the_gas_alarm_apart_and_the_counts(
    api: httpx.AsyncClient, incident: dict[str, int]
) -> None:
    r = await api.get("/api/v1/places/s1")
    assert r.status_code == 200, r.text
    body = r.json()
    status = body["status"]
    assert status["worst"]["id"] == incident["smk-305"]
    assert status["worst"]["place"] == "s1/b1/f3/z1/r305"
    assert status["worst"]["category"] == "fire"
    assert status["worst"]["severity"] == "critical"
    assert status["worst"]["device_id"] == "smk-305"
    assert status["worst"]["alarm_type"] == "smoke.alarm"
    assert status["worst_gas"]["id"] == incident["gas-z2"]
    assert status["worst_gas"]["system"] == "combustible_gas"
    assert status["counts"] == zero(fire=1, fault=1)  # the reset kitchen smoke alarm is not counted
    assert status["gas_counts"] == zero(fire=1)
    assert (status["active"], status["gas_active"]) == (2, 1)
    children = {c["path"]: c["status"] for c in body["children"]}
    assert set(children) == {"s1/b1", "s1/b2"}
    assert children["s1/b1"]["worst"]["id"] == incident["smk-305"]
    assert children["s1/b2"]["worst"]["alarm_type"] == "device.fault"
    assert children["s1/b2"]["worst_gas"] is None


async def test_a_floor_lists_its_zones_with_their_own_status(
    api: httpx.AsyncClient, incident: dict[str, int]
) -> None:
    body = (await api.get("/api/v1/places/s1/b1/f3")).json()
    assert (body["kind"], body["name"], body["parent"]) == ("floor", "3F", "s1/b1")
    zones = {c["path"]: c for c in body["children"]}
    assert list(zones) == ["s1/b1/f3/z1", "s1/b1/f3/z2"]
    assert zones["s1/b1/f3/z1"]["status"]["worst"]["id"] == incident["smk-305"]
    kitchen = zones["s1/b1/f3/z2"]["status"]
    assert kitchen["worst"] is None  # only gas is active there
    assert kitchen["worst_gas"]["device_id"] == "gas-z2"

    room = (await api.get("/api/v1/places/s1/b1/f3/z1/r305")).json()
    assert room["children"] == []
    assert room["status"]["worst"]["id"] == incident["smk-305"]


async def test_the_list_filters_by_site_and_kind_and_pages(
    api: httpx.AsyncClient, incident: dict[str, int]
) -> None:
    buildings = (await api.get("/api/v1/places", params={"kind": "building"})).json()
    assert [p["path"] for p in buildings["items"]] == ["s1/b1", "s1/b2", "s2/b1"]
    by_path = {p["path"]: p["status"] for p in buildings["items"]}
    assert by_path["s1/b1"]["worst"]["id"] == incident["smk-305"]
    assert by_path["s1/b1"]["worst_gas"]["id"] == incident["gas-z2"]
    assert by_path["s1/b2"]["counts"] == zero(fault=1)
    assert by_path["s2/b1"]["worst"]["id"] == incident["smk-s2"]  # each site its own alarms

    s1 = (await api.get("/api/v1/places", params={"site": "s1"})).json()
    assert s1["total"] == 9
    assert all(p["site"] == "s1" for p in s1["items"])
    page = (await api.get("/api/v1/places", params={"site": "s1", "limit": 3, "offset": 3})).json()
    assert (page["total"], page["limit"], page["offset"]) == (9, 3, 3)
    assert [p["path"] for p in page["items"]] == [p["path"] for p in s1["items"][3:6]]

    quiet = (await api.get("/api/v1/places", params={"site": "s2", "kind": "site"})).json()
    assert quiet["items"][0]["status"]["counts"] == zero(fire=1)
    none = (await api.get("/api/v1/places", params={"site": "nowhere"})).json()
    assert (none["items"], none["total"]) == ([], 0)


async def test_places_without_alarms_report_an_empty_status(api: httpx.AsyncClient) -> None:
    body = (await api.get("/api/v1/places/s1")).json()
    assert body["status"] == {
        "worst": None,
        "worst_gas": None,
        "active": 0,
        "gas_active": 0,
        "counts": zero(),
        "gas_counts": zero(),
    }


async def test_an_unknown_place_is_a_404_problem(api: httpx.AsyncClient) -> None:
    r = await api.get("/api/v1/places/s1/b9")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["title"] == "Not found"
    assert "s1/b9" in r.json()["detail"]


@pytest.mark.parametrize(
    ("url", "params"),
    [
        ("/api/v1/places/s1//b1", {}),
        ("/api/v1/places/s1/b1/", {}),
        ("/api/v1/places/s1/b+1", {}),
        ("/api/v1/places/s1/b1/f3/z1/r305/x", {}),  # deeper than a room
        ("/api/v1/places/s1%00", {}),
        ("/api/v1/places/" + "/".join(["a" * 64] * 5) + "x", {}),
        ("/api/v1/places/-s1", {}),
        ("/api/v1/places", {"kind": "wing"}),
        ("/api/v1/places", {"site": "s1/b1"}),
        ("/api/v1/places", {"site": "%"}),
        ("/api/v1/places", {"limit": 0}),
        ("/api/v1/places", {"offset": -1}),
    ],
)
async def test_bad_input_is_a_4xx_problem_never_a_500(
    api: httpx.AsyncClient, url: str, params: dict[str, Any]
) -> None:
    r = await api.get(url, params=params)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json")
