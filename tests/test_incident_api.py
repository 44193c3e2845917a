"""The incident endpoints over a real SQLite store: one zone fire is one incident holding its
alarms; its steps answer with the incident as it now stands; wrong states are 409, bad input a 4xx
problem, never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from alarms.service import AlarmService
from core.domain import AlarmCategory, DetectorEvent, DetectorEventKind
from tests.conftest import ApiClient, alarm_service, asgi_api

T0 = 1_800_000_000.0


@pytest.fixture
def alarms(tmp_path: Path) -> AlarmService:
    return alarm_service(tmp_path / "state.sqlite", T0)


@pytest.fixture
async def api(alarms: AlarmService, tmp_path: Path) -> AsyncIterator[ApiClient]:
    async with asgi_api(alarms, tmp_path) as client:
        yield client


def fire(alarms: AlarmService, device: str, category: AlarmCategory = AlarmCategory.FIRE) -> None:
    alarm_type = "smoke.alarm" if category is AlarmCategory.FIRE else "device.fault"
    alarms.apply([DetectorEvent(device, alarm_type, DetectorEventKind.RAISE, category, T0, 0.3)])


async def test_a_zone_fire_is_one_incident_with_its_alarms_unacknowledged_first(
    api: ApiClient, alarms: AlarmService
) -> None:
    for device in ("smk-1-1", "smk-1-2", "smk-1-3"):
        fire(alarms, device)
    fire(alarms, "smk-2-1", AlarmCategory.FAULT)
    page = (await api.get("/api/v1/incidents", params={"open": "true"})).json()
    assert page["total"] == 2
    first, second = page["items"]
    assert (first["kind"], first["category"], first["alarm_count"], first["device_count"]) == (
        "fire",
        "fire",
        3,
        3,
    )
    assert sorted(a["device_id"] for a in first["alarms"]) == ["smk-1-1", "smk-1-2", "smk-1-3"]
    assert first["place_name"]  # the place in words for the board
    assert second["kind"] == "fault"
    fire_only = (await api.get("/api/v1/incidents", params={"kind": "fire"})).json()
    assert [i["id"] for i in fire_only["items"]] == [first["id"]]


async def test_the_steps_of_a_fire_incident_from_acknowledgement_to_reset(
    api: ApiClient, alarms: AlarmService
) -> None:
    duty = api.as_("wangwu", "operator", display_name="消控室值班员 王五")
    fire(alarms, "smk-1-1")
    fire(alarms, "smk-1-2")
    (inc,) = (await api.get("/api/v1/incidents")).json()["items"]
    base = f"/api/v1/incidents/{inc['id']}"
    r = await api.post(f"{base}/acknowledge", json={"note": "已派人"}, headers=duty)
    assert r.status_code == 200, r.text
    assert (r.json()["action"], r.json()["incident"]["acked_by"]) == ("acknowledged", "wangwu")
    assert (await api.post(f"{base}/acknowledge", json={}, headers=duty)).status_code == 409
    r = await api.post(f"{base}/verify", json={"verifier": "微型消防站 李四"}, headers=duty)
    assert r.json()["incident"]["verification"] == "verifying"
    r = await api.post(f"{base}/verdict", json={"verdict": "false_alarm"}, headers=duty)
    assert r.status_code == 409
    assert "cause" in r.json()["detail"]
    r = await api.post(f"{base}/verdict", json={"verdict": "confirmed", "note": "确有烟雾"}, headers=duty)
    assert r.json()["incident"]["call_119_due"] is True  # the console prompts for the call
    r = await api.post(f"{base}/call-119", json={"note": "119 已受理"}, headers=duty)
    assert r.json()["incident"]["call_119_due"] is False
    r = await api.post(f"{base}/reset", json={"note": "火已扑灭"}, headers=duty)
    assert r.status_code == 200
    detail = (await api.get(base)).json()
    assert detail["state"] == "closed"
    assert [s["action"] for s in detail["timeline"]] == [
        "opened", "joined", "acknowledged", "verifying", "confirmed",
        "called_119", "reset", "ended", "closed",
    ]  # fmt: skip
    assert {a["state"] for a in detail["alarms"]} == {"cleared_acknowledged"}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("verdict", {"verdict": "maybe"}),
        ("verdict", {"verdict": "false_alarm", "cause": "ghosts"}),
        ("call-119", {"at": -5}),
        ("acknowledge", {"note": "x" * 5000}),
        ("acknowledge", {"extra": 1}),
        ("verify", {"verifier": ["a"]}),
    ],
)
async def test_bad_input_is_a_4xx_problem(
    api: ApiClient, alarms: AlarmService, path: str, body: object
) -> None:
    duty = api.as_("wangwu", "operator")
    fire(alarms, "smk-1-1")
    (inc,) = (await api.get("/api/v1/incidents")).json()["items"]
    r = await api.post(f"/api/v1/incidents/{inc['id']}/{path}", json=body, headers=duty)
    assert r.status_code == 422, r.text


async def test_a_missing_incident_is_404_and_a_viewer_may_not_act(
    api: ApiClient, alarms: AlarmService
) -> None:
    assert (await api.get("/api/v1/incidents/999")).status_code == 404
    duty = api.as_("wangwu", "operator")
    assert (await api.post("/api/v1/incidents/999/acknowledge", json={}, headers=duty)).status_code == 404
    fire(alarms, "smk-1-1")
    (inc,) = (await api.get("/api/v1/incidents")).json()["items"]
    viewer = api.as_("guest", "viewer")
    r = await api.post(f"/api/v1/incidents/{inc['id']}/acknowledge", json={}, headers=viewer)
    assert r.status_code == 403


async def test_an_outage_incident_answers_with_every_device_it_holds(
    api: ApiClient, alarms: AlarmService
) -> None:
    silent = ("smk-1-1", "smk-1-2", "smk-2-1")
    alarms.apply(
        [
            DetectorEvent(
                "outage:s1/b1/f1", "device.outage", DetectorEventKind.RAISE, AlarmCategory.FAULT, T0, 3.0,
                None, "", "", {"site": "s1", "place": "s1/b1/f1"}, silent,
            )
        ]
    )  # fmt: skip
    (inc,) = (await api.get("/api/v1/incidents", params={"kind": "outage"})).json()["items"]
    assert (inc["device_count"], inc["alarm_count"]) == (3, 1)
    detail = (await api.get(f"/api/v1/incidents/{inc['id']}")).json()
    assert detail["devices"] == list(silent)
