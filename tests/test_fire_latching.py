"""Fire alarms latch until a person or the device resets them (复位), as fire alarm control panels do
(GB 4717): the reading falling back does not end a fire alarm, a new crossing is an occurrence of
the same alarm (no new raise, no push), and a device's pre-alarm is superseded by its fire alarm.
On a real SQLite store with an injected clock; the detectors are the engine's own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from alarms.service import AlarmService, InvalidTransitionError
from alarms.tickets import FLAPPING
from core.domain import (
    AlarmAction,
    AlarmCategory,
    AlarmState,
    DetectorEvent,
    DetectorEventKind,
    DeviceEventKind,
)
from detectors.engine import Engine
from detectors.samples import Samples
from ingest.decode import DeviceEventMsg
from storage.models import AlarmEventRow, AlarmRow, AuditRow, OutboxRow, TicketRow
from tests.conftest import ApiClient, FakeClock, alarm_service, asgi_api
from tests.test_alarm_policy import T0, make, owed

RAISE, CLEAR, RESET = DetectorEventKind.RAISE, DetectorEventKind.CLEAR, DetectorEventKind.RESET


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def alarms(tmp_path: Path, clock: FakeClock) -> AlarmService:
    # Routes cr, fs, dh reach duty roles through a fire chain; feed is a plain subscription.
    return make(tmp_path, clock)


def ev(
    kind: DetectorEventKind,
    alarm_type: str = "smoke.alarm",
    category: AlarmCategory = AlarmCategory.FIRE,
    device: str = "smk-1-1",
    ts: float = T0,
    value: float = 0.3,
) -> DetectorEvent:
    return DetectorEvent(device, alarm_type, kind, category, ts, value, "smoke", "detail", "basis")


def pre(kind: DetectorEventKind, device: str = "smk-1-1", ts: float = T0) -> DetectorEvent:
    return ev(kind, "smoke.pre_alarm", AlarmCategory.PRE_ALARM, device, ts, 0.12)


def actions(alarms: AlarmService, alarm_id: int) -> list[str]:
    with alarms.sessions() as s:
        q = select(AlarmEventRow.action).where(AlarmEventRow.alarm_id == alarm_id).order_by(AlarmEventRow.id)
        return list(s.scalars(q))


def row(alarms: AlarmService, alarm_id: int) -> AlarmRow:
    with alarms.sessions() as s:
        found = s.get(AlarmRow, alarm_id)
        assert found is not None
        return found


# --- the bar -------------------------------------------------------------------------------


def test_a_spiky_smoke_series_is_one_fire_alarm_with_its_occurrences_and_one_push(
    alarms: AlarmService, clock: FakeClock
) -> None:
    # Raise, clear, raise ... 40 times in 5 minutes of simulated time: the engine's own detectors
    # decide, the alarm service records, exactly as the pipeline does with each batch.
    engine = Engine(alarms.index, start=T0)
    slot = alarms.index.slot("smk-1-1", "smoke")
    escalation_after_raise: tuple[float | None, float | None] | None = None
    for i in range(80):  # a reading every 3.75 s: 0.30 dB/m (fire), then 0.02 dB/m (normal)
        ts = T0 + i * 3.75
        clock.now = ts
        value = 0.30 if i % 2 == 0 else 0.02
        reading = Samples(np.array([slot], np.int32), np.array([ts]), np.array([value]))
        alarms.apply(engine.process_samples(reading))
        if i == 0:
            with alarms.sessions() as s:
                first = s.scalars(select(AlarmRow)).one()
                escalation_after_raise = (first.escalate_at, first.remind_at)
    with alarms.sessions() as s:
        (fire,) = s.scalars(select(AlarmRow).where(AlarmRow.category == AlarmCategory.FIRE.value)).all()
        raised = s.scalar(
            select(func.count()).select_from(AlarmEventRow).where(AlarmEventRow.action == "raised")
        )
        # Its pre-alarm, crossed by every spike too, is superseded by the latched fire: no card.
        pre_alarms = s.scalars(
            select(AlarmRow).where(AlarmRow.category == AlarmCategory.PRE_ALARM.value)
        ).all()
        flapping_tickets = s.scalars(select(TicketRow).where(TicketRow.hazard_type == FLAPPING)).all()
    assert fire.state == AlarmState.ACTIVE_UNACKNOWLEDGED
    assert fire.occurrences == 40
    assert fire.peak == 0.30
    assert fire.normal_ts == T0 + 79 * 3.75  # the last reading was normal again
    assert raised == 1
    assert (fire.flapping, flapping_tickets) == (False, [])
    assert pre_alarms == []
    # One push per route: the incident's first notice to the first duty role and the
    # subscription, and the fire's own raise to the subscription that takes per-alarm pushes.
    assert owed(alarms) == [("feed", "raised"), ("cr", "opened"), ("feed", "opened")]
    # The repeats left the escalation clock where the raise set it.
    assert (fire.escalate_at, fire.remind_at) == escalation_after_raise
    log = actions(alarms, fire.id)
    assert (log[0], log.count("repeated"), log.count("normal")) == ("raised", 39, 40)


# --- latching --------------------------------------------------------------------------------------


def test_the_reading_falling_back_is_recorded_and_the_fire_alarm_stays_active(
    alarms: AlarmService, clock: FakeClock
) -> None:
    (raised,), _ = alarms.apply([ev(RAISE)])
    alarms.acknowledge(raised.alarm_id, actor="op")
    (normal,), _ = alarms.apply([ev(CLEAR, ts=T0 + 30)])
    assert normal.action is AlarmAction.NORMAL
    assert normal.after["state"] == AlarmState.ACTIVE_ACKNOWLEDGED
    assert normal.after["normal_ts"] == T0 + 30
    assert normal.after["cleared_ts"] is None
    assert alarms.apply([ev(CLEAR, ts=T0 + 31)]) == ([], [])  # once per crossing
    (again,), _ = alarms.apply([ev(RAISE, ts=T0 + 40, value=0.5)])
    assert again.action is AlarmAction.REPEATED
    assert again.after["state"] == AlarmState.ACTIVE_ACKNOWLEDGED  # still acknowledged: same alarm
    assert (again.after["occurrences"], again.after["peak"], again.after["normal_ts"]) == (2, 0.5, None)
    # Nothing but the raise and the acknowledgement's stand-down went to anyone.
    assert owed(alarms) == [("feed", "raised"), ("cr", "opened"), ("feed", "opened"), ("cr", "acknowledged")]
    # It never closes by itself, however long it stays normal.
    alarms.apply([ev(CLEAR, ts=T0 + 50)])
    clock.now = T0 + 100_000
    alarms.tick()
    assert row(alarms, raised.alarm_id).state == AlarmState.ACTIVE_ACKNOWLEDGED


def test_a_person_resets_a_fire_alarm_rather_than_clearing_it(alarms: AlarmService, clock: FakeClock) -> None:
    (raised,), _ = alarms.apply([ev(RAISE)])
    with pytest.raises(InvalidTransitionError, match="reset"):
        alarms.clear(raised.alarm_id, actor="op")
    with pytest.raises(InvalidTransitionError, match="reset it first"):
        alarms.close(raised.alarm_id, actor="op")
    alarms.acknowledge(raised.alarm_id, actor="op")
    clock.now = T0 + 60
    t = alarms.reset(raised.alarm_id, actor="op", note="现场核实为油烟，已复位")
    assert (t.action, t.actor, t.note) == (AlarmAction.RESET, "op", "现场核实为油烟，已复位")
    assert t.after["state"] == AlarmState.CLEARED_ACKNOWLEDGED
    assert t.after["cleared_ts"] == T0 + 60
    with pytest.raises(InvalidTransitionError, match="nothing to reset"):
        alarms.reset(raised.alarm_id, actor="op")
    # Then the usual close rules: closed after the quiet period, and the key is free.
    clock.now = T0 + 60 + 300
    (closed,) = alarms.tick()
    assert closed.action is AlarmAction.CLOSED
    (fresh,), _ = alarms.apply([ev(RAISE, ts=clock.now)])
    assert (fresh.action, fresh.after["id"] != raised.alarm_id) == (AlarmAction.RAISED, True)


def test_a_reset_tells_everyone_told_so_far_to_stand_down(alarms: AlarmService, clock: FakeClock) -> None:
    (raised,), _ = alarms.apply([ev(RAISE)])
    clock.now = T0 + 60
    alarms.tick()  # escalated to the fire station
    with alarms.sessions() as s:
        last = max(r.id for r in s.scalars(select(OutboxRow)))
    clock.now = T0 + 70
    alarms.reset(raised.alarm_id, actor="op")
    # The alarm's own reset to the per-alarm subscription; its incident's reset (and the end it
    # makes) to everyone its escalation told, and to the subscription, in one notice each.
    assert owed(alarms, last) == [
        ("feed", "reset"),
        ("cr", "reset+ended"),
        ("fs", "reset+ended"),
        ("feed", "reset+ended"),
    ]


def test_only_a_latched_fire_alarm_is_reset(alarms: AlarmService) -> None:
    (fault,), _ = alarms.apply([ev(RAISE, "device.fault", AlarmCategory.FAULT)])
    with pytest.raises(InvalidTransitionError, match="only a fire alarm latches"):
        alarms.reset(fault.alarm_id, actor="op")


def test_other_categories_still_clear_with_their_reading(alarms: AlarmService) -> None:
    for category, alarm_type in (
        (AlarmCategory.PRE_ALARM, "smoke.pre_alarm"),
        (AlarmCategory.FAULT, "device.fault"),
        (AlarmCategory.SUPERVISORY, "pressure.low"),
        (AlarmCategory.HAZARD, "smoke.dirty_chamber"),
    ):
        alarms.apply([ev(RAISE, alarm_type, category, device="smk-1-2")])
        (cleared,), _ = alarms.apply([ev(CLEAR, alarm_type, category, device="smk-1-2", ts=T0 + 5)])
        assert (cleared.action, cleared.after["state"]) == (
            AlarmAction.CLEARED,
            AlarmState.CLEARED_UNACKNOWLEDGED,
        )
    # ... and a person may still clear one by hand.
    (fault,), _ = alarms.apply([ev(RAISE, "device.fault", AlarmCategory.FAULT, device="smk-1-3")])
    assert alarms.clear(fault.alarm_id, actor="op").action is AlarmAction.CLEARED


# --- a device's own reset --------------------------------------------------------------------------


def test_a_device_reset_ends_its_latched_fire_alarms_and_no_others(alarms: AlarmService) -> None:
    alarms.apply(
        [
            ev(RAISE),
            ev(RAISE, "device.alarm"),
            ev(RAISE, "device.fault", AlarmCategory.FAULT),
            ev(RAISE, device="smk-1-2"),
        ]
    )
    transitions, _ = alarms.apply([ev(RESET, "device.reset", ts=T0 + 9)])
    assert sorted((t.after["alarm_type"], t.action.value, t.actor) for t in transitions) == [
        ("device.alarm", "reset", "firewatch"),
        ("smoke.alarm", "reset", "firewatch"),
    ]
    assert all(t.after["cleared_ts"] == T0 + 9 for t in transitions)
    with alarms.sessions() as s:
        states = {(r.device_id, r.alarm_type): r.state for r in s.scalars(select(AlarmRow))}
    assert states[("smk-1-1", "device.fault")] == AlarmState.ACTIVE_UNACKNOWLEDGED
    assert states[("smk-1-2", "smoke.alarm")] == AlarmState.ACTIVE_UNACKNOWLEDGED


def test_a_device_reset_lets_a_persisting_condition_raise_again(alarms: AlarmService) -> None:
    engine = Engine(alarms.index, start=T0)
    dev = alarms.index.dev_of["smk-1-1"]
    slot = alarms.index.slot("smk-1-1", "smoke")

    def reading(ts: float) -> Samples:
        return Samples(np.array([slot], np.int32), np.array([ts]), np.array([0.3]))

    alarms.apply(engine.process_samples(reading(T0)))
    assert engine.is_active("smk-1-1", "smoke.alarm")
    reset = engine.device_events.map(
        [DeviceEventMsg(dev, "smk-1-1", T0 + 5, DeviceEventKind.RESET, None, None)]
    )
    for e in reset:  # what Engine.process does with a batch carrying the RESET
        if e.kind is RESET:
            engine.forget_device(e.device_id)
    alarms.apply(reset)
    transitions, _ = alarms.apply(engine.process_samples(reading(T0 + 6)))
    assert [(t.action.value, t.after["alarm_type"]) for t in transitions] == [("raised", "smoke.alarm")]


# --- the pre-alarm superseded ----------------------------------------------------------------------


def test_a_devices_pre_alarm_is_superseded_by_its_fire_alarm(alarms: AlarmService) -> None:
    (pre_raised,), _ = alarms.apply([pre(RAISE)])
    alarms.apply([pre(RAISE, device="smk-1-2")])
    transitions, _ = alarms.apply([ev(RAISE, ts=T0 + 20)])
    assert [(t.action.value, t.after["category"]) for t in transitions] == [
        ("raised", "fire"),
        ("superseded", "pre_alarm"),
    ]
    superseded = transitions[1]
    assert superseded.alarm_id == pre_raised.alarm_id
    assert superseded.after["state"] == AlarmState.CLOSED
    assert "已升级为火警" in superseded.note
    assert superseded.targets == ()
    # Another device's pre-alarm is its own.
    with alarms.sessions() as s:
        other = s.scalars(select(AlarmRow).where(AlarmRow.device_id == "smk-1-2")).one()
    assert other.state == AlarmState.ACTIVE_UNACKNOWLEDGED
    # While the fire is latched, the device's pre-alarm crossing again adds nothing.
    assert alarms.apply([pre(CLEAR, ts=T0 + 30), pre(RAISE, ts=T0 + 40)]) == ([], [])
    # Once it is reset, a pre-alarm is a pre-alarm again.
    alarms.reset(transitions[0].alarm_id, actor="op")
    (again,), _ = alarms.apply([pre(RAISE, ts=T0 + 50)])
    assert (again.action, again.after["category"]) == (AlarmAction.RAISED, "pre_alarm")


def test_a_pre_alarm_in_the_same_batch_as_its_fire_is_superseded_before_it_shows(
    alarms: AlarmService,
) -> None:
    # The engine sorts fire first: the pre-alarm of the same reading finds the fire already latched.
    transitions, _ = alarms.apply([ev(RAISE), pre(RAISE)])
    assert [t.action.value for t in transitions] == ["raised"]


# --- the API ---------------------------------------------------------------------------------------


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[ApiClient, AlarmService]]:
    service = alarm_service(tmp_path / "api.sqlite", T0)
    async with asgi_api(service, tmp_path) as client:
        yield client, service


async def test_reset_over_the_api_is_for_those_who_handle_alarms_and_is_audited(
    api: tuple[ApiClient, AlarmService],
) -> None:
    client, service = api
    (raised,), _ = service.apply([ev(RAISE)])
    (fault,), _ = service.apply([ev(RAISE, "device.fault", AlarmCategory.FAULT)])
    viewer = client.as_("wall", "viewer")
    duty = client.as_("wangwu", "operator", display_name="消控室值班员 王五")
    path = f"/api/v1/alarms/{raised.alarm_id}/reset"
    assert (await client.post(path, json={}, headers=viewer)).status_code == 403
    r = await client.post(f"/api/v1/alarms/{raised.alarm_id}/clear", json={}, headers=duty)
    assert r.status_code == 409
    assert f"/api/v1/alarms/{raised.alarm_id}/reset" in r.json()["detail"]
    r = await client.post(path, json={"note": "现场复位"}, headers=duty)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["action"], body["actor"], body["note"]) == ("reset", "wangwu", "现场复位")
    assert body["after"]["state"] == "cleared_unacknowledged"
    assert (await client.post(path, json={}, headers=duty)).status_code == 409
    r = await client.post(f"/api/v1/alarms/{fault.alarm_id}/reset", json={}, headers=duty)
    assert r.status_code == 409
    assert (await client.post(path, json={"note": 1}, headers=duty)).status_code == 422
    with service.sessions() as s:
        audited = s.scalars(select(AuditRow).where(AuditRow.action == "reset_alarm")).all()
    assert [(a.actor, a.detail["status"]) for a in audited] == [
        ("wall", 403),
        ("wangwu", 200),
        ("wangwu", 409),
        ("wangwu", 409),
        ("wangwu", 422),
    ]
