"""The alarm policy, on a real SQLite store with an injected clock (no test sleeps): escalation and
reminders (per incident), flapping, maintenance suppression, shelving. What is owed to whom is read
from the outbox, the same rows the dispatcher delivers. Grouping and the incident's own steps are
specified in tests/test_incidents.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from alarms.model import IncidentUpdate
from alarms.policy import Policy
from alarms.service import AlarmService, InvalidTransitionError
from alarms.tickets import FLAPPING, TicketOpener
from core.domain import AlarmAction, AlarmCategory, AlarmState, DetectorEvent, DetectorEventKind, TicketStatus
from core.settings import (
    AlarmPolicySettings,
    EscalationChain,
    EscalationStep,
    PushRoute,
    Settings,
    TicketPolicy,
)
from firewatch.dispatch import AppriseChannel, Channel, Dispatcher
from ingest.index import DeviceIndex
from storage.db import open_store
from storage.models import AuditRow, MaintenanceRow, OutboxRow, TicketRow
from tests.conftest import PROFILES, FakeClock, small_registry
from tests.test_pushes import Receiver, free_port

T0 = 1_800_000_000.0
RAISE, CLEAR = DetectorEventKind.RAISE, DetectorEventKind.CLEAR


CHAIN = EscalationChain(
    name="fire-chain",
    categories=[AlarmCategory.FIRE, AlarmCategory.FAULT],
    steps=[
        EscalationStep(role="control_room", wait_s=60),
        EscalationStep(role="fire_station", wait_s=120),
        EscalationStep(role="department_head", wait_s=300),
    ],
    remind_every_s=30,
)
ROUTES = [
    PushRoute(name="cr", url="json://127.0.0.1:9/cr", roles=["control_room"]),
    PushRoute(name="fs", url="json://127.0.0.1:9/fs", roles=["fire_station"]),
    PushRoute(name="dh", url="json://127.0.0.1:9/dh", roles=["department_head"]),
    # A subscription that also takes per-alarm pushes (default actions): where holds show.
    PushRoute(name="feed", url="json://127.0.0.1:9/feed", per_alarm=True),
]
STEPS: dict[int, list[IncidentUpdate]] = {}
NOTICES: dict[str, Any] = {"incident_update_interval_s": 0, "verify_limit_s": 10**7}
ALARM_ACTIONS = {a.value for a in AlarmAction}


def make(tmp_path: Path, clock: FakeClock, **policy: Any) -> AlarmService:
    _, sessions = open_store(f"sqlite:///{tmp_path / 'state.sqlite'}")
    index = DeviceIndex.build(small_registry(), PROFILES)
    # Every incident update pushed at once here: rate limiting is tests/test_incidents.py's business.
    # The verification clock is tests/test_incidents.py's too.
    settings = AlarmPolicySettings(escalation=[CHAIN], **(NOTICES | policy))
    alarms = AlarmService(
        sessions, index, TicketOpener(index, TicketPolicy()), clock, ROUTES, Policy(settings)
    )
    alarms.on_incident.append(STEPS.setdefault(id(alarms), []).extend)
    return alarms


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def alarms(tmp_path: Path, clock: FakeClock) -> AlarmService:
    return make(tmp_path, clock)


def ev(
    kind: DetectorEventKind,
    category: AlarmCategory = AlarmCategory.FIRE,
    device: str = "smk-1-1",
    alarm_type: str | None = None,
    ts: float = T0,
) -> DetectorEvent:
    kind_type = alarm_type or ("smoke.alarm" if category is AlarmCategory.FIRE else "device.fault")
    return DetectorEvent(device, kind_type, kind, category, ts, 0.3, "smoke", "detail", "basis")


def owed(alarms: AlarmService, since_id: int = 0) -> list[tuple[str, str]]:
    """(route, action) of every push owed, in the order they were written: an alarm transition's
    action, or an incident notice's steps."""
    with alarms.sessions() as s:
        rows = s.scalars(select(OutboxRow).where(OutboxRow.id > since_id).order_by(OutboxRow.id)).all()
    return [
        (
            r.route,
            r.payload["transition"]["action"] if "transition" in r.payload else "+".join(r.payload["steps"]),
        )
        for r in rows
    ]


