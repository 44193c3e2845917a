"""The dispatcher's delivery of the outbox, with channels in memory: once per row, in order per
route, a failing row holding its route's later rows, a hanging route holding only itself, a push
going out on `wake` without waiting for the poll, and a rate-limited incident update replaced while
it is being sent neither lost nor sent twice. The tests of the dispatcher's reads run on SQLite and
on PostgreSQL.

Delivery over real channels (webhooks, e-mail) is in tests/test_pushes.py and test_email_push.py;
over the MQTT alarm topic in tests/test_alarm_topic_push.py.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from alarms.service import AlarmService
from alarms.tickets import TicketOpener
from core.domain import AlarmCategory, DetectorEvent, DetectorEventKind
from core.settings import TicketPolicy
from firewatch.dispatch import Channel, DeliveryError, Dispatcher
from ingest.index import DeviceIndex
from storage.db import open_store
from storage.models import DeliveryRow, OutboxRow
from tests.conftest import PROFILES, small_registry

T0 = 1_800_000_000.0


class Recorder:
    """A channel that keeps what it was sent; `before` runs first (to fail, hang or race)."""

    def __init__(self, before: Callable[[dict[str, Any]], object] = lambda payload: None) -> None:
        self.sent: list[str] = []
        self.before = before

    def deliver(self, payload: dict[str, Any]) -> None:
        self.before(payload)
        self.sent.append(str(payload["title"]))


def store(tmp_path: Path, url: str | None = None) -> tuple[sessionmaker[Session], int]:
    """A state store (SQLite unless `url`) with one recorded alarm (outbox rows name an alarm);
    returns its id."""
    _, sessions = open_store(url or f"sqlite:///{tmp_path / 's.sqlite'}")
    index = DeviceIndex.build(small_registry(), PROFILES)
    alarms = AlarmService(sessions, index, TicketOpener(index, TicketPolicy()), lambda: T0, [])
    event = DetectorEvent(
        "smk-1-1", "smoke.alarm", DetectorEventKind.RAISE, AlarmCategory.FIRE, T0, 0.3, "smoke", "", ""
    )
    (raised,), _ = alarms.apply([event])
    return sessions, raised.alarm_id


def owe(
    sessions: sessionmaker[Session],
    alarm_id: int,
    route: str,
    title: str,
    *,
    replaceable: bool = False,
    incident_id: int | None = None,
) -> int:
    with sessions.begin() as s:
        row = OutboxRow(
            route=route,
            alarm_id=alarm_id,
            incident_id=incident_id,
            replaceable=replaceable,
            created_ts=T0,
            payload={"title": title, "body": title},
            attempts=0,
            next_ts=T0,
            delivered_ts=None,
            last_error="",
        )
        s.add(row)
        s.flush()
        return row.id


def update_incident(
    sessions: sessionmaker[Session], alarm_id: int, route: str, incident: int, title: str
) -> None:
    """A newer update of an incident, as alarms/outbox.py `enqueue_incident` writes a rate-limited
    one: in place of the update still waiting on the route (replaceable, never attempted), or as a
    row of its own when there is none."""
    with sessions.begin() as s:
        waiting = s.scalars(
            select(OutboxRow).where(
                OutboxRow.route == route,
                OutboxRow.incident_id == incident,
                OutboxRow.replaceable.is_(True),
                OutboxRow.delivered_ts.is_(None),
                OutboxRow.attempts == 0,
            )
        ).first()
        if waiting is not None:
            waiting.payload = {"title": title, "body": title}
    if waiting is None:
        owe(sessions, alarm_id, route, title, replaceable=True, incident_id=incident)


def log(sessions: sessionmaker[Session]) -> list[tuple[int, bool]]:
    with sessions() as s:
        return [(d.outbox_id, d.ok) for d in s.scalars(select(DeliveryRow).order_by(DeliveryRow.id))]


def dispatcher(sessions: sessionmaker[Session], channels: dict[str, Channel], **kw: Any) -> Dispatcher:
    return Dispatcher(sessions, channels, clock=lambda: T0 + 1, **kw)


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_every_due_row_is_delivered_once_in_order_per_route_and_logged(
    tmp_path: Path, store_url: str
) -> None:
    sessions, alarm = store(tmp_path, store_url)
    a, b = Recorder(), Recorder()
    ids = [owe(sessions, alarm, route, f"{route}{n}") for n in range(5) for route in ("a", "b")]
    d = dispatcher(sessions, {"a": a, "b": b})

    assert await d.deliver_due() == 10
    assert await d.deliver_due() == 0  # nothing is owed any more: nothing is sent again

    assert a.sent == ["a0", "a1", "a2", "a3", "a4"]
    assert b.sent == ["b0", "b1", "b2", "b3", "b4"]
    assert sorted(log(sessions)) == [(i, True) for i in sorted(ids)]
    assert d.pending() == 0
    with sessions() as s:
        assert {r.attempts for r in s.scalars(select(OutboxRow))} == {1}


async def test_a_failing_row_backs_off_and_holds_the_later_rows_of_its_route_only(
    tmp_path: Path, store_url: str
) -> None:
    sessions, alarm = store(tmp_path, store_url)
    down = threading.Event()
    down.set()

    def refuse(payload: dict[str, Any]) -> None:
        if down.is_set() and payload["title"] == "a1":
            raise DeliveryError("receiver down")

    a, b = Recorder(refuse), Recorder()
    for n in range(3):
        owe(sessions, alarm, "a", f"a{n}")
        owe(sessions, alarm, "b", f"b{n}")
    now = [T0 + 1]
    d = Dispatcher(sessions, {"a": a, "b": b}, clock=lambda: now[0], backoff_s=10.0)

    assert await d.deliver_due() == 4  # a0, and all of b
    assert await d.deliver_due() == 0  # a1 waits for its backoff, a2 waits behind it
    assert a.sent == ["a0"]
    assert b.sent == ["b0", "b1", "b2"]
    with sessions() as s:
        a1 = s.scalars(select(OutboxRow).where(OutboxRow.route == "a").order_by(OutboxRow.id)).all()[1]
        assert (a1.attempts, a1.delivered_ts, a1.next_ts) == (1, None, T0 + 1 + 10.0)
        assert a1.last_error == "receiver down"

    now[0] += 10.0  # its backoff is over; it fails again: twice as long
    assert await d.deliver_due() == 0
    with sessions() as s:
        assert s.get(OutboxRow, a1.id).next_ts == T0 + 11 + 20.0  # type: ignore[union-attr]

    down.clear()
    now[0] += 20.0
    assert await d.deliver_due() == 2
    assert a.sent == ["a0", "a1", "a2"]
    assert d.pending() == 0
    assert [ok for i, ok in log(sessions) if i == a1.id] == [False, False, True]


async def test_a_push_goes_out_on_wake_without_waiting_for_the_poll(tmp_path: Path) -> None:
    sessions, alarm = store(tmp_path)
    a = Recorder()
    d = dispatcher(sessions, {"a": a}, poll_s=60.0)
    stop = asyncio.Event()
    task = asyncio.create_task(d.run(stop))
    try:
        await until(lambda: d.pending() == 0)  # the first round read nothing
        owe(sessions, alarm, "a", "fire")
        d.wake()
        await until(lambda: a.sent == ["fire"], timeout=5.0)
    finally:
        stop.set()
        await task
    assert d.pending() == 0


async def test_a_hanging_route_holds_only_its_own_pushes(tmp_path: Path, store_url: str) -> None:
    sessions, alarm = store(tmp_path, store_url)
    release = threading.Event()
    slow, fast = Recorder(lambda payload: release.wait(10.0)), Recorder()
    owe(sessions, alarm, "slow", "s0")
    owe(sessions, alarm, "fast", "f0")
    d = dispatcher(sessions, {"slow": slow, "fast": fast}, poll_s=60.0)
    stop = asyncio.Event()
    task = asyncio.create_task(d.run(stop))
    try:
        await until(lambda: fast.sent == ["f0"])
        owe(sessions, alarm, "fast", "f1")
        owe(sessions, alarm, "slow", "s1")
        d.wake()
        await until(lambda: fast.sent == ["f0", "f1"])
        assert slow.sent == []  # still hanging in s0
        release.set()
        await until(lambda: slow.sent == ["s0", "s1"])  # its later row follows once it is free
    finally:
        release.set()
        stop.set()
        await task
    assert d.pending() == 0


async def test_an_incident_update_replaced_while_it_is_sent_is_sent_again_with_the_newer_content(
    tmp_path: Path,
) -> None:
    sessions, alarm = store(tmp_path)
    owe(sessions, alarm, "a", "update 1", replaceable=True, incident_id=7)
    # A newer step of the incident is written while the first is on its way: it must reach the
    # route too, and the first must not be sent twice.
    a = Recorder(
        lambda payload: (
            update_incident(sessions, alarm, "a", 7, "update 2") if payload["title"] == "update 1" else None
        )
    )
    d = dispatcher(sessions, {"a": a})

    assert await d.deliver_due() == 1
    assert await d.deliver_due() == 1
    assert await d.deliver_due() == 0
    assert a.sent == ["update 1", "update 2"]
    assert d.pending() == 0


async def test_an_update_written_in_place_after_the_claim_is_not_lost(tmp_path: Path) -> None:
    """Should a replacement still land on a row already claimed (a writer that read it as waiting
    before the claim, on a database without serialised writes), the row is not marked delivered
    with the older content: the newer content is sent next."""
    sessions, alarm = store(tmp_path)
    row = owe(sessions, alarm, "a", "update 1", replaceable=True, incident_id=7)

    def late_replace(payload: dict[str, Any]) -> None:
        if payload["title"] == "update 1":
            with sessions.begin() as s:
                s.execute(
                    update(OutboxRow)
                    .where(OutboxRow.id == row)
                    .values(payload={"title": "update 2", "body": ""})
                )

    a = Recorder(late_replace)
    d = dispatcher(sessions, {"a": a})

    assert await d.deliver_due() == 0  # sent, but its content changed meanwhile: still owed
    assert await d.deliver_due() == 1
    assert a.sent == ["update 1", "update 2"]
    assert d.pending() == 0
    assert log(sessions) == [(row, True), (row, True)]


async def test_rows_held_behind_a_failure_leave_the_read_to_other_routes(
    tmp_path: Path, store_url: str
) -> None:
    """The read's limit counts only rows that can go: a route backing off with a long queue behind
    its failed row does not take every round's read from the routes that work."""
    sessions, alarm = store(tmp_path, store_url)
    down = threading.Event()
    down.set()

    def refuse(payload: dict[str, Any]) -> None:
        if down.is_set():
            raise DeliveryError("receiver down")

    a, b = Recorder(refuse), Recorder()
    for n in range(4):
        owe(sessions, alarm, "a", f"a{n}")
    now = [T0 + 1]
    d = Dispatcher(sessions, {"a": a, "b": b}, clock=lambda: now[0], backoff_s=60.0, batch=3)
    assert await d.deliver_due() == 0  # a0 fails, a1 and a2 were read behind it and wait
    owe(sessions, alarm, "b", "b0")
    owe(sessions, alarm, "b", "b1")
    assert await d.deliver_due() == 2  # not a1, a2, a3 (held), which would fill the limit of 3
    assert b.sent == ["b0", "b1"]
    assert a.sent == []
    down.clear()
    now[0] += 60.0
    assert await d.deliver_due() == 3
    assert await d.deliver_due() == 1
    assert a.sent == ["a0", "a1", "a2", "a3"]


