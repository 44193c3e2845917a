"""The alarm and maintenance endpoints over a real SQLite store: every human action answers with the
transition, wrong states are 409, bad input is a 4xx problem, never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import update

from alarms.service import AlarmService
from core.domain import AlarmCategory, DetectorEvent, DetectorEventKind, SystemType
from storage.models import AlarmRow
from tests.conftest import ApiClient, alarm_service, asgi_api

T0 = 1_800_000_000.0


@pytest.fixture
def alarms(tmp_path: Path) -> AlarmService:
    return alarm_service(tmp_path / "state.sqlite", T0)


@pytest.fixture
async def api(alarms: AlarmService, tmp_path: Path) -> AsyncIterator[ApiClient]:
    async with asgi_api(alarms, tmp_path) as client:
        yield client


def raise_(alarms: AlarmService, category: AlarmCategory, device: str = "smk-1-1") -> int:
    alarm_type = "smoke.alarm" if category is AlarmCategory.FIRE else "device.fault"
    (t,), _ = alarms.apply([DetectorEvent(device, alarm_type, DetectorEventKind.RAISE, category, T0, 0.3)])
    return t.alarm_id


async def test_shelving_a_fault_answers_with_the_transition_and_a_fire_is_refused(
    api: ApiClient, alarms: AlarmService
) -> None:
    op = api.as_("op", "operator")
    fault = raise_(alarms, AlarmCategory.FAULT)
    r = await api.post(
        f"/api/v1/alarms/{fault}/shelve", json={"note": "换电池", "duration_s": 600}, headers=op
    )
    assert r.status_code == 200, r.text
    assert r.json()["action"] == "shelved"
    assert r.json()["after"]["shelved_until"] == T0 + 600
    fire = raise_(alarms, AlarmCategory.FIRE, "smk-1-2")
    r = await api.post(f"/api/v1/alarms/{fire}/shelve", json={"note": "x", "duration_s": 60}, headers=op)
    assert r.status_code == 409
    assert "fire alarm cannot be shelved" in r.json()["detail"]


async def test_acknowledge_close_and_the_false_alarm_league(api: ApiClient, alarms: AlarmService) -> None:
    duty = api.as_("wangwu", "operator", display_name="消控室值班员 王五")
    fire = raise_(alarms, AlarmCategory.FIRE)
    ack = {"note": "误报：水蒸气", "false_alarm": True}
    assert (await api.post(f"/api/v1/alarms/{fire}/acknowledge", json=ack, headers=duty)).status_code == 200
    r = await api.post(f"/api/v1/alarms/{fire}/close", json={}, headers=duty)
    assert r.status_code == 409
    assert "reset it first" in r.json()["detail"]
    # A fire alarm latches (GB 4717): it is reset (复位), not cleared.
    r = await api.post(f"/api/v1/alarms/{fire}/clear", json={}, headers=duty)
    assert r.status_code == 409
    assert "reset" in r.json()["detail"]
    assert (await api.post(f"/api/v1/alarms/{fire}/reset", json={}, headers=duty)).status_code == 200
    r = await api.post(f"/api/v1/alarms/{fire}/close", json={"note": "复位"}, headers=duty)
    assert r.json()["after"]["state"] == "closed"
    league = (await api.get("/api/v1/alarms/false-alarms")).json()
    assert league == [{"device_id": "smk-1-1", "false_alarms": 1, "alarms": 1}]
    events = (await api.get(f"/api/v1/alarms/{fire}")).json()["events"]
    assert [e["action"] for e in events] == ["raised", "acknowledged", "reset", "closed"]
    # who acted is the signed-in person, recorded by user name
    assert {e["actor"] for e in events[1:]} == {"wangwu"}


async def test_who_acts_comes_from_the_token_never_from_the_body(
    api: ApiClient, alarms: AlarmService
) -> None:
    fire = raise_(alarms, AlarmCategory.FIRE)
    r = await api.post(f"/api/v1/alarms/{fire}/acknowledge", json={"actor": "someone-else"})
    assert r.status_code == 422  # the body cannot name who acts
    viewer = api.as_("guest", "viewer")
    r = await api.post(f"/api/v1/alarms/{fire}/acknowledge", json={}, headers=viewer)
    assert r.status_code == 403  # a viewer reads alarms but does not handle them
    r = await api.post(f"/api/v1/alarms/{fire}/acknowledge", json={}, headers={"Authorization": ""})
    assert r.status_code == 401
    r = await api.post(f"/api/v1/alarms/{fire}/acknowledge", json={})  # duty-admin, the client's default
    assert r.status_code == 200, r.text
    assert r.json()["actor"] == "duty-admin"


async def test_a_maintenance_window_is_declared_listed_and_ended(api: ApiClient) -> None:
    contractor = api.as_("weibao", "maintenance", display_name="维保公司")
    body = {"site": "s1", "place": "s1/b1/f1/z1", "end": T0 + 3600, "reason": "季度检测"}
    r = await api.post("/api/v1/maintenance", json=body, headers=contractor)
    assert r.status_code == 201, r.text
    window = r.json()
    assert (window["start_ts"], window["created_by"]) == (T0, "weibao")
    active = (await api.get("/api/v1/maintenance", params={"active": True})).json()
    assert [w["id"] for w in active["items"]] == [window["id"]]
    r = await api.post(f"/api/v1/maintenance/{window['id']}/end", json={}, headers=contractor)
    assert r.status_code == 200
    assert (await api.get("/api/v1/maintenance", params={"active": True})).json()["items"] == []
    r = await api.post(f"/api/v1/maintenance/{window['id']}/end", json={}, headers=contractor)
    assert r.status_code == 409


WINDOW = {"site": "s1", "end": T0 + 9, "reason": "x"}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/api/v1/alarms/1/shelve", {"note": "x"}),  # neither until nor duration
        ("post", "/api/v1/alarms/1/shelve", {"note": "x", "until": 1, "duration_s": 1}),
        ("post", "/api/v1/alarms/abc/close", {}),
        ("post", "/api/v1/alarms/1/close", {"note": "x" * 2001}),
        ("post", "/api/v1/maintenance", {"site": "s1", "end": T0 - 10, "reason": "x"}),
        ("post", "/api/v1/maintenance", {**WINDOW, "place": "s2/b1"}),  # another site's place
        ("post", "/api/v1/maintenance", {**WINDOW, "device_ids": ["?"]}),  # an unknown device
        ("post", "/api/v1/maintenance/99/end", {}),
        ("get", "/api/v1/maintenance/xyz", None),
        ("get", "/api/v1/alarms/false-alarms?since=-1", None),
    ],
)  # fmt: skip
async def test_bad_input_is_a_4xx_problem_not_a_500(
    api: ApiClient, method: str, path: str, body: dict[str, object] | None
) -> None:
    r = await api.request(method.upper(), path, json=body)
    assert 400 <= r.status_code < 500, r.text
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_gas_alarms_are_listed_apart_from_fire_alarms(api: ApiClient, alarms: AlarmService) -> None:
    raise_(alarms, AlarmCategory.FIRE)
    with alarms.sessions.begin() as s:  # the small registry has no gas detector: make this alarm one
        s.execute(update(AlarmRow).values(system=SystemType.COMBUSTIBLE_GAS.value))
    raise_(alarms, AlarmCategory.FIRE, "smk-1-2")
    fire_board = (await api.get("/api/v1/alarms", params={"gas": False})).json()["items"]
    gas_board = (await api.get("/api/v1/alarms", params={"gas": True})).json()["items"]
    assert [a["device_id"] for a in fire_board] == ["smk-1-2"]
    assert [a["device_id"] for a in gas_board] == ["smk-1-1"]
