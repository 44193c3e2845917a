"""The bulk alarm path's own writes (alarms/driver_rows.py) and its pause of the cyclic collector
(alarms/gc_pause.py): rows sent to the driver as tuples land as the ORM reads them, on SQLite and
PostgreSQL; a racing writer's open alarm still fails the write as the retry expects it to; the
collector is back as it was after a batch, whatever happened in it."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from typing import Any

import pytest
from sqlalchemy import Table, select
from sqlalchemy.exc import IntegrityError

from alarms import gc_pause
from alarms.alarm_values import ALARMS, COLUMNS, Alarm, values_of
from alarms.driver_rows import insert_many, update_many
from alarms.gc_pause import collector_paused
from storage.db import json_dumps, open_store, retryable
from storage.models import AlarmEventRow, AlarmRow

T0 = 1_800_000_000.0


def alarm(alarm_id: int, device_id: str = "smk-1", **changes: Any) -> Alarm:
    values: dict[str, Any] = {
        "id": alarm_id,
        "device_id": device_id,
        "alarm_type": "smoke.alarm",
        "category": "fire",
        "severity": "critical",
        "system": "fire_alarm",
        "site": "s1",
        "place": "s1/b1/f1/z1",
        "state": "active_unacknowledged",
        "occurrences": 1,
        "first_ts": T0,
        "last_ts": T0,
        "cleared_ts": None,
        "acked_ts": None,
        "acked_by": None,
        "ack_note": None,
        "false_alarm": False,
        "closed_ts": None,
        "value": 0.21,
        "peak": 0.21,
        "channel": "smoke",
        "detail": "烟雾浓度 0.21 dB/m",
        "basis": "",
        "department": "",
        "false_alarms": 0,
        "raised_ts": T0,
        "escalation": None,
        "escalation_step": 0,
        "escalate_at": None,
        "remind_at": None,
        "flapping": False,
        "maintenance_id": None,
        "shelved_until": None,
        "shelved_by": None,
        "shelve_note": None,
        "normal_ts": None,
        "incident_id": None,
    }
    values.update(changes)
    return Alarm(*(values[c] for c in COLUMNS))


def test_rows_sent_as_tuples_read_back_as_written(store_url: str) -> None:
    """Alarms inserted and updated, and a log row with JSON columns, as the ORM reads them."""
    engine, sessions = open_store(store_url)
    events = AlarmEventRow.__table__
    assert isinstance(events, Table)
    before = {"state": "active_unacknowledged", "note": "第一次"}
    after = {"state": "cleared_unacknowledged", "value": None}
    with sessions.begin() as s:
        conn = s.connection()
        insert_many(conn, ALARMS, COLUMNS, [values_of(alarm(1)), values_of(alarm(2, "smk-2", flapping=True))])
        update_many(
            conn,
            ALARMS,
            ("state", "cleared_ts", "false_alarm"),
            [("cleared_unacknowledged", T0 + 5, True, 1)],
        )
        # A whole-number reading among fractional ones, in one statement: still the float column's.
        update_many(conn, ALARMS, ("value", "peak"), [(1, 1, 1), (0.5, None, 2)])
        columns = ("id", "alarm_id", "ts", "action", "actor", "note", "before", "after", "targets", "held")
        row = (
            7,
            1,
            T0 + 5,
            "cleared",
            "firewatch",
            "",
            json_dumps(before),
            json_dumps(after),
            json_dumps([]),
            "",
        )
        insert_many(conn, events, columns, [row])
    with sessions() as s:
        first, second = s.scalars(select(AlarmRow).order_by(AlarmRow.id)).all()
        assert (first.state, first.cleared_ts, first.false_alarm) == ("cleared_unacknowledged", T0 + 5, True)
        assert (first.detail, first.value, first.peak, first.acked_ts) == (
            "烟雾浓度 0.21 dB/m",
            1.0,
            1.0,
            None,
        )
        assert (second.value, second.peak) == (0.5, None)
        assert (second.state, second.flapping, second.device_id) == ("active_unacknowledged", True, "smk-2")
        logged = s.get(AlarmEventRow, 7)
        assert logged is not None
        assert (logged.before, logged.after, logged.targets, logged.ts) == (before, after, [], T0 + 5)
    engine.dispose()


def test_a_second_open_alarm_of_a_key_fails_as_a_retryable_integrity_error(store_url: str) -> None:
    """What a racing writer's new alarm for the same key does to the batch's insert: the alarm
    service retries the whole batch on it (storage/db.py retryable), on either database."""
    engine, sessions = open_store(store_url)
    with sessions.begin() as s:
        insert_many(s.connection(), ALARMS, COLUMNS, [values_of(alarm(1))])
    with pytest.raises(IntegrityError) as raised, sessions.begin() as s:
        insert_many(s.connection(), ALARMS, COLUMNS, [values_of(alarm(2))])
    assert retryable(raised.value)
    with sessions() as s:
        assert s.scalars(select(AlarmRow.id)).all() == [1]
    engine.dispose()


def test_the_collector_is_off_in_a_batch_and_as_it_was_after() -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("the batch failed")
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # turned off by someone else: left off
    finally:
        gc.enable()


def test_two_threads_pausing_at_once_keep_the_collector_off_until_the_last_one_ends() -> None:
    """The pipeline's thread and the alarm writer's overlap: the one that ends first must not turn
    the collector back on under the other."""
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: list[bool] = []

    def first() -> None:
        with collector_paused():
            first_in.set()
            second_in.wait(5)
        first_out.set()

    def second() -> None:
        first_in.wait(5)
        with collector_paused():
            second_in.set()
            first_out.wait(5)
            seen.append(gc.isenabled())  # the first has ended; this one still holds it off
        seen.append(gc.isenabled())

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert seen == [False, True]
    assert gc_pause.holders() == 0


def test_pauses_that_overlap_without_a_gap_still_let_young_cycles_be_collected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under a steady load the pauses can chain for minutes: a holder ending after MAX_HELD_S runs
    one young collection, so a cycle made meanwhile does not wait for the load to stop."""
    monkeypatch.setattr(gc_pause, "MAX_HELD_S", 0.05)

    class Node:
        def __init__(self) -> None:
            self.me = self

    outer = collector_paused()
    outer.__enter__()
    try:
        ref = weakref.ref(Node())  # a cycle, unreachable at once: only the collector frees it
        assert ref() is not None
        time.sleep(0.1)
        with collector_paused():
            pass
        assert ref() is None
        assert not gc.isenabled()  # the outer pause still holds
    finally:
        outer.__exit__(None, None, None)
    assert gc.isenabled()
