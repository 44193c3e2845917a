"""Correcting a ticket's description (the U of ticket CRUD): the safety office or the leader, while
the ticket is open, with every old value kept in its history. Tickets are never deleted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from alarms.service import AlarmService
from alarms.tickets import TicketOpener
from core.domain import Role, TicketAction
from core.settings import TicketPolicy
from ingest.index import DeviceIndex
from storage.db import open_store
from storage.registry_sync import sync_registry
from tests.conftest import PROFILES, ApiClient, FakeClock, asgi_api, small_registry
from tickets.service import ActionFields, TicketService

T0 = 1_800_000_000.0


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[ApiClient, TicketService]]:
    _, sessions = open_store(f"sqlite:///{tmp_path / 'state.sqlite'}")
    registry = small_registry()
    sync_registry(sessions, registry, PROFILES)
    index = DeviceIndex.build(registry, PROFILES)
    clock = FakeClock(T0)
    alarms = AlarmService(sessions, index, TicketOpener(index, TicketPolicy()), clock)
    tickets = TicketService(sessions, index, TicketPolicy(), alarms=alarms, clock=clock)
    async with asgi_api(alarms, tmp_path, tickets) as client:
        yield client, tickets


async def open_ticket(api: ApiClient) -> dict[str, Any]:
    hazard = {"site": "s1", "problem": "疏散通道堆放杂物", "inspectors": "周九", "department": "心内科"}
    r = await api.post("/api/v1/tickets", json=hazard, headers=api.as_("zhoujiu", "safety"))
    assert r.status_code == 201, r.text
    ticket: dict[str, Any] = r.json()["ticket"]
    return ticket


async def test_the_safety_office_corrects_a_ticket_and_the_old_value_stays_in_its_history(
    setup: tuple[ApiClient, TicketService],
) -> None:
    api, _ = setup
    t = await open_ticket(api)
    r = await api.patch(
        f"/api/v1/tickets/{t['id']}",
        json={"department": "呼吸内科", "measures": "立即清理", "note": "科室登记错误"},
        headers=api.as_("zhoujiu", "safety"),
    )
    assert r.status_code == 200, r.text
    assert (r.json()["department"], r.json()["measures"]) == ("呼吸内科", "立即清理")
    assert r.json()["status"] == "open"  # a correction is not a step of the loop
    events = (await api.get(f"/api/v1/tickets/{t['id']}")).json()["events"]
    edit = events[-1]
    assert (edit["action"], edit["actor"], edit["role"]) == ("edit", "zhoujiu", "safety")
    assert "department: 心内科 → 呼吸内科" in edit["note"]
    assert "科室登记错误" in edit["note"]


async def test_maintenance_may_not_rewrite_a_ticket(setup: tuple[ApiClient, TicketService]) -> None:
    api, _ = setup
    t = await open_ticket(api)
    r = await api.patch(
        f"/api/v1/tickets/{t['id']}", json={"problem": "没问题"}, headers=api.as_("wushi", "maintenance")
    )
    assert r.status_code == 403
    assert "may not edit" in r.json()["detail"]


async def test_a_closed_ticket_cannot_be_edited(setup: tuple[ApiClient, TicketService]) -> None:
    api, tickets = setup
    t = await open_ticket(api)
    for action, fields in [
        (TicketAction.ASSIGN, ActionFields(assignee="吴十")),
        (TicketAction.START, None),
        (TicketAction.RECTIFY, ActionFields(feedback="已清理")),
        (TicketAction.VERIFY, None),
        (TicketAction.CLOSE, None),
    ]:
        tickets.act(t["id"], action, "root", Role.ADMIN, "", fields)
    r = await api.patch(f"/api/v1/tickets/{t['id']}", json={"problem": "改写记录"})
    assert r.status_code == 409


@pytest.mark.parametrize("body", [{}, {"department": "心内科"}, {"problem": ""}, {"hazard_type": "x"}])
async def test_an_edit_that_changes_nothing_or_is_invalid_is_422(
    setup: tuple[ApiClient, TicketService], body: dict[str, str]
) -> None:
    api, _ = setup
    t = await open_ticket(api)
    r = await api.patch(f"/api/v1/tickets/{t['id']}", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["detail"]


async def test_there_is_no_way_to_delete_a_ticket(setup: tuple[ApiClient, TicketService]) -> None:
    api, _ = setup
    t = await open_ticket(api)
    assert (await api.delete(f"/api/v1/tickets/{t['id']}")).status_code == 405
