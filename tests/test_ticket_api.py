"""The ticket endpoints over a real SQLite store: report, the loop by role, comments, evidence upload
and download, patrol rounds and plans. Refusals are 403/404/409/413/422 problems, never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator
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
from tests.conftest import PROFILES, FakeClock, asgi_api, small_registry
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
async def api(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    _, sessions = open_store(f"sqlite:///{tmp_path / 'state.sqlite'}")
    registry = small_registry()
    sync_registry(sessions, registry, PROFILES)
    index = DeviceIndex.build(registry, PROFILES)
    clock = FakeClock(T0)
    alarms = AlarmService(sessions, index, TicketOpener(index, POLICY), clock)
    tickets = TicketService(sessions, index, POLICY, alarms=alarms, clock=clock)
    async with asgi_api(alarms, tmp_path, tickets) as client:
        yield client


SAFETY = {"actor": "保卫科 周九", "role": "safety"}
MAINT = {"actor": "维修组 吴十", "role": "maintenance"}
LEADER = {"actor": "分管副院长 郑一", "role": "leader"}


async def report(api: httpx.AsyncClient, **extra: Any) -> dict[str, Any]:
    body = {
        **SAFETY,
        "site": "s1",
        "problem": "住院楼 1F 疏散通道堆放杂物",
        "inspectors": "周九",
        "department": "心内科",
        "measures": "立即清理",
    } | extra
    r = await api.post("/api/v1/tickets", json=body)
    assert r.status_code == 201, r.text
    ticket: dict[str, Any] = r.json()["ticket"]
    return ticket


async def step(
    api: httpx.AsyncClient, ticket_id: int, who: dict[str, str], action: str, **extra: Any
) -> httpx.Response:
    return await api.post(f"/api/v1/tickets/{ticket_id}/transitions", json={**who, "action": action, **extra})


async def test_a_ticket_goes_round_the_loop_through_the_api_with_each_sign_off(
    api: httpx.AsyncClient,
) -> None:
    t = await report(api)
    assert (t["status"], t["source"], t["inspection_time"]) == ("open", "inspection", T0)
    for who, action, extra in [
        (SAFETY, "assign", {"assignee": "吴十"}),
        (MAINT, "start", {}),
        (MAINT, "rectify", {"feedback": "已清理并张贴禁止堆放标识"}),
        (SAFETY, "verify", {"note": "复查通道畅通"}),
        (LEADER, "close", {}),
    ]:
        r = await step(api, t["id"], who, action, **extra)
        assert r.status_code == 200, r.text
    closed = r.json()
    assert closed["status"] == "closed"
    assert (closed["feedback_signed_by"], closed["confirmed_by"], closed["leader_signed_by"]) == (
        "维修组 吴十",
        "保卫科 周九",
        "分管副院长 郑一",
    )
    detail = (await api.get(f"/api/v1/tickets/{t['id']}")).json()
    assert [(e["action"], e["actor"], e["role"]) for e in detail["events"]][-1] == (
        "close",
        "分管副院长 郑一",
        "leader",
    )


async def test_the_wrong_role_is_403_and_the_wrong_status_409(api: httpx.AsyncClient) -> None:
    t = await report(api)
    r = await step(api, t["id"], MAINT, "verify")
    assert r.status_code == 403
    assert "may not verify" in r.json()["detail"]
    r = await step(api, t["id"], SAFETY, "verify")
    assert r.status_code == 409
    assert "only when rectified" in r.json()["detail"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/tickets", {**SAFETY, "problem": "x", "inspectors": "y"}),  # neither site nor device
        ("/api/v1/tickets", {**SAFETY, "site": "s1", "problem": "", "inspectors": "y"}),
        ("/api/v1/tickets", {**SAFETY, "site": "s1", "problem": "x", "inspectors": "y", "device_id": "nope"}),
        ("/api/v1/tickets", {**SAFETY, "site": "s1", "problem": "x", "inspectors": "y", "deadline": T0 - 1}),
        (
            "/api/v1/tickets",
            {"actor": "a", "role": "janitor", "site": "s1", "problem": "x", "inspectors": "y"},
        ),
        ("/api/v1/tickets", {**SAFETY, "site": "s1", "problem": "x", "inspectors": "y", "extra": 1}),
        ("/api/v1/tickets/{id}/transitions", {**SAFETY, "action": "teleport"}),
        ("/api/v1/tickets/{id}/transitions", {**SAFETY, "action": "assign"}),  # no assignee
        ("/api/v1/tickets/{id}/transitions", {**SAFETY, "action": "extend", "deadline": 1e12}),
        ("/api/v1/tickets/{id}/comments", {**SAFETY, "text": ""}),
        (
            "/api/v1/patrols/rounds",
            {**SAFETY, "route": "day", "inspectors": "x", "started_at": T0, "finished_at": T0, "visits": []},
        ),
        (
            "/api/v1/patrols/rounds",
            {
                **SAFETY,
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
    api: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> None:
    t = await report(api)
    r = await api.post(path.replace("{id}", str(t["id"])), json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["detail"]


async def test_a_missing_ticket_is_404(api: httpx.AsyncClient) -> None:
    assert (await api.get("/api/v1/tickets/999")).status_code == 404
    assert (await step(api, 999, SAFETY, "assign", assignee="x")).status_code == 404
    assert (await api.get("/api/v1/tickets/999/evidence/1")).status_code == 404


async def test_evidence_is_uploaded_listed_and_downloaded_intact_and_oversize_is_413(
    api: httpx.AsyncClient,
) -> None:
    t = await report(api)
    photo = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8
    r = await api.post(
        f"/api/v1/tickets/{t['id']}/evidence",
        data={**MAINT, "note": "整改后"},
        files={"file": ("通道-整改后.jpg", photo, "image/jpeg")},
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
        data=MAINT,
        files={"file": ("big.jpg", bytes(5000), "image/jpeg")},
    )
    assert r.status_code == 413
    r = await api.post(
        f"/api/v1/tickets/{t['id']}/evidence",
        data={"actor": "v", "role": "viewer"},
        files={"file": ("a.jpg", b"x", "image/jpeg")},
    )
    assert r.status_code == 403
    detail = (await api.get(f"/api/v1/tickets/{t['id']}")).json()
    assert [e["filename"] for e in detail["evidence"]] == ["通道-整改后.jpg"]


async def test_comments_are_listed_with_the_ticket(api: httpx.AsyncClient) -> None:
    t = await report(api)
    r = await api.post(f"/api/v1/tickets/{t['id']}/comments", json={**MAINT, "text": "明早处理"})
    assert r.status_code == 201
    detail = (await api.get(f"/api/v1/tickets/{t['id']}")).json()
    assert [(c["author"], c["text"]) for c in detail["comments"]] == [("维修组 吴十", "明早处理")]


async def test_a_patrol_round_turns_each_problem_into_a_ticket_and_lists_the_route(
    api: httpx.AsyncClient,
) -> None:
    body = {
        **SAFETY,
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
    r = await api.post("/api/v1/patrols/rounds", json=body)
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


async def test_the_ledger_filters_by_source_status_and_overdue(api: httpx.AsyncClient) -> None:
    await report(api)
    await report(api, department="药剂科", problem="危化品柜未上锁")
    page = (await api.get("/api/v1/tickets", params={"department": "药剂科", "open": True})).json()
    assert [t["problem"] for t in page["items"]] == ["危化品柜未上锁"]
    assert (await api.get("/api/v1/tickets", params={"source": "patrol"})).json()["total"] == 0
    assert (await api.get("/api/v1/tickets", params={"overdue": True})).json()["total"] == 0
    assert (await api.get("/api/v1/tickets", params={"source": "nonsense"})).status_code == 422
    plans = (await api.get("/api/v1/plans")).json()
    assert [(p["plan"], p["site"]) for p in plans] == [("pump-test", "s1")]
