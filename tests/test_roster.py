"""The duty roster (值班表) through the API, on SQLite and PostgreSQL: the rules of a shift with
their Chinese errors, who is on duty now and when nobody is, people's push addresses and who may see
them (docs/duty.md)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from sqlalchemy import select

from alarms.service import AlarmService
from alarms.tickets import TicketOpener
from api.downloads import XLSX
from core.settings import TicketPolicy
from ingest.index import DeviceIndex
from storage.db import open_store
from storage.models import AuditRow
from storage.registry_sync import sync_registry
from tests.conftest import PROFILES, ApiClient, FakeClock, asgi_api, small_registry

T0 = 1_800_000_000.0
HOUR = 3600.0
DAY_S = 86_400.0


@pytest.fixture
async def api(store_url: str, tmp_path: Path) -> AsyncIterator[ApiClient]:
    _, sessions = open_store(store_url)
    registry = small_registry()
    sync_registry(sessions, registry, PROFILES)
    index = DeviceIndex.build(registry, PROFILES)
    alarms = AlarmService(sessions, index, TicketOpener(index, TicketPolicy()), FakeClock(T0))
    async with asgi_api(alarms, tmp_path) as client:
        for name, display in (("zhang", "张三"), ("li", "李四"), ("wang", "王五"), ("zhao", "赵六")):
            client.as_(name, "operator", display_name=display)
        client.as_("chen", "leader", display_name="陈领导")
        client.as_("sun", "leader", display_name="孙领导")
        yield client


def shift(start: float, end: float, *members: tuple[str, str], name: str = "白班") -> dict[str, Any]:
    return {
        "name": name,
        "start_ts": start,
        "end_ts": end,
        "members": [{"user": u, "role": r} for u, r in members],
    }


DAY = (("zhang", "control_room"), ("li", "control_room"), ("chen", "leader_on_call"))
NIGHT = (("wang", "control_room"), ("zhao", "control_room"), ("sun", "leader_on_call"))


def messages(response: Any) -> list[str]:
    return [e["msg"] for e in response.json()["errors"]]


async def test_a_shift_of_two_in_the_control_room_and_one_leader_is_saved_and_on_duty_now(
    api: ApiClient,
) -> None:
    created = await api.post("/api/v1/roster", json=shift(T0 - HOUR, T0 + 11 * HOUR, *DAY))
    assert created.status_code == 201, created.text
    saved = created.json()["shift"]
    assert [(m["display_name"], m["role_zh"]) for m in saved["members"]] == [
        ("张三", "消防控制室"),
        ("李四", "消防控制室"),
        ("陈领导", "值班领导"),
    ]
    now = (await api.get("/api/v1/roster/now")).json()
    assert now["covered"] is True
    assert now["shift"]["id"] == saved["id"]
    assert now["message"] == "当前值班：白班，消防控制室 张三、消防控制室 李四、值班领导 陈领导"


async def test_a_shift_with_one_person_in_the_control_room_is_refused_citing_gb_25506(api: ApiClient) -> None:
    r = await api.post(
        "/api/v1/roster", json=shift(T0, T0 + 8 * HOUR, ("zhang", "control_room"), ("chen", "leader_on_call"))
    )
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    (msg,) = messages(r)
    assert msg == "消防控制室每班至少 2 人（GB 25506-2010 4.2.1：24 小时值班，每班不少于 2 人），本班 1 人"
    assert (await api.get("/api/v1/roster", params={"start": T0 - HOUR})).json()["shifts"] == []


async def test_a_shift_needs_exactly_one_leader_on_call_and_each_person_once(api: ApiClient) -> None:
    no_leader = await api.post("/api/v1/roster", json=shift(T0, T0 + HOUR, *DAY[:2]))
    assert messages(no_leader) == ["值班领导须恰好 1 人，本班 0 人"]
    two_leaders = await api.post("/api/v1/roster", json=shift(T0, T0 + HOUR, *DAY, ("sun", "leader_on_call")))
    assert messages(two_leaders) == ["值班领导须恰好 1 人，本班 2 人"]
    twice = await api.post("/api/v1/roster", json=shift(T0, T0 + HOUR, *DAY, ("zhang", "micro_fire_station")))
    assert messages(twice) == ["同一人在一个班次中只能出现一次：张三"]
    stranger = await api.post(
        "/api/v1/roster", json=shift(T0, T0 + HOUR, *DAY, ("nobody", "micro_fire_station"))
    )
    assert messages(stranger) == ["没有这个人员（或账号已停用）：nobody"]


async def test_shifts_may_not_overlap_and_a_gap_between_them_is_a_warning_not_a_refusal(
    api: ApiClient,
) -> None:
    day = await api.post("/api/v1/roster", json=shift(T0, T0 + 12 * HOUR, *DAY))
    assert day.status_code == 201
    assert day.json()["warnings"] == []
    overlapping = await api.post(
        "/api/v1/roster", json=shift(T0 + 11 * HOUR, T0 + 20 * HOUR, *NIGHT, name="夜班")
    )
    assert overlapping.status_code == 422
    (overlap,) = messages(overlapping)
    assert overlap.startswith("与班次「白班」")
    assert overlap.endswith("时间重叠：同一时间只能有一个班次")
    later = await api.post("/api/v1/roster", json=shift(T0 + 13 * HOUR, T0 + 24 * HOUR, *NIGHT, name="夜班"))
    assert later.status_code == 201
    (warning,) = later.json()["warnings"]
    assert warning.startswith("与上一班次「白班」之间有空档")
    assert warning.endswith("无人值班")
    roster = (await api.get("/api/v1/roster", params={"start": T0, "end": T0 + 24 * HOUR})).json()
    assert [s["name"] for s in roster["shifts"]] == ["白班", "夜班"]
    assert roster["gaps"] == [{"start_ts": T0 + 12 * HOUR, "end_ts": T0 + 13 * HOUR}]


async def test_roster_now_says_when_nobody_is_on_duty_and_which_shift_comes_next(api: ApiClient) -> None:
    await api.post("/api/v1/roster", json=shift(T0 + HOUR, T0 + 9 * HOUR, *DAY))
    now = (await api.get("/api/v1/roster/now")).json()
    assert now["covered"] is False
    assert now["shift"] is None
    assert now["message"] == "当前无人值班：值班表在此时段没有班次"
    assert now["next_shift"]["name"] == "白班"


async def test_a_shift_is_edited_and_deleted_by_the_safety_office_and_the_changes_are_audited(
    api: ApiClient,
) -> None:
    safety = api.as_("baowei", "safety", display_name="保卫科")
    created = (await api.post("/api/v1/roster", json=shift(T0, T0 + 8 * HOUR, *DAY), headers=safety)).json()
    shift_id = created["shift"]["id"]
    night = shift(T0, T0 + 8 * HOUR, *NIGHT)
    changed = await api.put(f"/api/v1/roster/{shift_id}", json=night, headers=safety)
    assert changed.status_code == 200
    assert [m["user"] for m in changed.json()["shift"]["members"]] == ["wang", "zhao", "sun"]
    assert changed.json()["shift"]["updated_by"] == "baowei"
    assert (await api.delete(f"/api/v1/roster/{shift_id}", headers=safety)).status_code == 204
    assert (await api.get(f"/api/v1/roster/{shift_id}")).status_code == 404
    with api.accounts.sessions() as s:
        actions = s.scalars(select(AuditRow.action).where(AuditRow.actor == "baowei")).all()
    assert {"create_shift", "update_shift", "delete_shift"} <= set(actions)


async def test_operators_and_viewers_read_the_roster_but_may_not_change_it(api: ApiClient) -> None:
    await api.post("/api/v1/roster", json=shift(T0 - HOUR, T0 + HOUR, *DAY))
    for role in ("operator", "viewer", "leader", "maintenance"):
        who = api.as_(f"r-{role}", role)
        assert (await api.get("/api/v1/roster/now", headers=who)).status_code == 200
        refused = await api.post("/api/v1/roster", json=shift(T0 + HOUR, T0 + 2 * HOUR, *DAY), headers=who)
        assert refused.status_code == 403


async def test_a_viewer_sees_who_is_on_duty_by_name_but_no_phone_and_no_push_address(api: ApiClient) -> None:
    saved = await api.put(
        "/api/v1/roster/contacts/zhang",
        json={"phone": "138 0000 0001", "addresses": ["json://127.0.0.1:9/zhang"]},
    )
    assert saved.status_code == 200, saved.text
    await api.post("/api/v1/roster", json=shift(T0 - HOUR, T0 + HOUR, *DAY))
    viewer = api.as_("kan", "viewer")
    seen = (await api.get("/api/v1/roster/now", headers=viewer)).json()
    assert seen["shift"]["members"][0] == {
        "user": "zhang",
        "display_name": "张三",
        "role": "control_room",
        "role_zh": "消防控制室",
        "phone": None,
    }
    assert "json://" not in str(seen)
    assert (await api.get("/api/v1/roster/contacts", headers=viewer)).status_code == 403
    operator = api.as_("zhang", "operator")
    by_operator = (await api.get("/api/v1/roster/now", headers=operator)).json()
    assert by_operator["shift"]["members"][0]["phone"] == "138 0000 0001"
    assert "json://" not in str(by_operator)
    contacts = {c["user"]: c for c in (await api.get("/api/v1/roster/contacts")).json()}
    assert contacts["zhang"]["addresses"] == ["json://127.0.0.1:9/zhang"]
    assert contacts["li"]["addresses"] == []


async def test_a_push_address_apprise_cannot_read_is_refused_and_nothing_is_saved(api: ApiClient) -> None:
    await api.put("/api/v1/roster/contacts/li", json={"phone": "1", "addresses": ["json://127.0.0.1:9/li"]})
    r = await api.put(
        "/api/v1/roster/contacts/li", json={"addresses": ["json://127.0.0.1:9/li", "not a url at all"]}
    )
    assert r.status_code == 422
    assert messages(r) == ["推送地址无法识别：第 2 个"]
    assert (await api.get("/api/v1/roster/contacts/li")).json()["addresses"] == ["json://127.0.0.1:9/li"]
    assert (await api.put("/api/v1/roster/contacts/nobody", json={})).status_code == 404


# --- the XLSX import, its template and the export ---------------------------------------------------

TEMPLATE_PEOPLE = {  # with 张三, 李四 and 王五 of the fixture
    "zhaozr": "赵主任",
    "ql": "钱六",
    "sq": "孙七",
    "zhouzr": "周主任",
}


def workbook(*rows: tuple[object, ...]) -> bytes:
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(["日期", "班次", "开始", "结束", "岗位", "姓名"])
    for row in rows:
        ws.append(list(row))
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


async def upload(api: ApiClient, data: bytes) -> Any:
    return await api.post("/api/v1/roster/import", content=data, headers={"Content-Type": XLSX})


async def test_the_template_imports_as_a_day_and_a_night_shift_ending_the_next_morning(
    api: ApiClient,
) -> None:
    for user, display in TEMPLATE_PEOPLE.items():
        api.as_(user, "operator", display_name=display)
    template = await api.get("/api/v1/roster/template.xlsx")
    assert template.status_code == 200
    assert template.headers["content-type"] == XLSX
    imported = await upload(api, template.content)
    assert imported.status_code == 201, imported.text
    day, night = imported.json()["created"]
    assert (day["name"], night["name"]) == ("白班", "夜班")
    assert datetime.fromtimestamp(day["start_ts"]) == datetime(2026, 12, 7, 8, 0)
    assert datetime.fromtimestamp(night["end_ts"]) == datetime(2026, 12, 8, 8, 0)
    assert [(m["user"], m["role"]) for m in day["members"]] == [
        ("zhang", "control_room"),
        ("li", "control_room"),
        ("wang", "micro_fire_station"),
        ("zhaozr", "leader_on_call"),
    ]


async def test_a_sheet_with_errors_names_each_row_and_column_in_chinese_and_saves_nothing(
    api: ApiClient,
) -> None:
    sheet = workbook(
        ("2026-13-40", "白班", "08:00", "20:00", "消防控制室", "张三"),
        ("2026-12-07", "白班", "08:00", "20:00", "消防控制室", "查无此人"),
        ("2026-12-07", "白班", "08:00", "20:00", "保安", "李四"),
        ("2026-12-07", "白班", "8点", "20:00", "值班领导", "陈领导"),
    )
    r = await upload(api, sheet)
    assert r.status_code == 422
    assert [e["msg"] for e in r.json()["errors"]] == [
        "第 2 行，日期：无法识别「2026-13-40」，应为日期，如 2026-12-05",
        "第 3 行，姓名：没有这个人员（或账号已停用）：「查无此人」",
        "第 4 行，岗位：无法识别「保安」，应为 消防控制室、微型消防站、值班领导 或本单位的岗位代码",
        "第 5 行，开始：无法识别「8点」，应为时间，如 08:00",
    ]
    # Rows that read well but break the roster's rules: the shift's rows are named.
    short = workbook(
        (date(2026, 12, 7), "白班", time(8), time(20), "消防控制室", "张三"),
        (date(2026, 12, 7), "白班", time(8), time(20), "值班领导", "chen"),
        (date(2026, 12, 7), "夜班", time(20), time(8), "消防控制室", "王五"),
        (date(2026, 12, 7), "夜班", time(20), time(8), "消防控制室", "赵六"),
        (date(2026, 12, 7), "夜班", time(20), time(8), "值班领导", "孙领导"),
    )
    r = await upload(api, short)
    assert r.status_code == 422
    (error,) = r.json()["errors"]
    assert error["rows"] == [2, 3]
    assert error["msg"].startswith(
        "第 2–3 行：白班（2026-12-07 08:00 至 2026-12-07 20:00）：消防控制室每班至少 2 人"
    )
    since = datetime(2026, 12, 6).timestamp()
    roster = await api.get("/api/v1/roster", params={"start": since, "end": since + 3 * DAY_S})
    assert roster.json()["shifts"] == []  # the good night shift was not saved either


async def test_a_file_that_is_not_a_spreadsheet_is_refused_in_chinese(api: ApiClient) -> None:
    r = await upload(api, b"PK\x03\x04 not really a zip")
    assert r.status_code == 422
    assert r.json()["errors"][0]["msg"] == "表格：无法读取该文件：请上传 XLSX 工作簿（可先下载模板）"
    wrong_type = await api.post("/api/v1/roster/import", content=b"a,b", headers={"Content-Type": "text/csv"})
    assert wrong_type.status_code == 415
    viewer = api.as_("kan", "viewer")
    refused = await api.post(
        "/api/v1/roster/import", content=workbook(), headers={"Content-Type": XLSX, **viewer}
    )
    assert refused.status_code == 403


async def test_the_export_is_the_roster_in_the_import_format_with_names_only(api: ApiClient) -> None:
    await api.put(
        "/api/v1/roster/contacts/zhang", json={"phone": "138", "addresses": ["json://127.0.0.1:9/z"]}
    )
    await api.post("/api/v1/roster", json=shift(T0, T0 + 12 * HOUR, *DAY))
    r = await api.get("/api/v1/roster/export.xlsx", params={"start": T0 - HOUR, "end": T0 + DAY_S})
    assert r.status_code == 200
    ws = openpyxl.load_workbook(io.BytesIO(r.content)).worksheets[0]
    rows = list(ws.iter_rows(values_only=True))
    start = datetime.fromtimestamp(T0)
    end = datetime.fromtimestamp(T0 + 12 * HOUR)
    day, begins, ends = start.strftime("%Y-%m-%d"), start.strftime("%H:%M"), end.strftime("%H:%M")
    assert rows == [
        ("日期", "班次", "开始", "结束", "岗位", "姓名"),
        (day, "白班", begins, ends, "消防控制室", "张三"),
        (day, "白班", begins, ends, "消防控制室", "李四"),
        (day, "白班", begins, ends, "值班领导", "陈领导"),
    ]
    # Its dates moved a week on, it imports as the same shift a week later.
    next_week = str(date.fromisoformat(day) + timedelta(days=7))
    again = await upload(api, workbook(*[(next_week, *row[1:]) for row in rows[1:]]))
    assert again.status_code == 201, again.text
    (copy,) = again.json()["created"]
    assert copy["start_ts"] == T0 + 7 * DAY_S  # T0 falls on a whole minute
    assert [m["user"] for m in copy["members"]] == ["zhang", "li", "chen"]