async def test_wakes_racing_the_poll_send_every_row_once_in_order(tmp_path: Path) -> None:
    """A wake hands a route to its worker, which reads for itself, while the dispatcher's own
    thread polls every route as well (here every 2 ms): a route has one reader at a time, and rows
    read by a poll that the route's worker took meanwhile are dropped, not sent again."""
    sessions, alarm = store(tmp_path)
    a, b = Recorder(), Recorder()
    d = dispatcher(sessions, {"a": a, "b": b}, poll_s=0.002, batch=7)
    stop = asyncio.Event()
    task = asyncio.create_task(d.run(stop))

    def commit_and_wake() -> None:
        for n in range(150):
            owe(sessions, alarm, "a", f"a{n}")
            owe(sessions, alarm, "b", f"b{n}")
            d.wake()

    try:
        await asyncio.to_thread(commit_and_wake)
        await until(lambda: d.pending() == 0, timeout=30.0)
    finally:
        stop.set()
        await task
    assert a.sent == [f"a{n}" for n in range(150)]
    assert b.sent == [f"b{n}" for n in range(150)]
    assert d.delivered == 300


async def test_rows_a_round_read_are_dropped_when_a_wake_took_their_route_meanwhile(tmp_path: Path) -> None:
    """The race above, made to happen: between the dispatcher's read of every route and its hand-out,
    a wake gives the route to its worker, which reads, sends and records the row itself. The
    round's copy of the row is stale: it must not be sent a second time."""
    sessions, alarm = store(tmp_path)
    a = Recorder()
    owe(sessions, alarm, "a", "a0")

    class Racing(Dispatcher):
        raced = False

        def _due(self, busy: set[str], route: str | None = None) -> dict[str, Any]:
            rows = super()._due(busy, route)
            if route is None and not self.raced:  # the round's read, with "a0" in it
                self.raced = True
                deadline = time.monotonic() + 10.0
                while not self._running:  # `run` has started this thread and is about to serve
                    assert time.monotonic() < deadline
                    time.sleep(0.001)
                self.wake()
                while "a" in self._busy or not a.sent:  # the worker took "a", sent a0, let go
                    assert time.monotonic() < deadline
                    time.sleep(0.001)
            return rows

    d = Racing(sessions, {"a": a}, clock=lambda: T0 + 1, poll_s=60.0)
    stop = asyncio.Event()
    task = asyncio.create_task(d.run(stop))
    try:
        await until(lambda: d.raced and d.pending() == 0)
        await asyncio.sleep(0.2)  # time for a second send, if there were one
    finally:
        stop.set()
        await task
    assert a.sent == ["a0"]
    assert len(log(sessions)) == 1


