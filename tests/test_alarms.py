"""Alarm lifecycle and automatic tickets, on a real SQLite state store."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from alarms.service import AlarmNotFoundError, AlarmService, InvalidTransitionError
from alarms.tickets import TicketOpener
from core.domain import AlarmAction, AlarmCategory, AlarmState, DetectorEvent, DetectorEventKind, TicketStatus
from core.settings import TicketPolicy
from ingest.index import DeviceIndex
from storage.db import open_store
from storage.models import AlarmEventRow, AlarmRow, TicketEventRow, TicketRow
from tests.conftest import PROFILES, FakeClock, small_registry

T0 = 1_800_000_000.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def service(tmp_path: Path, clock: FakeClock) -> AlarmService:
    _, sessions = open_store(f"sqlite:///{tmp_path / 'state.sqlite'}")
    index = DeviceIndex.build(small_registry(), PROFILES)
    return AlarmService(sessions, index, TicketOpener(index, TicketPolicy()), clock)


def ev(
    kind: DetectorEventKind,
    alarm_type: str = "smoke.alarm",
    device: str = "smk-1-1",
    category: AlarmCategory = AlarmCategory.FIRE,
    value: float = 0.3,
    ts: float = T0,
) -> DetectorEvent:
    return DetectorEvent(
        device, alarm_type, kind, category, ts, value, "smoke", "smoke >= 0.15 dB/m", "GB 4715"
    )


RAISE, CLEAR = DetectorEventKind.RAISE, DetectorEventKind.CLEAR
# The alarm lifecycle below follows the reading (raise, clear, raise again): a pre-alarm does. A fire
# alarm latches until reset instead (GB 4717; tests/test_fire_latching.py).


def pre(kind: DetectorEventKind, ts: float = T0) -> DetectorEvent:
    return ev(kind, "smoke.pre_alarm", category=AlarmCategory.PRE_ALARM, ts=ts)


def test_a_raise_opens_one_active_unacknowledged_alarm(service: AlarmService) -> None:
    transitions, _ = service.apply([ev(RAISE)])
    (t,) = transitions
    assert t.action is AlarmAction.RAISED
    assert t.before is None
    assert t.after["state"] == AlarmState.ACTIVE_UNACKNOWLEDGED
    assert t.after["severity"] == "critical"
    assert t.after["system"] == "fire_alarm"
    assert t.after["place"] == "s1/b1/f1/z1/r101"


def test_a_repeat_increments_occurrences_instead_of_opening_another(service: AlarmService) -> None:
    service.apply([ev(RAISE, value=0.2)])
    transitions, _ = service.apply([ev(RAISE, value=0.5, ts=T0 + 5)])
    assert transitions[0].action is AlarmAction.REPEATED
    assert transitions[0].after["occurrences"] == 2
    assert transitions[0].after["peak"] == 0.5
    with service.sessions() as s:
        assert s.scalar(select(func.count()).select_from(AlarmRow)) == 1


def test_clear_then_raise_again_reopens_the_same_alarm(service: AlarmService) -> None:
    service.apply([pre(RAISE)])
    (cleared,), _ = service.apply([pre(CLEAR, ts=T0 + 10)])
    assert cleared.after["state"] == AlarmState.CLEARED_UNACKNOWLEDGED
    (again,), _ = service.apply([pre(RAISE, ts=T0 + 20)])
    assert again.action is AlarmAction.RAISED
    assert again.after["id"] == cleared.after["id"]
    assert again.after["occurrences"] == 2


def test_acknowledge_records_who_when_and_the_note(service: AlarmService, clock: FakeClock) -> None:
    (raised,), _ = service.apply([ev(RAISE)])
    clock.now = T0 + 42
    t = service.acknowledge(raised.alarm_id, actor="值班员王五", note="误报：厨房蒸汽", false_alarm=True)
    assert t.action is AlarmAction.ACKNOWLEDGED
    assert t.before is not None
    assert t.before["state"] == AlarmState.ACTIVE_UNACKNOWLEDGED
    assert t.after["state"] == AlarmState.ACTIVE_ACKNOWLEDGED
    assert (t.after["acked_by"], t.after["acked_ts"], t.after["false_alarm"]) == ("值班员王五", T0 + 42, True)


def test_an_acknowledged_alarm_that_clears_is_cleared_acknowledged_until_closed(
    service: AlarmService, clock: FakeClock
) -> None:
    (raised,), _ = service.apply([pre(RAISE)])
    service.acknowledge(raised.alarm_id, actor="op")
    (cleared,), _ = service.apply([pre(CLEAR, ts=T0 + 5)])
    assert cleared.action is AlarmAction.CLEARED
    assert cleared.after["state"] == AlarmState.CLEARED_ACKNOWLEDGED
    # Until it is closed, a recurrence re-opens the same alarm and needs a new acknowledgement.
    (again,), _ = service.apply([pre(RAISE, ts=T0 + 9)])
    assert (again.action, again.after["id"]) == (AlarmAction.RAISED, raised.alarm_id)
    assert again.after["state"] == AlarmState.ACTIVE_UNACKNOWLEDGED
    assert again.after["acked_by"] is None


def test_a_cleared_acknowledged_alarm_closes_after_the_quiet_period_and_frees_the_key(
    service: AlarmService, clock: FakeClock
) -> None:
    (raised,), _ = service.apply([pre(RAISE)])
    service.acknowledge(raised.alarm_id, actor="op")
    service.apply([pre(CLEAR, ts=T0 + 5)])
    clock.now = T0 + 304  # close_after_s defaults to 300 s of quiet after the clear
    assert service.tick() == []
    clock.now = T0 + 305
    (closed,) = service.tick()
    assert (closed.action, closed.actor) == (AlarmAction.CLOSED, "firewatch")
    (fresh,), _ = service.apply([pre(RAISE, ts=T0 + 306)])
    assert fresh.after["id"] != raised.alarm_id


def test_acknowledging_a_cleared_alarm_makes_it_cleared_acknowledged_and_a_person_may_close_it(
    service: AlarmService,
) -> None:
    (raised,), _ = service.apply([pre(RAISE)])
    service.apply([pre(CLEAR, ts=T0 + 5)])
    t = service.acknowledge(raised.alarm_id, actor="op")
    assert t.after["state"] == AlarmState.CLEARED_ACKNOWLEDGED
    closed = service.close(raised.alarm_id, actor="op", note="现场复位")
    assert closed.after["state"] == AlarmState.CLOSED
    assert closed.after["closed_ts"] == T0


def test_only_a_cleared_and_acknowledged_alarm_can_be_closed(service: AlarmService) -> None:
    (raised,), _ = service.apply([pre(RAISE)])
    with pytest.raises(InvalidTransitionError, match="still active"):
        service.close(raised.alarm_id, actor="op")
    service.apply([pre(CLEAR, ts=T0 + 5)])
    with pytest.raises(InvalidTransitionError, match="acknowledge it first"):
        service.close(raised.alarm_id, actor="op")


def test_false_alarm_acknowledgements_are_counted_per_device(service: AlarmService, clock: FakeClock) -> None:
    for n in range(3):
        (raised,), _ = service.apply([ev(RAISE, ts=T0 + n)])
        service.acknowledge(raised.alarm_id, actor="op", note="误报：蒸汽", false_alarm=n < 2)
        service.reset(raised.alarm_id, actor="op")  # a fire alarm latches: ended by a reset
        service.close(raised.alarm_id, actor="op")
    service.apply([ev(RAISE, device="smk-1-2", ts=T0 + 5)])
    assert service.false_alarm_counts() == [("smk-1-1", 2, 3), ("smk-1-2", 0, 1)]
    assert service.false_alarm_counts(since=T0 + 1) == [("smk-1-1", 1, 2), ("smk-1-2", 0, 1)]


def test_human_actions_on_the_wrong_state_are_refused(service: AlarmService) -> None:
    (raised,), _ = service.apply([ev(RAISE)])
    service.acknowledge(raised.alarm_id, actor="op")
    with pytest.raises(InvalidTransitionError):
        service.acknowledge(raised.alarm_id, actor="op")
    with pytest.raises(AlarmNotFoundError):
        service.clear(9999, actor="op")


def test_every_transition_is_logged_with_before_and_after(service: AlarmService) -> None:
    (raised,), _ = service.apply([ev(RAISE)])
    service.acknowledge(raised.alarm_id, actor="op", note="checked")
    service.reset(raised.alarm_id, actor="op", note="reset on site")
    service.close(raised.alarm_id, actor="op", note="done")
    with service.sessions() as s:
        log = s.scalars(select(AlarmEventRow).order_by(AlarmEventRow.id)).all()
    assert [(e.action, e.actor) for e in log] == [
        ("raised", "firewatch"),
        ("acknowledged", "op"),
        ("reset", "op"),
        ("closed", "op"),
    ]
    assert log[0].before is None
    assert log[1].before is not None
    assert log[1].before["state"] == "active_unacknowledged"
    assert log[2].after["state"] == "cleared_acknowledged"
    assert log[3].after["state"] == "closed"


def test_a_clear_without_an_open_alarm_changes_nothing(service: AlarmService) -> None:
    assert service.apply([ev(CLEAR)]) == ([], [])


def test_a_fire_alarm_opens_no_ticket_but_a_fault_does_with_the_form_fields(service: AlarmService) -> None:
    _, fire_tickets = service.apply([ev(RAISE)])
    assert fire_tickets == []
    _, tickets = service.apply([ev(RAISE, "device.fault", category=AlarmCategory.FAULT, value=7)])
    (change,) = tickets
    assert change.action == "opened"
    with service.sessions() as s:
        ticket = s.get(TicketRow, change.ticket_id)
        assert ticket is not None
        assert ticket.status == TicketStatus.OPEN
        assert ticket.department == "心内科"
        assert ticket.responsible == "张三"
        assert ticket.inspectors == "firewatch 自动监测"
        assert ticket.inspection_time == T0
        assert "故障" in ticket.problem
        assert "住院楼" in ticket.problem
        assert ticket.measures
        assert ticket.deadline == pytest.approx(T0 + 72 * 3600)
        assert ticket.number.startswith("YH-")
        assert s.scalars(select(TicketEventRow.action)).all() == ["opened"]


def test_offline_and_supervisory_alarms_open_tickets(service: AlarmService) -> None:
    _, t1 = service.apply([ev(RAISE, "device.offline", category=AlarmCategory.FAULT)])
    _, t2 = service.apply(
        [ev(RAISE, "pressure.low", device="prs-1", category=AlarmCategory.SUPERVISORY, value=0.05)]
    )
    assert [c.action for c in t1 + t2] == ["opened", "opened"]
    with service.sessions() as s:
        supervisory = s.get(TicketRow, t2[0].ticket_id)
        assert supervisory is not None
        assert supervisory.deadline == pytest.approx(T0 + 24 * 3600)  # site policy for supervisory


def test_one_open_ticket_per_device_and_hazard_type(service: AlarmService) -> None:
    fault = ev(RAISE, "device.fault", category=AlarmCategory.FAULT)
    service.apply([fault])
    service.apply([ev(CLEAR, "device.fault", category=AlarmCategory.FAULT)])
    service.acknowledge(1, actor="op")
    service.close(1, actor="op")  # the alarm is done; its ticket stays open until rectified
    _, again = service.apply([fault])
    assert [c.action for c in again] == ["recurred"]
    with service.sessions() as s:
        tickets = s.scalars(select(TicketRow)).all()
        assert len(tickets) == 1
        assert tickets[0].occurrences == 2
