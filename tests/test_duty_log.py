"""The duty log (值班记录) through the API, on SQLite and on PostgreSQL: the people on duty write it,
everyone signed in reads it, and it is searched by text, time window, author and kind."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from alarms.service import AlarmService
from alarms.tickets import TicketOpener
from core.settings import TicketPolicy
from ingest.index import DeviceIndex
from storage.db import open_store
from storage.registry_sync import sync_registry
from tests.conftest import PROFILES, ApiClient, FakeClock, asgi_api, small_registry
from tickets.service import TicketService

T0 = 1_800_000_000.0


@dataclass
class Duty:
    api: ApiClient
    alarms: AlarmService
    tickets: TicketService
    clock: FakeClock


@pytest.fixture
async def duty(store_url: str, tmp_path: Path) -> AsyncIterator[Duty]:
    """The real API over the real alarm and ticket services on the store under test."""
    engine, sessions = open_store(store_url)
    registry = small_registry()
    sync_registry(sessions, registry, PROFILES)
    index = DeviceIndex.build(registry, PROFILES)
    clock = FakeClock(T0)
    alarms = AlarmService(sessions, index, TicketOpener(index, TicketPolicy()), clock)
    tickets = TicketService(sessions, index, TicketPolicy(), alarms=alarms, clock=clock)
    async with asgi_api(alarms, tmp_path, tickets) as client:
        yield Duty(client, alarms, tickets, clock)
    engine.dispose()


async def write(duty: Duty, who: dict[str, str], kind: str, text: str) -> dict[str, object]:
    r = await duty.api.post("/api/v1/duty-log", json={"kind": kind, "text": text}, headers=who)
    assert r.status_code == 201, r.text
    entry: dict[str, object] = r.json()
    return entry


async def test_the_people_on_duty_write_the_log_and_everyone_signed_in_reads_it(duty: Duty) -> None:
    operator = duty.api.as_("zhangsan", "operator", display_name="值班员 张三")
    entry = await write(duty, operator, "patrol", "22:00 巡查住院楼 1F，疏散通道畅通")
    assert entry["ts"] == T0  # the service's clock
    assert (entry["kind"], entry["author"], entry["author_name"]) == ("patrol", "zhangsan", "值班员 张三")
    assert entry["handover_id"] is None
    for role in ("safety", "leader"):
        await write(duty, duty.api.as_(f"w-{role}", role), "other", f"{role} 来访登记")
    viewer = duty.api.as_("wangwu", "viewer")
    r = await duty.api.get("/api/v1/duty-log", headers=viewer)
    assert r.status_code == 200, r.text
    assert r.json()["total"] == 3
    assert r.json()["items"][-1]["text"] == "22:00 巡查住院楼 1F，疏散通道畅通"


@pytest.mark.parametrize("role", ["viewer", "maintenance"])
async def test_who_does_not_keep_the_duty_may_not_write_the_log(duty: Duty, role: str) -> None:
    who = duty.api.as_(f"x-{role}", role)
    r = await duty.api.post("/api/v1/duty-log", json={"kind": "other", "text": "x"}, headers=who)
    assert r.status_code == 403, r.text
    assert (await duty.api.get("/api/v1/duty-log")).json()["total"] == 0


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "handover", "text": "交接班只由系统记录"},  # the service's own kind
        {"kind": "gossip", "text": "x"},
        {"kind": "patrol", "text": ""},
        {"kind": "patrol", "text": "   \n "},
        {"kind": "patrol", "text": "x" * 4001},
        {"kind": "patrol", "text": "x", "ts": 1.0},  # the time is the service's, not the writer's
        {"kind": "patrol", "text": "x", "author": "someone-else"},  # the author is the caller
    ],
)
async def test_bad_entries_are_refused_and_nothing_is_written(duty: Duty, body: dict[str, object]) -> None:
    r = await duty.api.post("/api/v1/duty-log", json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert (await duty.api.get("/api/v1/duty-log")).json()["total"] == 0


async def test_the_log_is_searched_by_text_time_window_author_and_kind_newest_first(duty: Duty) -> None:
    zhang = duty.api.as_("zhangsan", "operator", display_name="值班员 张三")
    li = duty.api.as_("lisi", "operator", display_name="值班员 李四")
    await write(duty, zhang, "patrol", "巡查 1F 正常")
    duty.clock.now = T0 + 600
    await write(duty, li, "equipment", "控制器报主电故障，已通知维保 100% 恢复")
    duty.clock.now = T0 + 1200
    await write(duty, zhang, "alarm_handling", "3F 感烟探测器火警，核实为油烟误报")
    duty.clock.now = T0 + 1800
    await write(duty, li, "patrol", "巡查 3F PATROL 正常")

    async def texts(**params: Any) -> list[str]:
        r = await duty.api.get("/api/v1/duty-log", params=params)
        assert r.status_code == 200, r.text
        return [e["text"] for e in r.json()["items"]]

    assert await texts() == [
        "巡查 3F PATROL 正常",
        "3F 感烟探测器火警，核实为油烟误报",
        "控制器报主电故障，已通知维保 100% 恢复",
        "巡查 1F 正常",
    ]
    assert await texts(q="巡查") == ["巡查 3F PATROL 正常", "巡查 1F 正常"]
    assert await texts(q="patrol") == ["巡查 3F PATROL 正常"]  # Latin letters in any case
    assert await texts(q="100%") == ["控制器报主电故障，已通知维保 100% 恢复"]  # % is a character
    assert await texts(q="0%") == ["控制器报主电故障，已通知维保 100% 恢复"]
    assert await texts(q="_") == []  # _ too, not a wildcard
    assert await texts(since=T0 + 600, until=T0 + 1800) == [
        "3F 感烟探测器火警，核实为油烟误报",
        "控制器报主电故障，已通知维保 100% 恢复",
    ]
    assert await texts(author="zhangsan") == ["3F 感烟探测器火警，核实为油烟误报", "巡查 1F 正常"]
    assert await texts(kind="patrol", author="lisi") == ["巡查 3F PATROL 正常"]
    page = (await duty.api.get("/api/v1/duty-log", params={"limit": 1, "offset": 1})).json()
    assert (page["total"], [e["text"] for e in page["items"]]) == (4, ["3F 感烟探测器火警，核实为油烟误报"])


async def test_a_search_with_an_unknown_kind_or_a_bad_window_is_refused(duty: Duty) -> None:
    for params in ({"kind": "gossip"}, {"since": -1}, {"q": ""}, {"qq": "x"}):
        r = await duty.api.get("/api/v1/duty-log", params=params)
        assert r.status_code == 422, (params, r.text)
