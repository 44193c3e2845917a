"""Incidents (火情/事件): one fire is one thing to handle. On a real SQLite store with an injected
clock (no test sleeps): alarms group by place and time, an incident grows from a detector to its
zone, floor and building, is acknowledged, verified and reset as one, escalates on its own clock,
and owes each push route a few notices, not one per detector."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import undefer

from alarms.incidents import common_place, grow
from alarms.model import IncidentUpdate
from alarms.policy import Policy
from alarms.service import AlarmService, InvalidTransitionError
from alarms.tickets import TicketOpener
from core.domain import (
    AlarmCategory,
    AlarmState,
    DetectorEvent,
    DetectorEventKind,
    FalseAlarmCause,
    IncidentAction,
    IncidentKind,
    IncidentState,
    Verification,
)
from core.registry import BuildingSpec, Device, FloorSpec, Registry, RoomSpec, SiteSpec, ZoneSpec
from core.settings import AlarmPolicySettings, EscalationChain, EscalationStep, PushRoute, TicketPolicy
from device_profiles.loader import load_profiles
from ingest.index import DeviceIndex
from storage.db import open_store
from storage.models import AlarmRow, IncidentEventRow, IncidentRow, OutboxRow
from tests.conftest import FakeClock

T0 = 1_800_000_000.0
RAISE, CLEAR, RESET = DetectorEventKind.RAISE, DetectorEventKind.CLEAR, DetectorEventKind.RESET
FIRE, PRE = AlarmCategory.FIRE, AlarmCategory.PRE_ALARM

CHAIN = EscalationChain(
    name="fire",
    categories=[FIRE],
    steps=[
        EscalationStep(role="control_room", wait_s=60),
        EscalationStep(role="micro_fire_station", wait_s=120),
        EscalationStep(role="leader_on_call", wait_s=60),
    ],
    remind_every_s=60,
)
ROUTES = [
    PushRoute(name="cr", url="json://127.0.0.1:9/cr", roles=["control_room"]),
    PushRoute(name="mfs", url="json://127.0.0.1:9/mfs", roles=["micro_fire_station"]),
    PushRoute(name="leader", url="json://127.0.0.1:9/leader", roles=["leader_on_call"]),
    PushRoute(name="feed", url="json://127.0.0.1:9/feed"),  # a subscription: default incident actions
]


def hospital(b1_name: str = "住院楼") -> Registry:
    """Two buildings; building b1 has floors f1 and f2 with two zones each; a gas detector in the
    kitchen of f1."""

    def floor(f: str) -> FloorSpec:
        zones = [
            ZoneSpec(id=f"z{z}", name=f"{z}区", rooms=[RoomSpec(id=f"r{z}", name=f"{z}室")]) for z in (1, 2)
        ]
        return FloorSpec(id=f, name=f.upper(), zones=zones)

    site = SiteSpec(
        id="s1",
        name="测试医院",
        buildings=[
            BuildingSpec(id="b1", name=b1_name, floors=[floor("f1"), floor("f2")]),
            BuildingSpec(id="b2", name="门诊楼", floors=[floor("f1")]),
        ],
    )
    devices = [
        Device(id=f"smk-{b}{f}z{z}-{i}", profile="smoke-photoelectric", place=f"s1/{b}/{f}/z{z}/r{z}")
        for b, floors in (("b1", ("f1", "f2")), ("b2", ("f1",)))
        for f in floors
        for z in (1, 2)
        for i in (1, 2, 3)
    ]
    devices.append(Device(id="gas-1", profile="combustible-gas", place="s1/b1/f1/z2/r2"))
    return Registry([site], devices)


def make(tmp_path: Path, clock: FakeClock, **policy: Any) -> AlarmService:
    _, sessions = open_store(f"sqlite:///{tmp_path / 'state.sqlite'}")
    index = DeviceIndex.build(hospital(), load_profiles())
    settings = AlarmPolicySettings(escalation=[CHAIN], **policy)
    return AlarmService(sessions, index, TicketOpener(index, TicketPolicy()), clock, ROUTES, Policy(settings))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def alarms(tmp_path: Path, clock: FakeClock) -> AlarmService:
    return make(tmp_path, clock)


@pytest.fixture
def steps(alarms: AlarmService) -> list[IncidentUpdate]:
    seen: list[IncidentUpdate] = []
    alarms.on_incident.append(seen.extend)
    return seen


def smoke(
    device: str, kind: DetectorEventKind = RAISE, category: AlarmCategory = FIRE, ts: float = T0
) -> DetectorEvent:
    alarm_type = "smoke.alarm" if category is FIRE else "smoke.prealarm"
    return DetectorEvent(device, alarm_type, kind, category, ts, 0.3, "smoke", "detail", "basis")


def at(clock: FakeClock, seconds: float) -> float:
    clock.now = T0 + seconds
    return clock.now


def incidents(alarms: AlarmService) -> list[IncidentRow]:
    with alarms.sessions() as s:
        return list(
            s.scalars(select(IncidentRow).options(undefer(IncidentRow.devices)).order_by(IncidentRow.id))
        )


def the_incident(alarms: AlarmService) -> IncidentRow:
    (inc,) = incidents(alarms)
    return inc


def pushes(alarms: AlarmService, route: str) -> list[tuple[str, float]]:
    """(incident action, when due) of the incident notices owed to one route, in order."""
    with alarms.sessions() as s:
        rows = s.scalars(
            select(OutboxRow)
            .where(OutboxRow.route == route, OutboxRow.incident_id.is_not(None))
            .order_by(OutboxRow.id)
        ).all()
    return [("+".join(r.payload["steps"]), r.next_ts - T0) for r in rows]


# --- grouping ----------------------------------------------------------------------------------------


def test_a_zone_fire_is_one_incident_holding_all_its_alarms(alarms: AlarmService, clock: FakeClock) -> None:
    for i, dev in enumerate(["smk-b1f1z1-1", "smk-b1f1z1-2", "smk-b1f1z1-3"]):
        alarms.apply([smoke(dev, category=PRE, ts=at(clock, i * 5))])
        alarms.apply([smoke(dev, ts=at(clock, i * 5 + 2))])
    inc = the_incident(alarms)
    assert (inc.kind, inc.category, inc.state) == ("fire", "fire", "open")
    assert inc.place == "s1/b1/f1/z1/r1"  # all in one room of the zone
    assert (inc.alarm_count, inc.device_count, inc.active_count) == (6, 3, 3)  # pre-alarms superseded
    with alarms.sessions() as s:
        members = s.scalars(select(AlarmRow).where(AlarmRow.incident_id == inc.id)).all()
    assert len(members) == 6


def test_an_incident_grows_from_its_zone_to_the_floor_and_the_building_as_the_fire_spreads(
    alarms: AlarmService, clock: FakeClock, steps: list[IncidentUpdate]
) -> None:
    alarms.apply([smoke("smk-b1f1z1-1", ts=at(clock, 0))])
    alarms.apply([smoke("smk-b1f1z2-1", ts=at(clock, 30))])
    assert the_incident(alarms).place == "s1/b1/f1"
    alarms.apply([smoke("smk-b1f2z1-1", ts=at(clock, 60))])
    inc = the_incident(alarms)
    assert inc.place == "s1/b1"
    assert inc.floors == ["s1/b1/f1", "s1/b1/f2"]
    assert inc.zones == ["s1/b1/f1/z1", "s1/b1/f1/z2", "s1/b1/f2/z1"]
    assert [u.action for u in steps] == [IncidentAction.OPENED, IncidentAction.SPREAD, IncidentAction.SPREAD]


def test_another_building_gas_and_faults_are_incidents_of_their_own(
    alarms: AlarmService, clock: FakeClock
) -> None:
    alarms.apply([smoke("smk-b1f1z1-1")])
    alarms.apply([smoke("smk-b2f1z1-1")])  # another building: another fire
    alarms.apply([DetectorEvent("gas-1", "gas.alarm", RAISE, FIRE, T0, 30.0, "lel", "", "")])
    alarms.apply(
        [DetectorEvent("smk-b1f1z2-1", "device.fault", RAISE, AlarmCategory.FAULT, T0, None, None, "", "")]
    )
    kinds = sorted((i.kind, i.group_key) for i in incidents(alarms))
    assert kinds == [("fault", "s1/b1"), ("fire", "s1/b1"), ("fire", "s1/b2"), ("gas", "s1/b1")]


def test_faults_group_only_while_close_in_time_but_a_fire_stays_one_while_open(
    alarms: AlarmService, clock: FakeClock
) -> None:
    fault = AlarmCategory.FAULT
    alarms.apply([DetectorEvent("smk-b1f1z1-1", "device.fault", RAISE, fault, T0, None, None, "", "")])
    at(clock, 3600)  # an hour later: longer than incident_gap_s
    alarms.apply([DetectorEvent("smk-b1f1z1-2", "device.fault", RAISE, fault, clock.now, None, None, "", "")])
    alarms.apply([smoke("smk-b1f1z1-1", ts=at(clock, 0))])
    alarms.apply([smoke("smk-b1f2z2-1", ts=at(clock, 7200))])  # two hours on, the fire is still open
    by_kind = [i.kind for i in incidents(alarms)]
    assert by_kind.count("fault") == 2
    assert by_kind.count("fire") == 1


def test_devices_lost_together_are_one_outage_incident(alarms: AlarmService, clock: FakeClock) -> None:
    fault = AlarmCategory.FAULT
    for i, dev in enumerate(["smk-b1f1z1-1", "smk-b2f1z2-3", "smk-b1f2z1-2"]):
        alarms.apply(
            [DetectorEvent(dev, "device.offline", RAISE, fault, at(clock, i * 10), None, None, "", "")]
        )
    inc = the_incident(alarms)
    assert (inc.kind, inc.place, inc.device_count) == (IncidentKind.OUTAGE.value, "s1", 3)
    assert inc.devices == ["smk-b1f1z1-1", "smk-b2f1z2-3", "smk-b1f2z1-2"]


def test_an_outage_incident_lists_every_device_its_outage_holds(
    alarms: AlarmService, clock: FakeClock
) -> None:
    """The outage alarm names 20 devices in its detail; its incident keeps them all, as the outage
    grows, and counts devices, not alarms."""
    floor = [f"smk-b1f2z{z}-{i}" for z in (1, 2) for i in (1, 2, 3)]

    def outage(members: list[str], ts: float) -> DetectorEvent:
        return DetectorEvent(
            "outage:s1/b1/f2", "device.outage", RAISE, AlarmCategory.FAULT, ts, float(len(members)),
            None, "detail", "", {"site": "s1", "place": "s1/b1/f2"}, tuple(members),
        )  # fmt: skip

    alarms.apply([outage(floor[:4], T0)])
    assert (the_incident(alarms).devices, the_incident(alarms).device_count) == (floor[:4], 4)
    alarms.apply([outage(floor, at(clock, 60))])  # the outage's update: two more silent
    alarms.apply([DetectorEvent("smk-b1f1z1-1", "device.offline", RAISE, AlarmCategory.FAULT, at(clock, 70))])
    inc = the_incident(alarms)
    assert inc.devices == [*floor, "smk-b1f1z1-1"]
    assert (inc.device_count, inc.alarm_count) == (7, 2)


def test_a_pre_alarm_incident_that_becomes_a_fire_is_upgraded_and_must_be_acknowledged_again(
    alarms: AlarmService, clock: FakeClock, steps: list[IncidentUpdate]
) -> None:
    alarms.apply([smoke("smk-b1f1z1-1", category=PRE)])
    inc = the_incident(alarms)
    alarms.acknowledge_incident(inc.id, actor="值班员")
    alarms.apply([smoke("smk-b1f1z1-1", ts=at(clock, 20))])
    inc = the_incident(alarms)
    assert inc.category == "fire"
    assert inc.acked_ts is None
    assert steps[-1].action is IncidentAction.UPGRADED
    assert steps[-1].targets == ("control_room",)  # the fire chain starts: no chain covers a pre-alarm


def test_place_growth_is_the_common_prefix_of_places() -> None:
    assert common_place(["s/b/f1/z1/r1", "s/b/f1/z1"]) == "s/b/f1/z1"
    g = grow(["s/b/f1/z1/r1"], ["s/b/f1/z1"], ["s/b/f1"], "s/b/f1/z2/r3")
    assert (g.place, g.new_zone, g.new_floor, g.spread) == ("s/b/f1", "s/b/f1/z2", None, True)


# --- handled as one ----------------------------------------------------------------------------------


def test_acknowledging_an_incident_acknowledges_all_its_alarms_and_stops_its_escalation(
    alarms: AlarmService, clock: FakeClock
) -> None:
    for dev in ("smk-b1f1z1-1", "smk-b1f1z1-2"):
        alarms.apply([smoke(dev)])
    inc = the_incident(alarms)
    at(clock, 30)
    step = alarms.acknowledge_incident(inc.id, actor="值班员", note="已派人")
    assert step.update.action is IncidentAction.ACKNOWLEDGED
    assert step.update.targets == ("control_room",)  # told so far hear who took it
    assert {t.after["state"] for t in step.transitions} == {AlarmState.ACTIVE_ACKNOWLEDGED.value}
    assert alarms.tick() == []
    assert the_incident(alarms).escalate_at is None
    with pytest.raises(InvalidTransitionError, match="already acknowledged"):
        alarms.acknowledge_incident(inc.id, actor="值班员")
    # Another detector of the same zone joins an acknowledged incident acknowledged with it.
    alarms.apply([smoke("smk-b1f1z1-3", ts=at(clock, 40))])
    with alarms.sessions() as s:
        states = set(s.scalars(select(AlarmRow.state).where(AlarmRow.incident_id == inc.id)))
    assert states == {AlarmState.ACTIVE_ACKNOWLEDGED.value}
    assert the_incident(alarms).acked_by == "值班员"


def test_a_spread_to_another_zone_needs_acknowledging_again(alarms: AlarmService, clock: FakeClock) -> None:
    alarms.apply([smoke("smk-b1f1z1-1")])
    inc = the_incident(alarms)
    alarms.acknowledge_incident(inc.id, actor="值班员")
    alarms.apply([smoke("smk-b1f2z1-1", ts=at(clock, 50))])
    assert the_incident(alarms).acked_ts is None


def test_confirmation_runs_on_the_duty_clock(alarms: AlarmService, clock: FakeClock) -> None:
    alarms.apply([smoke("smk-b1f1z1-1")])
    inc = the_incident(alarms)
    assert (inc.verification, inc.verify_due_ts) == ("pending", T0 + 180)
    at(clock, 20)
    alarms.verify_incident(inc.id, actor="值班员", verifier="微型消防站 王五")
    at(clock, 95)
    step = alarms.decide_incident(inc.id, actor="王五", verdict=Verification.CONFIRMED, note="三楼冒烟")
    assert step.update.action is IncidentAction.CONFIRMED
    assert step.update.after["call_119_due"] is True  # what the streams carry, for the 119 prompt
    assert step.update.after["place_name"] == "住院楼 F1 1区 1室"
    assert "leader_on_call" in step.update.targets  # a real fire is reported to the person in charge
    inc = the_incident(alarms)
    assert (inc.verification, inc.verifier, inc.verdict_ts, inc.verify_due_ts) == (
        "confirmed",
        "微型消防站 王五",
        T0 + 95,
        None,
    )
    assert inc.acked_by == "王五"  # who decided has seen it
    at(clock, 120)
    alarms.record_119_call(inc.id, actor="值班员", note="119 已受理")
    assert the_incident(alarms).call_119_ts == T0 + 120
    with pytest.raises(InvalidTransitionError, match="already recorded"):
        alarms.record_119_call(inc.id, actor="值班员")
    with pytest.raises(InvalidTransitionError, match="already verified"):
        alarms.decide_incident(inc.id, actor="值班员", verdict=Verification.TEST)
    with alarms.sessions() as s:
        timeline = [e.action for e in s.scalars(select(IncidentEventRow).order_by(IncidentEventRow.id))]
    assert timeline == ["opened", "verifying", "confirmed", "acknowledged", "called_119"]


def test_a_registry_change_names_the_incident_s_place_anew(alarms: AlarmService, clock: FakeClock) -> None:
    alarms.apply([smoke("smk-b1f1z1-1")])
    inc = the_incident(alarms)
    # What the service does on a registry change (firewatch/service.py): one index for them all.
    alarms.index = DeviceIndex.build(hospital(b1_name="新住院楼"), load_profiles())
    step = alarms.acknowledge_incident(inc.id, actor="值班员", note="已派人")
    assert step.update.after["place_name"] == "新住院楼 F1 1区 1室"


def test_a_false_alarm_needs_its_cause_and_counts_against_the_devices(alarms: AlarmService) -> None:
    alarms.apply([smoke("smk-b1f1z1-1")])
    inc = the_incident(alarms)
    with pytest.raises(InvalidTransitionError, match="cause"):
        alarms.decide_incident(inc.id, actor="值班员", verdict=Verification.FALSE_ALARM)
    alarms.decide_incident(
        inc.id, actor="值班员", verdict=Verification.FALSE_ALARM, cause=FalseAlarmCause.STEAM
    )
    assert alarms.false_alarm_counts()[0] == ("smk-b1f1z1-1", 1, 1)
    assert the_incident(alarms).cause == "steam"
    with alarms.sessions() as s:
        assert s.scalars(select(AlarmRow.false_alarm)).all() == [True]


def test_an_unverified_fire_escalates_to_the_leader_on_call_when_the_limit_passes(
    alarms: AlarmService, clock: FakeClock, steps: list[IncidentUpdate]
) -> None:
    alarms.apply([smoke("smk-b1f1z1-1")])
    alarms.acknowledge_incident(the_incident(alarms).id, actor="值班员")  # acknowledging is not verifying
    at(clock, 179)
    alarms.tick()
    assert [u.action for u in steps][-1:] == [IncidentAction.ACKNOWLEDGED]
    at(clock, 180)
    alarms.tick()
    last = steps[-1]
    assert (last.action, last.targets) == (IncidentAction.VERIFY_OVERDUE, ("control_room", "leader_on_call"))
    assert pushes(alarms, "leader") == [("verify_overdue", 180.0)]
    at(clock, 400)
    alarms.tick()
    assert [u.action for u in steps].count(IncidentAction.VERIFY_OVERDUE) == 1  # once


def test_resetting_an_incident_resets_its_fire_alarms_and_ends_it(
    alarms: AlarmService, clock: FakeClock, steps: list[IncidentUpdate]
) -> None:
    for dev in ("smk-b1f1z1-1", "smk-b1f1z1-2"):
        alarms.apply([smoke(dev)])
    inc = the_incident(alarms)
    alarms.decide_incident(inc.id, actor="值班员", verdict=Verification.TEST)
    at(clock, 300)
    step = alarms.reset_incident(inc.id, actor="值班员", note="测试结束")
    assert [t.action.value for t in step.transitions] == ["reset", "reset"]
    inc = the_incident(alarms)
    assert (inc.state, inc.reset_by, inc.active_count) == (IncidentState.CLOSED.value, "值班员", 0)
    assert [u.action.value for u in steps[-3:]] == ["reset", "ended", "closed"]
    with pytest.raises(InvalidTransitionError, match=r"closed|nothing to reset"):
        alarms.reset_incident(inc.id, actor="值班员")
    # A new fire after the incident closed is a new incident.
    alarms.apply([smoke("smk-b1f1z1-1", ts=at(clock, 400))])
    assert len(incidents(alarms)) == 2


def test_an_incident_ended_by_its_devices_closes_once_acknowledged(
    alarms: AlarmService, clock: FakeClock
) -> None:
    alarms.apply([smoke("smk-b1f1z1-1")])
    alarms.apply([DetectorEvent("smk-b1f1z1-1", "device.reset", RESET, FIRE, T0 + 5, None, None, "", "")])
    inc = the_incident(alarms)
    assert inc.state == IncidentState.ENDED.value  # unacknowledged: someone must still look at it
    alarms.acknowledge_incident(inc.id, actor="值班员")
    assert the_incident(alarms).state == IncidentState.CLOSED.value


# --- escalation and pushes per incident -------------------------------------------------------------


def test_a_zone_fire_owes_each_route_few_pushes_the_first_at_once(
    alarms: AlarmService, clock: FakeClock
) -> None:
    """Ten fire alarms of one zone, each after its pre-alarm, over a minute; acknowledged at 45 s,
    confirmed as a test at 2 min, reset at 8 min: at most 3 pushes per route in the first 10
    minutes (it neither spreads nor escalates), the first fire push due at once."""
    devices = [f"smk-b1f1z{z}-{i}" for z in (1,) for i in (1, 2, 3)]
    for i in range(10):
        dev = devices[i % 3]
        alarms.apply([smoke(dev, category=PRE, ts=at(clock, i * 6))])
        alarms.apply([smoke(dev, ts=at(clock, i * 6 + 3))])
        alarms.tick()
    inc = the_incident(alarms)
    at(clock, 45)
    alarms.acknowledge_incident(inc.id, actor="值班员")
    for s in range(60, 600, 15):
        at(clock, s)
        alarms.tick()
        if s == 120:
            alarms.decide_incident(inc.id, actor="值班员", verdict=Verification.TEST)
        if s == 480:
            alarms.reset_incident(inc.id, actor="值班员")
    cr = pushes(alarms, "cr")
    # The pre-alarm opened the incident (no chain covers pre-alarms: the subscription heard it);
    # the control room's first push is the fire, due the moment it was raised, never held.
    assert cr[0] == ("upgraded", 3.0)
    assert pushes(alarms, "feed")[:2] == [("opened", 0.0), ("upgraded", 3.0)]
    assert len([p for p in cr if p[1] < 600]) <= 3
    assert cr[-1] == ("reset+ended", 480.0)  # the reset and the end it caused: one notice
    assert len(pushes(alarms, "feed")) <= 3


def test_an_unacknowledged_fire_escalates_per_incident_and_reminders_are_rate_limited(
    alarms: AlarmService, clock: FakeClock, steps: list[IncidentUpdate]
) -> None:
    for dev in ("smk-b1f1z1-1", "smk-b1f1z1-2", "smk-b1f1z2-1"):
        alarms.apply([smoke(dev)])
    for s in range(0, 600, 10):
        at(clock, s)
        alarms.tick()
    escalations = [(u.ts - T0, u.targets) for u in steps if u.action is IncidentAction.ESCALATED]
    assert escalations == [(60, ("micro_fire_station",)), (180, ("leader_on_call",))]
    # The control room: opened, the spread to zone 2, then reminders at most once per 300 s.
    cr = pushes(alarms, "cr")
    assert [a for a, _ in cr[:2]] == ["opened", "spread"]
    assert ("verify_overdue", 180) in cr  # nobody verified within 3 minutes: the control room hears too
    for (_, before), (action, when) in itertools.pairwise(cr):
        if action == "reminded":
            assert when - before >= 300  # a reminder waits for the update interval
    assert len(cr) <= 4


def test_only_fire_and_gas_incidents_are_verified_and_a_closed_one_takes_no_119_call(
    alarms: AlarmService, clock: FakeClock
) -> None:
    fault = AlarmCategory.FAULT
    alarms.apply([DetectorEvent("smk-b1f1z1-1", "device.fault", RAISE, fault, T0, None, None, "", "")])
    (inc,) = incidents(alarms)
    with pytest.raises(InvalidTransitionError, match="only fire and gas"):
        alarms.decide_incident(inc.id, actor="值班员", verdict=Verification.TEST)
    with pytest.raises(InvalidTransitionError, match="only fire and gas"):
        alarms.verify_incident(inc.id, actor="值班员")
    alarms.apply([smoke("smk-b1f1z1-2")])
    fire = next(i for i in incidents(alarms) if i.kind == "fire")
    alarms.reset_incident(fire.id, actor="值班员")
    alarms.acknowledge_incident(fire.id, actor="值班员")
    with pytest.raises(InvalidTransitionError, match="closed"):
        alarms.record_119_call(fire.id, actor="值班员")


def test_a_confirmed_fire_alarming_again_after_its_reset_is_the_same_incident_reopened(
    alarms: AlarmService, clock: FakeClock, steps: list[IncidentUpdate]
) -> None:
    alarms.apply([smoke("smk-b1f1z1-1")])
    inc = the_incident(alarms)
    alarms.decide_incident(inc.id, actor="王五", verdict=Verification.CONFIRMED)
    alarms.record_119_call(inc.id, actor="王五")
    at(clock, 300)
    alarms.reset_incident(inc.id, actor="王五", note="明火已扑灭")
    assert the_incident(alarms).state == IncidentState.CLOSED.value
    alarms.apply([smoke("smk-b1f1z1-2", ts=at(clock, 360))])  # 复燃: a minute later, next door
    inc = the_incident(alarms)
    assert (inc.state, inc.verification, inc.call_119_ts, inc.acked_ts) == ("open", "confirmed", T0, None)
    assert steps[-1].action is IncidentAction.REOPENED
    assert steps[-1].targets == ("control_room",)  # the chain starts over: someone must take it again
    assert pushes(alarms, "cr")[-1] == ("reopened", 360.0)


def test_after_a_false_alarm_or_once_long_closed_a_new_fire_is_a_new_incident(
    alarms: AlarmService, clock: FakeClock
) -> None:
    alarms.apply([smoke("smk-b1f1z1-1")])
    first = the_incident(alarms)
    alarms.decide_incident(
        first.id, actor="王五", verdict=Verification.FALSE_ALARM, cause=FalseAlarmCause.DUST
    )
    alarms.apply(
        [DetectorEvent("smk-b1f1z1-1", "device.reset", RESET, FIRE, at(clock, 30), None, None, "", "")]
    )
    assert the_incident(alarms).state == IncidentState.CLOSED.value
    alarms.apply([smoke("smk-b1f1z1-1", ts=at(clock, 60))])  # the same detector again: verified afresh
    second = incidents(alarms)[-1]
    assert (second.id != first.id, second.verification) == (True, "pending")
    alarms.decide_incident(second.id, actor="王五", verdict=Verification.CONFIRMED)
    alarms.reset_incident(second.id, actor="王五")
    alarms.apply([smoke("smk-b1f1z1-2", ts=at(clock, 60 + 601))])  # past incident_gap_s: a new fire
    assert len(incidents(alarms)) == 3