def at(clock: FakeClock, alarms: AlarmService, seconds: float) -> list[tuple[str, tuple[str, ...]]]:
    """What the policy clock did at `seconds`: alarm transitions and incident steps."""
    clock.now = T0 + seconds
    steps = STEPS[id(alarms)]
    n = len(steps)
    transitions = [(t.action.value, t.targets) for t in alarms.tick()]
    return transitions + [(u.action.value, u.targets) for u in steps[n:]]


# --- escalation ----------------------------------------------------------------------------------


def test_an_unacknowledged_fire_escalates_step_by_step_with_reminders(
    alarms: AlarmService, clock: FakeClock
) -> None:
    alarms.apply([ev(RAISE)])
    assert owed(alarms) == [("feed", "raised"), ("cr", "opened"), ("feed", "opened")]
    assert at(clock, alarms, 29) == []
    assert at(clock, alarms, 30) == [("reminded", ("control_room",))]
    assert at(clock, alarms, 60) == [("escalated", ("fire_station",))]
    assert at(clock, alarms, 90) == [("reminded", ("control_room", "fire_station"))]
    assert at(clock, alarms, 120) == [("reminded", ("control_room", "fire_station"))]
    assert at(clock, alarms, 180) == [("escalated", ("department_head",))]
    # The last step keeps reminding everyone told, until someone acknowledges.
    assert at(clock, alarms, 210) == [("reminded", ("control_room", "fire_station", "department_head"))]
    routes = [r for r, _ in owed(alarms)]
    assert routes.count("dh") == 2
    assert routes.count("fs") == 4
    assert "feed" in routes


def test_acknowledging_stops_escalation_and_tells_everyone_told_so_far(
    alarms: AlarmService, clock: FakeClock
) -> None:
    (raised,), _ = alarms.apply([ev(RAISE)])
    at(clock, alarms, 60)  # escalated to the fire station
    with alarms.sessions() as s:
        last = max(r.id for r in s.scalars(select(OutboxRow)))
    clock.now = T0 + 75
    # Acknowledging the incident's only alarm acknowledges the incident.
    alarms.acknowledge(raised.alarm_id, actor="控制室值班员", note="已派人核查")
    assert STEPS[id(alarms)][-1].targets == ("control_room", "fire_station")
    assert owed(alarms, last) == [("cr", "acknowledged"), ("fs", "acknowledged")]
    assert at(clock, alarms, 10_000) == []


