"""The ticket endpoints over a real SQLite store: report, the loop by role, comments, evidence upload
and download, patrol rounds and plans. Refusals are 403/404/409/413/422 problems, never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from alarms.service import AlarmService
from alarms.tickets import TicketOpener
from core.settings import MaintenancePlan, PatrolRoute, TicketPolicy
from ingest.index import DeviceIndex
from storage.db import open_store
from storage.registry_sync import sync_registry
from tests.conftest import PROFILES, ApiClient, FakeClock, asgi_api, small_registry
from tickets.service import TicketService

T0 = 1_800_000_000.0
POLICY = TicketPolicy(
    evidence_max_bytes=4096,
    plans=[
        MaintenancePlan(
            name="pump-test", title_zh="消防水泵启泵测试", every_days=91, kinds=["water_pressure"]
        )
    ],
    patrols=[
        PatrolRoute(name="night", site="s1", title_zh="夜间巡查", checkpoints=["s1/b1/f1/z1", "s1/b1/f1/z2"])
    ],
)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[ApiClient]:
    _, sessions = open_store(f"sqlite:///{tmp_path / 'state.sqlite'}")
    registry = small_registry()
    sync_registry(sessions, registry, PROFILES)
    index = DeviceIndex.build(registry, PROFILES)
    clock = FakeClock(T0)
    alarms = AlarmService(sessions, index, TicketOpener(index, POLICY), clock)
    tickets = TicketService(sessions, index, POLICY, alarms=alarms, clock=clock)
    async with asgi_api(alarms, tmp_path, tickets) as client:
        yield client


Headers = dict[str, str]


@dataclass(frozen=True)
class Staff:
    """The people of the loop, each signed in with their one role."""

    safety: Headers  # 保卫科: reports, assigns, verifies
    maint: Headers  # 维修组: rectifies
    leader: Headers  # 分管领导: closes


AS_ADMIN: Headers = {}  # no headers of its own: the client's sign-in, duty-admin


@pytest.fixture
def staff(api: ApiClient) -> Staff:
    return Staff(
        safety=api.as_("zhoujiu", "safety", display_name="保卫科 周九"),
        maint=api.as_("wushi", "maintenance", display_name="维修组 吴十"),
        leader=api.as_("zhengyi", "leader", display_name="分管副院长 郑一"),
    )


async def report(api: httpx.AsyncClient, who: Headers, **extra: Any) -> dict[str, Any]:
    body = {
        "site": "s1",
        "problem": "住院楼 1F 疏散通道堆放杂物",
        "inspectors": "周九",
        "department": "心内科",
        "measures": "立即清理",
    } | extra
    r = await api.post("/api/v1/tickets", json=body, headers=who)
    assert r.status_code == 201, r.text
    ticket: dict[str, Any] = r.json()["ticket"]
    return ticket


async def step(
    api: httpx.AsyncClient, ticket_id: int, who: Headers, action: str, **extra: Any
) -> httpx.Response:
    return await api.post(
        f"/api/v1/tickets/{ticket_id}/transitions", json={"action": action, **extra}, headers=who
    )


async def test_a_ticket_goes_round_the_loop_through_the_api_with_each_sign_off(
    api: ApiClient, staff: Staff
) -> None:
    t = await report(api, staff.safety)
    assert (t["status"], t["source"], t["inspection_time"]) == ("open", "inspection", T0)
    for who, action, extra in [
        (staff.safety, "assign", {"assignee": "吴十"}),
        (staff.maint, "start", {}),
        (staff.maint, "rectify", {"feedback": "已清理并张贴禁止堆放标识"}),
        (staff.safety, "verify", {"note": "复查通道畅通"}),
        (staff.leader, "close", {}),
    ]:
        r = await step(api, t["id"], who, action, **extra)
        assert r.status_code == 200, r.text
    closed = r.json()
    assert closed["status"] == "closed"
    # each sign-off (签字) is the signer's display name; the events record who by user name
    assert (closed["feedback_signed_by"], closed["confirmed_by"], closed["leader_signed_by"]) == (
        "维修组 吴十",
        "保卫科 周九",
        "分管副院长 郑一",
    )
    detail = (await api.get(f"/api/v1/tickets/{t['id']}")).json()
    assert [(e["action"], e["actor"], e["role"]) for e in detail["events"]] == [
        ("opened", "zhoujiu", "safety"),
        ("assign", "zhoujiu", "safety"),
        ("start", "wushi", "maintenance"),
        ("rectify", "wushi", "maintenance"),
        ("verify", "zhoujiu", "safety"),
        ("close", "zhengyi", "leader"),
    ]


async def test_a_sign_off_may_name_who_signed_the_paper_form(api: ApiClient, staff: Staff) -> None:
    t = await report(api, staff.safety)
    await step(api, t["id"], staff.safety, "assign", assignee="吴十")
    await step(api, t["id"], staff.maint, "start")
    r = await step(
        api, t["id"], staff.maint, "rectify", feedback="已清理", signed_by="维修组 吴十（代签：王班长）"
    )
    assert r.status_code == 200, r.text
    assert r.json()["feedback_signed_by"] == "维修组 吴十（代签：王班长）"


async def test_the_wrong_role_is_403_and_the_wrong_status_409(api: ApiClient, staff: Staff) -> None:
    t = await report(api, staff.safety)
    r = await step(api, t["id"], staff.maint, "verify")
    assert r.status_code == 403
    assert "may not verify" in r.json()["detail"]
    r = await step(api, t["id"], staff.safety, "verify")
    assert r.status_code == 409
    assert "only when rectified" in r.json()["detail"]


async def test_a_caller_acts_only_in_a_role_they_hold_and_an_admin_in_any(
    api: ApiClient, staff: Staff
) -> None:
    t = await report(api, staff.safety)
    r = await step(api, t["id"], staff.maint, "assign", assignee="吴十", role="safety")
    assert r.status_code == 403
    assert "does not hold the role 'safety'" in r.json()["detail"]
    assert (await step(api, t["id"], staff.maint, "assign", assignee="吴十")).status_code == 200
    r = await step(api, t["id"], AS_ADMIN, "start", role="maintenance")
    assert r.status_code == 200, r.text
    assert (await step(api, t["id"], staff.maint, "rectify", feedback="已清理")).status_code == 200
    both = api.as_("chenqi", "maintenance", "safety", display_name="保卫科兼维修 陈七")
    r = await step(api, t["id"], both, "verify")  # no role named: the first of theirs that may verify
    assert r.status_code == 200, r.text
    assert r.json()["confirmed_by"] == "保卫科兼维修 陈七"
    events = (await api.get(f"/api/v1/tickets/{t['id']}")).json()["events"]
    assert [(e["action"], e["actor"], e["role"]) for e in events[1:]] == [
        ("assign", "wushi", "maintenance"),
        ("start", "duty-admin", "maintenance"),
        ("rectify", "wushi", "maintenance"),
        ("verify", "chenqi", "safety"),
    ]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/tickets", {"problem": "x", "inspectors": "y"}),  # neither site nor device
        ("/api/v1/tickets", {"site": "s1", "problem": "", "inspectors": "y"}),
        ("/api/v1/tickets", {"site": "s1", "problem": "x", "inspectors": "y", "device_id": "nope"}),
        ("/api/v1/tickets", {"site": "s1", "problem": "x", "inspectors": "y", "deadline": T0 - 1}),
        ("/api/v1/tickets", {"role": "janitor", "site": "s1", "problem": "x", "inspectors": "y"}),
        (
            "/api/v1/tickets",
            {"actor": "周九", "site": "s1", "problem": "x", "inspectors": "y"},
        ),  # who: the token
        ("/api/v1/tickets", {"site": "s1", "problem": "x", "inspectors": "y", "extra": 1}),
        ("/api/v1/tickets/{id}/transitions", {"action": "teleport"}),
        ("/api/v1/tickets/{id}/transitions", {"action": "assign"}),  # no assignee
        ("/api/v1/tickets/{id}/transitions", {"action": "extend", "deadline": 1e12}),
        ("/api/v1/tickets/{id}/comments", {"text": ""}),
        (
            "/api/v1/patrols/rounds",
            {"route": "day", "inspectors": "x", "started_at": T0, "finished_at": T0, "visits": []},
        ),
        (
            "/api/v1/patrols/rounds",
            {
                "route": "night",
                "inspectors": "x",
                "started_at": T0,
                "finished_at": T0 - 5,
                "visits": [],
            },
        ),
    ],
)
async def test_bad_input_is_a_422_problem_naming_what_to_fix(
    api: ApiClient, staff: Staff, path: str, body: dict[str, Any]
) -> None:
    t = await report(api, staff.safety)
    r = await api.post(path.replace("{id}", str(t["id"])), json=body, headers=staff.safety)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["detail"]


async def test_a_missing_ticket_is_404(api: ApiClient, staff: Staff) -> None:
    assert (await api.get("/api/v1/tickets/999")).status_code == 404
    assert (await step(api, 999, staff.safety, "assign", assignee="x")).status_code == 404
    assert (await api.get("/api/v1/tickets/999/evidence/1")).status_code == 404


async def test_evidence_is_uploaded_listed_and_downloaded_intact_and_oversize_is_413(
    api: ApiClient, staff: Staff
) -> None:
    t = await report(api, staff.safety)
    photo = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8
    r = await api.post(
        f"/api/v1/tickets/{t['id']}/evidence",
        data={"note": "整改后"},
        files={"file": ("通道-整改后.jpg", photo, "image/jpeg")},
        headers=staff.maint,
    )
    assert r.status_code == 201, r.text
    evidence = r.json()
    assert (evidence["filename"], evidence["size"], evidence["content_type"]) == (
        "通道-整改后.jpg",
        len(photo),
        "image/jpeg",
    )
    got = await api.get(f"/api/v1/tickets/{t['id']}/evidence/{evidence['id']}")
    assert got.content == photo
    assert got.headers["content-type"] == "image/jpeg"
    r = await api.post(
        f"/api/v1/tickets/{t['id']}/evidence",
        data={"role": "maintenance"},
        files={"file": ("big.jpg", bytes(5000), "image/jpeg")},
        headers=staff.maint,
    )
    assert r.status_code == 413
    r = await api.post(
        f"/api/v1/tickets/{t['id']}/evidence",
        files={"file": ("a.jpg", b"x", "image/jpeg")},
        headers=api.as_("guest", "viewer"),
    )
    assert r.status_code == 403
    detail = (await api.get(f"/api/v1/tickets/{t['id']}")).json()
    assert [(e["filename"], e["uploaded_by"]) for e in detail["evidence"]] == [("通道-整改后.jpg", "wushi")]


async def test_comments_are_listed_with_the_ticket(api: ApiClient, staff: Staff) -> None:
    t = await report(api, staff.safety)
    r = await api.post(f"/api/v1/tickets/{t['id']}/comments", json={"text": "明早处理"}, headers=staff.maint)
    assert r.status_code == 201
    detail = (await api.get(f"/api/v1/tickets/{t['id']}")).json()
    assert [(c["author"], c["text"]) for c in detail["comments"]] == [("wushi", "明早处理")]


async def test_a_patrol_round_turns_each_problem_into_a_ticket_and_lists_the_route(
    api: ApiClient, staff: Staff
) -> None:
    body = {
        "route": "night",
        "inspectors": "夜班保安 冯二",
        "started_at": T0 - 600,
        "finished_at": T0 - 60,
        "visits": [
            {"checkpoint": "s1/b1/f1/z1", "ts": T0 - 500},
            {
                "checkpoint": "s1/b1/f1/z2",
                "ts": T0 - 300,
                "ok": False,
                "problem": {"problem": "2区防火门被楔子固定在开启状态", "measures": "撤除楔子，恢复常闭"},
            },
        ],
    }
    r = await api.post("/api/v1/patrols/rounds", json=body, headers=staff.safety)
    assert r.status_code == 201, r.text
    result = r.json()
    assert result["round"]["missed"] == []
    (change,) = result["tickets"]
    assert change["action"] == "opened"
    assert change["ticket"]["source"] == "patrol"
    assert change["ticket"]["place"] == "s1/b1/f1/z2"
    (route,) = (await api.get("/api/v1/patrols/routes")).json()
    assert route["last_done"] == T0 - 60
    assert route["next_due"] == T0 - 60 + 24 * 3600
    rounds = (await api.get("/api/v1/patrols/rounds", params={"route": "night"})).json()
    assert rounds["total"] == 1


async def test_the_ledger_filters_by_source_status_and_overdue(api: ApiClient, staff: Staff) -> None:
    await report(api, staff.safety)
    await report(api, staff.safety, department="药剂科", problem="危化品柜未上锁")
    page = (await api.get("/api/v1/tickets", params={"department": "药剂科", "open": True})).json()
    assert [t["problem"] for t in page["items"]] == ["危化品柜未上锁"]
    assert (await api.get("/api/v1/tickets", params={"source": "patrol"})).json()["total"] == 0
    assert (await api.get("/api/v1/tickets", params={"overdue": True})).json()["total"] == 0
    assert (await api.get("/api/v1/tickets", params={"source": "nonsense"})).status_code == 422
    plans = (await api.get("/api/v1/plans")).json()
    assert [(p["plan"], p["site"]) for p in plans] == [("pump-test", "s1")]


async def test_my_tickets_are_those_assigned_to_my_user_or_display_name(api: ApiClient, staff: Staff) -> None:
    by_display = await report(api, staff.safety, problem="配电室门口堆物")
    by_user = await report(api, staff.safety, problem="灭火器压力不足")
    someone_else = await report(api, staff.safety, problem="防火门闭门器损坏")
    unassigned = await report(api, staff.safety, problem="疏散指示灯不亮")
    for t, assignee in ((by_display, "维修组 吴十"), (by_user, "wushi"), (someone_else, "维修组 王二")):
        assert (await step(api, t["id"], staff.safety, "assign", assignee=assignee)).status_code == 200

    mine = (await api.get("/api/v1/tickets", params={"mine": True}, headers=staff.maint)).json()
    assert sorted(t["id"] for t in mine["items"]) == sorted([by_display["id"], by_user["id"]])
    others = (await api.get("/api/v1/tickets", params={"mine": False}, headers=staff.maint)).json()
    assert sorted(t["id"] for t in others["items"]) == sorted([someone_else["id"], unassigned["id"]])
    assert (await api.get("/api/v1/tickets", params={"mine": True}, headers=staff.leader)).json()[
        "total"
    ] == 0
    assert (await api.get("/api/v1/tickets", params={"mine": "perhaps"})).status_code == 422