async def test_a_read_that_fails_lets_go_of_the_route_and_the_next_wake_delivers(tmp_path: Path) -> None:
    """The state store failing under a woken route's read: the failure is logged, the route is free
    again (never stuck busy, nor the dispatcher deadlocked), and the next wake delivers."""
    sessions, alarm = store(tmp_path)
    a = Recorder()
    owe(sessions, alarm, "a", "a0")

    class Failing(Dispatcher):
        failures = 3

        def _due(self, busy: set[str], route: str | None = None) -> dict[str, Any]:
            if route is not None and self.failures > 0:
                self.failures -= 1
                raise RuntimeError("the state store is down")
            return super()._due(busy, route)

    d = Failing(sessions, {"a": a}, clock=lambda: T0 + 1, poll_s=60.0)
    stop = asyncio.Event()
    task = asyncio.create_task(d.run(stop))
    try:
        await until(lambda: d._running and a.sent == ["a0"])  # the poll's read of every route works
        owe(sessions, alarm, "a", "a1")
        for left in (2, 1, 0):  # each wake: the route's own read fails, and the route is let go
            d.wake()
            await until(functools.partial(lambda n: d.failures == n and "a" not in d._busy, left))
        d.wake()
        await until(lambda: "a1" in a.sent)
    finally:
        stop.set()
        await task
    assert a.sent.count("a1") == 1