def test_a_tick_with_nothing_due_takes_no_write_lock(
    alarms: AlarmService, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[str] = []
    write = alarms._write

    def counted(work: Any) -> Any:
        writes.append("write")
        return write(work)

    monkeypatch.setattr(alarms, "_write", counted)
    alarms.apply([ev(RAISE)])
    assert writes == ["write"]
    assert at(clock, alarms, 29) == []  # the first reminder is due at 30 s
    assert writes == ["write"]
    assert at(clock, alarms, 30) == [("reminded", ("control_room",))]
    assert writes == ["write", "write"]


def test_a_cleared_but_unacknowledged_alarm_keeps_reminding(alarms: AlarmService, clock: FakeClock) -> None:
    alarms.apply([ev(RAISE, AlarmCategory.FAULT)])
    clock.now = T0 + 10
    alarms.apply([ev(CLEAR, AlarmCategory.FAULT, ts=T0 + 10)])
    assert at(clock, alarms, 30) == [("reminded", ("control_room",))]


def test_an_alarm_no_chain_covers_only_reaches_subscriptions(alarms: AlarmService) -> None:
    alarms.apply([ev(RAISE, AlarmCategory.SUPERVISORY, device="prs-1", alarm_type="pressure.low")])
    assert owed(alarms) == [("feed", "raised"), ("feed", "opened")]


def test_an_escalation_role_that_no_route_reaches_is_refused_in_the_settings() -> None:
    with pytest.raises(ValueError, match="no push route has role 'fire_station'"):
        Settings(alarms=AlarmPolicySettings(escalation=[CHAIN]), pushes=[ROUTES[0]])


# --- flapping ------------------------------------------------------------------------------------


def cycle(alarms: AlarmService, clock: FakeClock, n: int, category: AlarmCategory, start: float = 0) -> None:
    for i in range(n):
        clock.now = T0 + start + i * 20
        alarms.apply([ev(RAISE, category, ts=clock.now)])
        clock.now += 10
        alarms.apply([ev(CLEAR, category, ts=clock.now)])


def test_a_flapping_sensor_has_its_notifications_held_and_gets_a_hazard_ticket(
    tmp_path: Path, clock: FakeClock
) -> None:
    alarms = make(tmp_path, clock, flap_cycles=3, flap_window_s=600)
    cycle(alarms, clock, 2, AlarmCategory.FAULT)
    before = len(owed(alarms))
    clock.now = T0 + 40
    transitions, tickets = alarms.apply([ev(RAISE, AlarmCategory.FAULT, ts=clock.now)])
    assert [(t.action.value, t.held) for t in transitions] == [("raised", "flapping"), ("flapping", "")]
    assert owed(alarms)[before:] == [("feed", "flapping")]
    assert [c.action for c in tickets] == ["recurred", "opened"]  # the fault's ticket, then the new one
    with alarms.sessions() as s:
        ticket = s.scalars(select(TicketRow).where(TicketRow.hazard_type == FLAPPING)).one()
        assert ticket.category == AlarmCategory.HAZARD
        assert "已暂停推送" in ticket.problem
    # While flapping: clears and raises are logged and streamed, not pushed to the subscription.
    n = len([a for r, a in owed(alarms) if r == "feed" and a in ALARM_ACTIONS])
    cycle(alarms, clock, 3, AlarmCategory.FAULT, start=60)
    assert [a for r, a in owed(alarms) if r == "feed" and a in ALARM_ACTIONS][n:] == []
    # A whole quiet window later it is steady again.
    assert ("steady", ()) in at(clock, alarms, 100 + 600)


def test_a_fire_detector_crossing_again_and_again_is_one_latched_alarm_never_flapping(
    tmp_path: Path, clock: FakeClock
) -> None:
    # A fire alarm latches (GB 4717): its re-crossings are occurrences, not raises, so they never
    # count towards flapping (the fire-specific bar is in tests/test_fire_latching.py).
    alarms = make(tmp_path, clock, flap_cycles=3, flap_window_s=600)
    cycle(alarms, clock, 5, AlarmCategory.FIRE)
    assert [a for r, a in owed(alarms) if r == "cr"] == ["opened"]
    with alarms.sessions() as s:
        assert s.scalars(select(TicketRow).where(TicketRow.hazard_type == FLAPPING)).all() == []


def test_a_fire_detector_flapping_across_resets_keeps_notifying(tmp_path: Path, clock: FakeClock) -> None:
    alarms = make(tmp_path, clock, flap_cycles=3, flap_window_s=600)
    for i in range(5):
        clock.now = T0 + i * 20
        (raised, *_), _ = alarms.apply([ev(RAISE, ts=clock.now)])
        clock.now += 10
        alarms.reset(raised.alarm_id, actor="op")
    raised_pushes = [a for r, a in owed(alarms) if r == "feed" and a == "raised"]
    assert len(raised_pushes) == 5  # every raise pushed, flapping or not
    with alarms.sessions() as s:
        ticket = s.scalars(select(TicketRow).where(TicketRow.hazard_type == FLAPPING)).one()
        assert "火警推送不暂停" in ticket.problem


# --- maintenance ---------------------------------------------------------------------------------


def test_maintenance_holds_faults_but_a_fire_is_pushed_marked_during_maintenance(
    alarms: AlarmService, clock: FakeClock
) -> None:
    window = alarms.begin_maintenance(
        site="s1", place="s1/b1/f1/z1", device_ids=[], start=None, end=T0 + 3600, ticket_id=None,
        reason="更换1区探测器", actor="维保张工",
    )  # fmt: skip
    (fault,), _ = alarms.apply([ev(RAISE, AlarmCategory.FAULT, device="smk-1-1")])
    assert (fault.held, fault.after["maintenance_id"]) == ("maintenance", window.id)
    assert owed(alarms) == []  # nor does its incident tell anyone
    (fire,), _ = alarms.apply([ev(RAISE, device="smk-1-2")])
    assert fire.held == ""
    assert fire.after["maintenance_id"] == window.id
    with alarms.sessions() as s:
        titles = [r.payload["title"] for r in s.scalars(select(OutboxRow)) if "transition" in r.payload]
    assert titles
    assert all(t.startswith("【维护期间】【火警】") for t in titles)
    assert ("cr", "opened") in owed(alarms)  # the fire's incident is told as any fire
    n = len(owed(alarms))
    alarms.apply([ev(RAISE, AlarmCategory.FAULT, device="smk-2-1")])  # zone 2: not covered
    assert ("feed", "raised") in owed(alarms)[n:]


def test_maintenance_expires_and_releases_what_it_held_with_an_audit_trail(
    alarms: AlarmService, clock: FakeClock
) -> None:
    window = alarms.begin_maintenance(
        site="s1", place=None, device_ids=["smk-1-1"], start=None, end=T0 + 600, ticket_id=None,
        reason="detector cleaning", actor="tech",
    )  # fmt: skip
    alarms.apply([ev(RAISE, AlarmCategory.FAULT)])
    assert at(clock, alarms, 599) == []
    # Released: its incident, which nobody was told about, is told now.
    assert at(clock, alarms, 600) == [("released", ()), ("opened", ("control_room",))]
    assert owed(alarms) == [("feed", "released"), ("cr", "opened"), ("feed", "opened")]
    with alarms.sessions() as s:
        audit = [(a.action, a.actor) for a in s.scalars(select(AuditRow).order_by(AuditRow.id))]
        ended = s.get(MaintenanceRow, window.id)
        assert ended is not None
        assert ended.ended_ts == T0 + 600
    assert audit == [("maintenance.begin", "tech"), ("maintenance.end", "firewatch")]


def test_maintenance_tied_to_a_ticket_ends_when_the_ticket_closes(
    alarms: AlarmService, clock: FakeClock
) -> None:
    _, (ticket,) = alarms.apply([ev(RAISE, AlarmCategory.FAULT, device="smk-2-1")])
    window = alarms.begin_maintenance(
        site="s1", place=None, device_ids=["smk-1-1"], start=None, end=T0 + 86_400,
        ticket_id=ticket.ticket_id, reason="rectify", actor="tech",
    )  # fmt: skip
    assert at(clock, alarms, 60) == [("escalated", ("fire_station",))]  # smk-2-1's fault's incident goes on
    with alarms.sessions.begin() as s:
        s.execute(update(TicketRow).values(status=TicketStatus.CLOSED.value))
    at(clock, alarms, 61)
    with alarms.sessions() as s:
        row = s.get(MaintenanceRow, window.id)
        assert row is not None
        assert row.ended_ts == T0 + 61


def test_maintenance_windows_are_validated(alarms: AlarmService) -> None:
    common: dict[str, Any] = {"site": "s1", "start": None, "ticket_id": None, "reason": "x", "actor": "a"}
    with pytest.raises(InvalidTransitionError, match="end after it starts"):
        alarms.begin_maintenance(place="s1/b1", device_ids=[], end=T0 - 1, **common)
    with pytest.raises(InvalidTransitionError, match="at most 7 days"):
        alarms.begin_maintenance(place="s1/b1", device_ids=[], end=T0 + 8 * 86_400, **common)
    with pytest.raises(InvalidTransitionError, match="unknown devices: nope"):
        alarms.begin_maintenance(place=None, device_ids=["nope"], end=T0 + 60, **common)
    with pytest.raises(InvalidTransitionError, match="a place or device ids"):
        alarms.begin_maintenance(place=None, device_ids=[], end=T0 + 60, **common)


# --- shelving ------------------------------------------------------------------------------------


def test_a_fire_alarm_cannot_be_shelved(alarms: AlarmService) -> None:
    (fire,), _ = alarms.apply([ev(RAISE)])
    with pytest.raises(InvalidTransitionError, match="fire alarm cannot be shelved"):
        alarms.shelve(fire.alarm_id, actor="op", until=T0 + 60, note="noisy")


def test_a_shelved_alarm_is_silent_until_its_shelving_expires(alarms: AlarmService, clock: FakeClock) -> None:
    (fault,), _ = alarms.apply([ev(RAISE, AlarmCategory.FAULT)])
    alarms.acknowledge_incident(STEPS[id(alarms)][-1].incident_id, actor="op")  # the incident is handled
    n = len(owed(alarms))
    shelved = alarms.shelve(fault.alarm_id, actor="op", until=T0 + 3600, note="换电池中")
    assert shelved.after["shelved_until"] == T0 + 3600
    assert shelved.held == "shelved"
    alarms.apply([ev(CLEAR, AlarmCategory.FAULT), ev(RAISE, AlarmCategory.FAULT)])
    assert [
        a for r, a in owed(alarms)[n:] if r == "feed" and a in ALARM_ACTIONS
    ] == []  # its own notices held
    assert ("unshelved", ()) in at(clock, alarms, 3600)
    assert ("feed", "unshelved") in owed(alarms)[n:]


def test_shelving_is_bounded_and_only_for_open_alarms(alarms: AlarmService, clock: FakeClock) -> None:
    (fault,), _ = alarms.apply([ev(RAISE, AlarmCategory.FAULT)])
    with pytest.raises(InvalidTransitionError, match="at most 24 h"):
        alarms.shelve(fault.alarm_id, actor="op", until=T0 + 25 * 3600, note="x")
    with pytest.raises(InvalidTransitionError, match="not shelved"):
        alarms.unshelve(fault.alarm_id, actor="op")
    alarms.shelve(fault.alarm_id, actor="op", until=T0 + 60, note="x")
    t = alarms.unshelve(fault.alarm_id, actor="op", note="done early")
    assert t.action is AlarmAction.UNSHELVED
    assert t.after["state"] == AlarmState.ACTIVE_UNACKNOWLEDGED


# --- escalation delivered to real receivers ------------------------------------------------------


async def test_escalation_reaches_real_receivers_until_someone_acknowledges(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Three duty roles, three webhook receivers on loopback. Nobody acknowledges: the control room
    is told, reminded, then the fire station; once acknowledged, both hear so and nothing follows."""
    receivers = {role: Receiver(free_port()) for role in ("control_room", "fire_station", "department_head")}
    for r in receivers.values():
        r.start()
    routes = [
        PushRoute(name=role.replace("_", "-"), url=f"json://127.0.0.1:{r.port}/hook", roles=[role])
        for role, r in receivers.items()
    ]
    _, sessions = open_store(f"sqlite:///{tmp_path / 'state.sqlite'}")
    index = DeviceIndex.build(small_registry(), PROFILES)
    policy = Policy(AlarmPolicySettings(escalation=[CHAIN], **NOTICES))
    alarms = AlarmService(sessions, index, TicketOpener(index, TicketPolicy()), clock, routes, policy)
    alarms.on_incident.append(STEPS.setdefault(id(alarms), []).extend)
    # A generous timeout: under a loaded CI machine a slow loopback answer must not count as a failed send.
    channels: dict[str, Channel] = {r.name: AppriseChannel(r, timeout_s=15.0) for r in routes}
    dispatcher = Dispatcher(sessions, channels, clock=clock, poll_s=0.05)

    def titles(role: str) -> list[str]:
        return [str(b["title"]) for b in receivers[role].bodies]

    try:
        (fire,), _ = alarms.apply([ev(RAISE)])
        await dispatcher.deliver_due()
        at(clock, alarms, 30)
        await dispatcher.deliver_due()
        at(clock, alarms, 60)
        await dispatcher.deliver_due()
        assert [t.split(" ")[-1] for t in titles("control_room")] == ["报警", "未受理，再次提醒"]
        assert titles("fire_station") == [titles("control_room")[0].replace("报警", "未受理，已升级")]
        clock.now = T0 + 70
        alarms.acknowledge(fire.alarm_id, actor="微型消防站 李四", note="到场确认")
        await dispatcher.deliver_due()
        at(clock, alarms, 3600)  # nothing more falls due after the acknowledgement
        await dispatcher.deliver_due()
        assert titles("control_room")[-1].endswith("已受理")
        assert titles("fire_station")[-1].endswith("已受理")
        assert len(titles("control_room")) == 3
        assert len(titles("fire_station")) == 2
        assert titles("department_head") == []
        assert dispatcher.pending() == 0
    finally:
        for r in receivers.values():
            r.stop()
