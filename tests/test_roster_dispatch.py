"""A roster route's pushes on both stores (SQLite, PostgreSQL), on a clock that moves only when the
test moves it: the roster is read when the push is sent, a gap without a fallback url keeps the
push owed until someone is on duty, a roster that cannot be read falls back to the url, one
person's broken address does not hold the others', and an incident's deliveries name the people."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import select, text

from alarms.service import AlarmService
from alarms.tickets import TicketOpener
from core.domain import Role
from core.settings import (
    AlarmPolicySettings,
    EscalationChain,
    EscalationStep,
    PushRoute,
    Settings,
    TicketPolicy,
)
from firewatch.dispatch import Dispatcher
from firewatch.roster_channel import RosterChannel
from ingest.index import DeviceIndex
from roster.rules import Member, ShiftDraft
from roster.service import RosterService
from storage.db import open_store
from storage.models import DeliveryRow, IncidentRow
from storage.registry_sync import sync_registry
from tests.conftest import PROFILES, FakeClock, asgi_api, make_accounts, small_registry
from tests.test_pushes import T0, fire, free_port
from tests.test_roster_pushes import People

SHIFT = (Member("a1", "control_room"), Member("a2", "control_room"), Member("la", "leader_on_call"))
NAMES = {"a1": "甲一", "a2": "甲二", "la": "甲领导"}


@pytest.fixture
def people() -> Iterator[People]:
    p = People()
    yield p
    p.close()


class Duty:
    """An alarm service, the roster and a dispatcher with one roster route, on one store."""

    def __init__(self, url: str, route: PushRoute) -> None:
        _, self.sessions = open_store(url)
        registry = small_registry()
        sync_registry(self.sessions, registry, PROFILES)
        index = DeviceIndex.build(registry, PROFILES)
        self.clock = FakeClock(T0)
        self.alarms = AlarmService(
            self.sessions, index, TicketOpener(index, TicketPolicy()), self.clock, [route]
        )
        self.roster = RosterService(self.sessions, self.clock)
        self.channel = RosterChannel(route, self.roster, timeout_s=2.0)
        self.dispatcher = Dispatcher(
            self.sessions, {route.name: self.channel}, clock=self.clock, backoff_s=1.0
        )
        accounts = make_accounts(self.sessions)
        for user, display in NAMES.items():
            accounts.create_user(user, "correct-horse-battery", [Role.OPERATOR], display_name=display)

    def on_duty(self, people: People, *, addresses: dict[str, str] | None = None) -> None:
        for user in NAMES:
            address = (addresses or {}).get(user, people.url(user))
            self.roster.set_contact(user, "", [address], "test")
        self.roster.create(ShiftDraft("白班", T0 - 3600, T0 + 8 * 3600, SHIFT), "test")

    def log(self) -> list[DeliveryRow]:
        with self.sessions() as s:
            return list(s.scalars(select(DeliveryRow).order_by(DeliveryRow.id)))


def duty_route(**kw: object) -> PushRoute:
    return PushRoute(name="duty", roster=True, roles=["control_room", "leader_on_call"], **kw)


async def test_a_gap_without_a_fallback_url_keeps_the_fire_owed_until_someone_is_on_duty(
    store_url: str, people: People
) -> None:
    duty = Duty(store_url, duty_route())
    duty.alarms.apply([fire()])
    assert await duty.dispatcher.deliver_due() == 0
    (failed,) = duty.log()
    assert failed.ok is False
    assert "nobody on duty in control_room" in failed.detail
    assert duty.dispatcher.pending() == 1
    # Someone goes on duty: the push that waited is sent to them, once its backoff is over.
    duty.on_duty(people)
    duty.clock.now += 5
    assert await duty.dispatcher.deliver_due() == 1
    assert [path for path, _ in people.posts] == ["a1", "a2"]
    delivered = duty.log()[-1]
    assert delivered.detail == "值班人员：甲一、甲二"
    assert delivered.recipients is not None
    assert [r["user"] for r in delivered.recipients] == ["a1", "a2"]


async def test_a_roster_that_cannot_be_read_sends_the_fire_to_the_route_url(
    store_url: str, people: People
) -> None:
    duty = Duty(store_url, duty_route(url=people.url("fallback")))
    duty.on_duty(people)
    with duty.sessions.begin() as s:
        s.execute(text("DROP TABLE roster_members"))
    duty.alarms.apply([fire()])
    assert await duty.dispatcher.deliver_due() == 1
    assert [path for path, _ in people.posts] == ["fallback"]
    assert "注意：消防控制室当前无人值班，已发往路由固定地址" in people.posts[0][1]["message"]
    (entry,) = duty.log()
    assert entry.detail == "消防控制室无人值班，已发往路由固定地址（值班表读取失败）"


async def test_one_persons_unreachable_address_does_not_hold_the_push_to_the_others(
    store_url: str, people: People
) -> None:
    duty = Duty(store_url, duty_route())
    duty.on_duty(people, addresses={"a2": f"json://127.0.0.1:{free_port()}/nobody-listens"})
    duty.alarms.apply([fire()])
    assert await duty.dispatcher.deliver_due() == 1
    assert [path for path, _ in people.posts] == ["a1"]
    (entry,) = duty.log()
    assert entry.detail == "值班人员：甲一、甲二；1 个地址未送达"
    assert entry.recipients is not None
    assert [(r["user"], r["ok"]) for r in entry.recipients] == [("a1", True), ("a2", False)]


async def test_an_incidents_deliveries_name_the_people_and_show_addresses_only_to_the_safety_office(
    store_url: str, people: People, tmp_path: Path
) -> None:
    duty = Duty(store_url, duty_route())
    duty.on_duty(people)
    duty.alarms.apply([fire()])
    await duty.dispatcher.deliver_due()
    with duty.sessions() as s:
        incident_id = s.scalars(select(IncidentRow.id)).one()
    async with asgi_api(duty.alarms, tmp_path) as api:
        path = f"/api/v1/incidents/{incident_id}/deliveries"
        viewer = (await api.get(path, headers=api.as_("kan", "viewer"))).json()
        (item,) = viewer["items"]
        assert item["route"] == "duty"
        assert item["detail"] == "值班人员：甲一、甲二"
        assert [(r["name"], r["role_zh"], r["address"]) for r in item["recipients"]] == [
            ("甲一", "消防控制室", None),
            ("甲二", "消防控制室", None),
        ]
        safety = (await api.get(path, headers=api.as_("baowei", "safety"))).json()
        addresses = [r["address"] for r in safety["items"][0]["recipients"]]
        assert addresses == [people.url("a1"), people.url("a2")]
        assert (await api.get("/api/v1/incidents/999/deliveries")).status_code == 404


def test_settings_take_a_roster_route_without_url_and_refuse_a_route_with_neither() -> None:
    chain = EscalationChain(name="fire", steps=[EscalationStep(role="control_room")])
    settings = Settings(pushes=[duty_route()], alarms=AlarmPolicySettings(escalation=[chain]))
    assert settings.pushes[0].url is None
    with pytest.raises(ValidationError, match="give its `url`"):
        PushRoute(name="nowhere", roles=["control_room"])
    with pytest.raises(ValidationError, match="needs the duty `roles`"):
        PushRoute(name="nobody", roster=True)
