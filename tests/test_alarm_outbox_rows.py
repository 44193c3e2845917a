"""The pushes a bulk alarm write owes (alarms/outbox.py, written as tuples at the batch's end by
AlarmBatch.settle_outbox): every outbox row holds what the transition or incident step it belongs to
renders, in the order they were owed, as the JSON column encodes it; an urgent incident step still
replaces the route's notice of that incident waiting from an earlier write, and nothing else. Run on
SQLite and on a private PostgreSQL. A batch names each push's time as one push alone would."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, text

from alarms.batch import AlarmBatch
from alarms.model import IncidentUpdate, Transition
from alarms.outbox import local_time, render, render_incident
from alarms.service import AlarmService
from alarms.tickets import TicketOpener
from core.domain import AlarmAction, AlarmCategory, DetectorEvent, DetectorEventKind, IncidentAction, Role
from core.settings import PushRoute, TicketPolicy
from ingest.index import DeviceIndex
from storage.db import json_dumps, open_store
from storage.models import AlarmRow, IncidentRow, OutboxRow
from storage.registry_sync import sync_registry
from tests.conftest import PROFILES, TEST_PASSWORD, FakeClock, make_accounts, small_registry

T0 = 1_800_000_000.0
RAISE, CLEAR = DetectorEventKind.RAISE, DetectorEventKind.CLEAR
FIRE, PRE = AlarmCategory.FIRE, AlarmCategory.PRE_ALARM

# Every alarm transition (as the service's MQTT alarm topic), the default alarm actions, and incident
# notices: at once on one route, rate-limited to one per minute on the other.
ROUTES = [
    PushRoute(
        name="topic",
        url="json://127.0.0.1:9/topic",
        per_alarm=True,
        actions=list(AlarmAction),
        incident_actions=list(IncidentAction),
        update_interval_s=0.0,
    ),
    PushRoute(name="integration", url="json://127.0.0.1:9/x", per_alarm=True),
    PushRoute(
        name="feed",
        url="json://127.0.0.1:9/feed",
        incident_actions=list(IncidentAction),
        update_interval_s=60,
    ),
]


def smoke(device: str, kind: DetectorEventKind, category: AlarmCategory, ts: float) -> DetectorEvent:
    alarm_type = "smoke.alarm" if category is FIRE else "smoke.pre_alarm"
    return DetectorEvent(device, alarm_type, kind, category, ts, 0.2 if kind is RAISE else 0.01, "smoke")


def fault(kind: DetectorEventKind, ts: float) -> DetectorEvent:
    return DetectorEvent("prs-1", "device.fault", kind, AlarmCategory.FAULT, ts, None)


def service(url: str, clock: FakeClock) -> AlarmService:
    registry = small_registry()
    _, sessions = open_store(url)
    sync_registry(sessions, registry, PROFILES)
    index = DeviceIndex.build(registry, PROFILES)
    return AlarmService(sessions, index, TicketOpener(index, TicketPolicy()), clock, ROUTES)


def outbox(alarms: AlarmService) -> list[dict[str, Any]]:
    """Every outbox row, in id order, each column as stored (the payload's text too)."""
    with alarms.sessions() as s:
        stored = {
            int(i): str(p)
            for i, p in s.execute(text("SELECT id, CAST(payload AS TEXT) FROM outbox ORDER BY id"))
        }
        return [
            {
                "route": o.route,
                "alarm_id": o.alarm_id,
                "incident_id": o.incident_id,
                "replaceable": o.replaceable,
                "created_ts": o.created_ts,
                "payload": o.payload,
                "text": stored[o.id],
                "attempts": o.attempts,
                "next_ts": o.next_ts,
                "delivered_ts": o.delivered_ts,
                "last_error": o.last_error,
            }
            for o in s.scalars(select(OutboxRow).order_by(OutboxRow.id))
        ]


def test_a_batch_s_outbox_rows_hold_what_its_transitions_and_steps_render_in_order(store_url: str) -> None:
    clock = FakeClock(T0 + 5)
    alarms = service(store_url, clock)
    transitions: list[Transition] = []
    steps: list[IncidentUpdate] = []
    alarms.on_commit.append(transitions.extend)
    alarms.on_incident.append(steps.extend)
    # One write: a pre-alarm, then the fire that supersedes it, on two detectors of one zone; the
    # second detector's pre-alarm clears.
    alarms.apply(
        [
            smoke("smk-1-1", RAISE, PRE, T0),
            smoke("smk-1-1", RAISE, FIRE, T0 + 1),
            smoke("smk-1-2", RAISE, PRE, T0 + 2),
            smoke("smk-1-2", CLEAR, PRE, T0 + 3),
        ]
    )
    rows = outbox(alarms)
    place = alarms.index.place_label
    owed: list[dict[str, Any]] = []
    for t in transitions:
        message = render(t, place(t.after["place"]))
        for route in ("topic", "integration"):
            if route == "topic" or t.action in ROUTES[1].actions:
                owed.append(
                    {
                        "route": route,
                        "alarm_id": t.alarm_id,
                        "incident_id": None,
                        "replaceable": False,
                        "created_ts": T0 + 5,
                        "payload": message,
                        "text": json_dumps(message),
                        "attempts": 0,
                        "next_ts": T0 + 5,
                        "delivered_ts": None,
                        "last_error": "",
                    }
                )
    assert {t.action for t in transitions} >= {
        AlarmAction.RAISED,
        AlarmAction.SUPERSEDED,
        AlarmAction.CLEARED,
    }
    ids = [t.event_id for t in transitions]
    assert ids == sorted(ids)
    assert ids[0] > 0
    assert rows[: len(owed)] == owed
    # Then one notice per route for the write's steps of the incident (each names the
    # steps it carries, rendered from the last), due at once: the first notice is urgent.
    (incident_id,) = {u.incident_id for u in steps}
    told = [u for u in steps if u.action is not IncidentAction.JOINED]
    last = told[-1]
    names = [u.action.value for u in told]
    notice = {**render_incident(last, last.after["place_name"], T0 + 5, names), "steps": names}
    assert rows[len(owed) :] == [
        {
            "route": route,
            "alarm_id": told[0].alarm_id,
            "incident_id": incident_id,
            "replaceable": False,
            "created_ts": T0 + 5,
            "payload": notice,
            "text": json_dumps(notice),
            "attempts": 0,
            "next_ts": T0 + 5,
            "delivered_ts": None,
            "last_error": "",
        }
        for route in ("topic", "integration", "feed")
    ]


def test_an_urgent_step_replaces_the_notice_still_waiting_from_an_earlier_write(store_url: str) -> None:
    clock = FakeClock(T0)
    alarms = service(store_url, clock)
    # Two incidents opened at once, a pre-alarm's and a pressure fault's; both end 10 s later, an
    # update the rate-limited route hears only a minute after the opening: waiting, replaceable.
    alarms.apply([smoke("smk-1-1", RAISE, PRE, T0), fault(RAISE, T0)])
    clock.now = T0 + 10
    alarms.apply([smoke("smk-1-1", CLEAR, PRE, T0 + 10), fault(CLEAR, T0 + 10)])

    def feed() -> list[tuple[str, int, bool, float]]:
        return [
            ("+".join(r["payload"]["steps"]), r["incident_id"], r["replaceable"], r["next_ts"] - T0)
            for r in outbox(alarms)
            if r["route"] == "feed"
        ]

    first, second = sorted({i for _, i, _, _ in feed()})
    assert feed() == [
        ("opened", first, False, 0),
        ("opened", second, False, 0),
        ("ended", first, True, 60),
        ("ended", second, True, 60),
    ]
    # The detector goes to fire: its incident is upgraded, which is urgent. Its waiting notice is
    # replaced by the upgrade, due at once; the fault incident's waits as it was.
    clock.now = T0 + 20
    alarms.apply([smoke("smk-1-1", RAISE, FIRE, T0 + 20)])
    assert feed() == [
        ("opened", first, False, 0),
        ("opened", second, False, 0),
        ("ended", second, True, 60),
        ("upgraded", first, False, 20),
    ]


def test_a_batch_names_each_push_s_time_as_one_push_alone_would(monkeypatch: pytest.MonkeyPatch) -> None:
    # Central European time (POSIX form: needs no tzdata), around the autumn change of 2027, when
    # 02:00-03:00 local comes twice; fractions of a second up to one the rounding carries over.
    monkeypatch.setenv("TZ", "CET-1CEST,M3.5.0,M10.5.0/3")
    time.tzset()
    try:
        change = datetime(2027, 10, 31, 1, 0, tzinfo=UTC).timestamp()
        batch = AlarmBatch()
        times = [
            change + s + f
            for s in range(-3700, 3700, 450)
            for f in (0.0, 0.25, 0.5, 0.9999994, 0.9999996, 0.9999999)
        ]
        assert len({local_time(t) for t in times}) > len(times) / 6  # it does cover many seconds
        for ts in times + times:  # the second time from what the batch kept
            assert batch.local_time(ts) == local_time(ts), ts
    finally:
        monkeypatch.undo()
        time.tzset()


def test_pushes_name_people_by_their_display_names(store_url: str) -> None:
    """Who took the incident, checked it, called 119 or wrote a note reads as the console names them:
    by display name, never by user name; a name that is not an account reads as written."""
    clock = FakeClock(T0)
    alarms = service(store_url, clock)
    make_accounts(alarms.sessions).create_user(
        "zhangsan", TEST_PASSWORD, [Role.OPERATOR], display_name="消控室 张三"
    )
    alarms.apply([smoke("smk-1-1", RAISE, FIRE, T0), fault(RAISE, T0)])
    with alarms.sessions() as s:
        incident_id = s.scalars(select(IncidentRow.id).where(IncidentRow.category == FIRE.value)).one()
        fault_id = s.scalars(select(AlarmRow.id).where(AlarmRow.device_id == "prs-1")).one()
    clock.now = T0 + 30
    alarms.acknowledge_incident(incident_id, actor="zhangsan", note="已派人核实")
    clock.now = T0 + 40
    alarms.verify_incident(incident_id, actor="zhangsan", verifier="微型消防站 王五")
    clock.now = T0 + 50
    alarms.record_119_call(incident_id, actor="zhangsan")
    clock.now = T0 + 60
    alarms.acknowledge(fault_id, actor="zhangsan", note="压力表已更换")

    bodies = [r["payload"]["body"] for r in outbox(alarms)]
    assert any("已受理: 消控室 张三" in b for b in bodies)
    assert any("核实人: 微型消防站 王五" in b for b in bodies)
    assert any(re.search(r"119: 已于 \S+ 报警（消控室 张三）", b) for b in bodies)
    assert any("备注: 压力表已更换（消控室 张三）" in b for b in bodies)  # an alarm push's note
    assert not [b for b in bodies if "zhangsan" in b]
