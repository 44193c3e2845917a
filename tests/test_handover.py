"""Handover (交接班) through the API, on SQLite and on PostgreSQL: the snapshot of what is open is
taken when the outgoing person starts and stored as taken; the incoming person countersigns with
their own credentials (their password at the shared screen, or their own session); nobody signs
twice and a signed handover never changes."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from core.domain import AlarmCategory, DetectorEvent, DetectorEventKind
from storage.models import IncidentRow
from tests.conftest import TEST_PASSWORD
from tests.test_duty_log import T0, Duty
from tests.test_duty_log import duty as duty  # the API over both stores

OUTGOING = ("zhangsan", "值班员 张三")
INCOMING = ("lisi", "值班员 李四")


def raise_alarm(duty: Duty, device: str, alarm_type: str, category: AlarmCategory) -> None:
    duty.alarms.apply(
        [DetectorEvent(device, alarm_type, DetectorEventKind.RAISE, category, duty.clock.now, 0.3, "", "")]
    )


async def open_things(duty: Duty) -> None:
    """A fire nobody has acknowledged (1区 101病房), a point disabled at its panel (2区), a fault
    (2区) and a hazard ticket past its deadline."""
    r = await duty.api.post(
        "/api/v1/tickets",
        json={
            "site": "s1",
            "place": "s1/b1/f1/z1",
            "problem": "1区 疏散通道堆放杂物",
            "inspectors": "保卫科",
            "deadline": T0 + 3600,
        },
    )
    assert r.status_code == 201, r.text
    duty.clock.now = T0 + 7200
    duty.tickets.tick()  # past its deadline: flagged overdue
    raise_alarm(duty, "smk-1-1", "smoke.alarm", AlarmCategory.FIRE)
    raise_alarm(duty, "smk-2-1", "device.disabled", AlarmCategory.DISABLED)
    raise_alarm(duty, "smk-2-2", "device.fault", AlarmCategory.FAULT)


def people(duty: Duty) -> tuple[dict[str, str], dict[str, str]]:
    return (
        duty.api.as_(OUTGOING[0], "operator", display_name=OUTGOING[1]),
        duty.api.as_(INCOMING[0], "operator", display_name=INCOMING[1]),
    )


async def start(duty: Duty, who: dict[str, str], **body: Any) -> dict[str, Any]:
    r = await duty.api.post("/api/v1/handovers", json=body, headers=who)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


async def countersign(duty: Duty, handover_id: int, who: dict[str, str], **body: Any) -> Any:
    return await duty.api.post(f"/api/v1/handovers/{handover_id}/countersign", json=body, headers=who)


async def test_a_handover_records_what_is_open_when_the_outgoing_person_starts_it(duty: Duty) -> None:
    await open_things(duty)
    outgoing, _ = people(duty)
    h = await start(duty, outgoing, notes="1区火警待核实；2区屏蔽点位已报维保")
    assert (h["outgoing"], h["outgoing_name"], h["started_ts"]) == (*OUTGOING, T0 + 7200)
    assert h["incoming"] is None
    assert h["countersigned_ts"] is None
    snap = h["snapshot"]
    # Four incidents, each with its alarm unacknowledged: the fire, the disabled point, the fault and
    # the overdue ticket's own hazard alarm. The fault and the disabled point opened tickets of their
    # own, not yet overdue: one ticket is.
    assert snap["counts"] == {
        "incidents": 4,
        "unacknowledged": 4,
        "disabled": 1,
        "faults": 1,
        "overdue_tickets": 1,
    }
    assert h["counts"] == snap["counts"]
    assert snap["incidents"][0]["kind"] == "fire"  # worst first
    assert snap["incidents"][0]["place_name"] == "住院楼 1F 1区 101病房"
    assert snap["incidents"][0]["acked_by"] is None
    fire = snap["unacknowledged"][0]
    assert (fire["device_id"], fire["category"], fire["place_name"]) == (
        "smk-1-1",
        "fire",
        "住院楼 1F 1区 101病房",
    )
    (disabled,) = snap["disabled"]
    assert (disabled["device_id"], disabled["type_name"]) == ("smk-2-1", "部件屏蔽")
    (fault,) = snap["faults"]
    assert (fault["device_id"], fault["type_name"]) == ("smk-2-2", "设备故障")
    (ticket,) = snap["overdue_tickets"]
    assert (ticket["problem"], ticket["place_name"]) == ("1区 疏散通道堆放杂物", "住院楼 1F 1区")
    assert snap["truncated"] is False
    # The duty log says so, in the outgoing person's name.
    (entry,) = (await duty.api.get("/api/v1/duty-log", params={"kind": "handover"})).json()["items"]
    assert entry["author"] == OUTGOING[0]
    assert entry["handover_id"] == h["id"]
    assert "未结束事件 4 起，未确认报警 4 条，屏蔽点位 1 个，故障 1 个，超期整改单 1 张" in entry["text"]
    assert "1区火警待核实" in entry["text"]


async def test_the_snapshot_is_kept_as_taken_while_what_is_open_changes(duty: Duty) -> None:
    await open_things(duty)
    outgoing, incoming = people(duty)
    h = await start(duty, outgoing)
    with duty.alarms.sessions() as s:
        incident_ids = s.scalars(select(IncidentRow.id)).all()
    duty.clock.now += 60
    for incident_id in incident_ids:
        duty.alarms.acknowledge_incident(incident_id, actor="lisi", note="已受理")
    now = (await duty.api.get("/api/v1/handovers/snapshot")).json()
    assert now["counts"]["unacknowledged"] == 0  # what a handover started now would record
    assert now["taken_ts"] == T0 + 7260
    kept = (await duty.api.get(f"/api/v1/handovers/{h['id']}")).json()
    assert kept["snapshot"] == h["snapshot"]  # not recomputed
    assert (await countersign(duty, h["id"], incoming)).status_code == 200
    signed = (await duty.api.get(f"/api/v1/handovers/{h['id']}")).json()
    assert signed["snapshot"] == h["snapshot"]


async def test_the_incoming_person_countersigns_with_their_password_at_the_shared_screen(duty: Duty) -> None:
    outgoing, _ = people(duty)
    h = await start(duty, outgoing, notes="无异常")
    duty.clock.now += 120
    # The screen is signed in as the outgoing person; the incoming person types their own password.
    r = await countersign(duty, h["id"], outgoing, username="lisi", password=TEST_PASSWORD, note="已接班")
    assert r.status_code == 200, r.text
    signed = r.json()
    assert (signed["outgoing_name"], signed["started_ts"]) == (OUTGOING[1], h["started_ts"])
    assert (signed["incoming"], signed["incoming_name"], signed["countersigned_ts"]) == (
        *INCOMING,
        h["started_ts"] + 120,
    )
    assert (signed["countersigned_via"], signed["incoming_note"]) == ("password", "已接班")
    log = (await duty.api.get("/api/v1/duty-log", params={"kind": "handover"})).json()["items"]
    assert [e["author"] for e in log] == ["lisi", "zhangsan"]
    assert log[0]["text"] == f"值班员 李四 接班签字（交接班 {h['id']}，交班人 值班员 张三）：已接班"
    # Still the outgoing person's session on that screen.
    me = (await duty.api.get("/api/v1/auth/me", headers=outgoing)).json()
    assert me["name"] == "zhangsan"


async def test_the_incoming_person_may_accept_from_their_own_session(duty: Duty) -> None:
    outgoing, incoming = people(duty)
    h = await start(duty, outgoing, incoming="lisi")
    assert h["incoming_expected"] == "lisi"
    r = await countersign(duty, h["id"], incoming)
    assert r.status_code == 200, r.text
    assert (r.json()["incoming"], r.json()["countersigned_via"]) == ("lisi", "session")
    signed = (await duty.api.get("/api/v1/handovers", params={"signed": True})).json()
    assert [i["id"] for i in signed["items"]] == [h["id"]]
    assert (await duty.api.get("/api/v1/handovers", params={"signed": False})).json()["total"] == 0


async def test_nobody_countersigns_their_own_handover_and_a_signed_one_never_changes(duty: Duty) -> None:
    outgoing, incoming = people(duty)
    h = await start(duty, outgoing)
    r = await countersign(duty, h["id"], outgoing)
    assert r.status_code == 409, r.text
    assert "not the same person twice" in r.json()["detail"]
    r = await countersign(duty, h["id"], incoming, username="zhangsan", password=TEST_PASSWORD)
    assert r.status_code == 409, r.text
    assert (await countersign(duty, h["id"], incoming)).status_code == 200
    before = (await duty.api.get(f"/api/v1/handovers/{h['id']}")).json()
    third = duty.api.as_("wangwu", "safety", display_name="保卫科 王五")
    for attempt in (
        countersign(duty, h["id"], third),
        countersign(duty, h["id"], incoming, note="改一下"),
        countersign(duty, h["id"], outgoing, username="wangwu", password=TEST_PASSWORD),
    ):
        r = await attempt
        assert r.status_code == 409, r.text
        assert "a signed handover does not change" in r.json()["detail"]
    assert (await duty.api.get(f"/api/v1/handovers/{h['id']}")).json() == before
    for method in ("PUT", "PATCH", "DELETE"):
        assert (await duty.api.request(method, f"/api/v1/handovers/{h['id']}")).status_code == 405


async def test_a_handover_named_for_someone_is_countersigned_by_them_only(duty: Duty) -> None:
    outgoing, incoming = people(duty)
    h = await start(duty, outgoing, incoming="lisi")
    other = duty.api.as_("wangwu", "operator")
    r = await countersign(duty, h["id"], other)
    assert r.status_code == 409, r.text
    assert "only they may countersign" in r.json()["detail"]
    assert (await countersign(duty, h["id"], incoming)).status_code == 200


async def test_the_incoming_person_must_be_one_who_may_keep_the_duty(duty: Duty) -> None:
    outgoing, _ = people(duty)
    h = await start(duty, outgoing)
    duty.api.as_("weixiu", "maintenance")
    r = await countersign(duty, h["id"], outgoing, username="weixiu", password=TEST_PASSWORD)
    assert r.status_code == 403, r.text
    assert "holds no duty role" in r.json()["detail"]
    viewer = duty.api.as_("kan", "viewer")
    assert (await duty.api.post("/api/v1/handovers", json={}, headers=viewer)).status_code == 403
    assert (await countersign(duty, h["id"], viewer)).status_code == 403


async def test_a_wrong_password_is_refused_keeps_the_screen_signed_in_and_is_throttled(duty: Duty) -> None:
    outgoing, _ = people(duty)
    h = await start(duty, outgoing)
    for _ in range(5):
        r = await countersign(duty, h["id"], outgoing, username="lisi", password="not-the-password")
        assert r.status_code == 403, r.text  # not 401: that would sign the shared screen out
        assert "signature is refused" in r.json()["detail"]
    r = await countersign(duty, h["id"], outgoing, username="lisi", password="not-the-password")
    assert r.status_code == 429, r.text
    assert int(r.headers["retry-after"]) >= 1
    # Throttled as a sign-in: the right password waits too, and signing in as lisi does as well.
    r = await countersign(duty, h["id"], outgoing, username="lisi", password=TEST_PASSWORD)
    assert r.status_code == 429
    r = await duty.api.post("/api/v1/auth/login", json={"username": "lisi", "password": TEST_PASSWORD})
    assert r.status_code == 429
    assert (await duty.api.get("/api/v1/auth/me", headers=outgoing)).status_code == 200
    assert (await duty.api.get(f"/api/v1/handovers/{h['id']}")).json()["countersigned_ts"] is None


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"username": "lisi"}, 422),  # a user name without a password
        ({"password": TEST_PASSWORD}, 422),
        ({"username": "lisi", "password": TEST_PASSWORD, "signed_by": "x"}, 422),
    ],
)
async def test_a_countersignature_needs_both_credentials_or_neither(
    duty: Duty, body: dict[str, str], status: int
) -> None:
    outgoing, _ = people(duty)
    h = await start(duty, outgoing)
    r = await countersign(duty, h["id"], outgoing, **body)
    assert r.status_code == status, r.text
    assert (await countersign(duty, 999, outgoing)).status_code == 404


async def test_the_shift_handed_over_starts_at_the_last_countersignature(duty: Duty) -> None:
    outgoing, incoming = people(duty)
    first = await start(duty, outgoing)
    assert first["shift_start"] == T0 - 12 * 3600  # none before it: a 12-hour shift
    duty.clock.now = T0 + 300
    await countersign(duty, first["id"], incoming)
    duty.clock.now = T0 + 12 * 3600
    second = await start(duty, incoming, notes="夜班无异常")
    assert second["shift_start"] == T0 + 300
    r = await duty.api.post("/api/v1/handovers", json={"shift_start": T0 + 13 * 3600}, headers=incoming)
    assert r.status_code == 422, r.text
    r = await duty.api.post("/api/v1/handovers", json={"incoming": "lisi"}, headers=incoming)
    assert r.status_code == 422, r.text
    listed = (await duty.api.get("/api/v1/handovers")).json()
    assert [i["id"] for i in listed["items"]] == [second["id"], first["id"]]
    assert "snapshot" not in listed["items"][0]
