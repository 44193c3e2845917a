"""Pushes through the outbox, against a real HTTP receiver on loopback (Apprise json:// webhooks).

The outbox row is written in the transition's transaction; the dispatcher retries a receiver that is
down until it comes back, and a restart in the middle loses nothing.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from alarms.service import AlarmService
from alarms.tickets import TicketOpener
from core.domain import AlarmAction, AlarmCategory, DetectorEvent, DetectorEventKind
from core.settings import PushRoute, TicketPolicy
from firewatch.dispatch import AppriseChannel, Channel, Dispatcher
from ingest.index import DeviceIndex
from storage.db import open_store
from storage.models import DeliveryRow, OutboxRow
from tests.conftest import PROFILES, small_registry

T0 = 1_800_000_000.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Receiver:
    """A webhook target: a real HTTP server on loopback that keeps every JSON body it is sent."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.bodies: list[dict[str, Any]] = []
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(free_port())
    yield r
    r.stop()


def route(port: int, **kw: Any) -> PushRoute:
    """A route taking every alarm's own pushes, and no incident notices: these tests are about
    delivery (incident notices are specified in tests/test_incidents.py)."""
    return PushRoute(
        name="duty", url=f"json://127.0.0.1:{port}/hook", per_alarm=True, incident_actions=[], **kw
    )


def fire(device: str = "smk-1-1", kind: DetectorEventKind = DetectorEventKind.RAISE) -> DetectorEvent:
    return DetectorEvent(
        device, "smoke.alarm", kind, AlarmCategory.FIRE, T0, 0.3, "smoke", "smoke >= 0.15", "GB 4715"
    )


def make(db: Path, routes: list[PushRoute]) -> tuple[AlarmService, Dispatcher]:
    _, sessions = open_store(f"sqlite:///{db}")
    index = DeviceIndex.build(small_registry(), PROFILES)
    alarms = AlarmService(sessions, index, TicketOpener(index, TicketPolicy()), time.time, routes)
    channels: dict[str, Channel] = {r.name: AppriseChannel(r, timeout_s=2.0) for r in routes}
    return alarms, Dispatcher(sessions, channels, poll_s=0.05, backoff_s=0.05, backoff_cap_s=0.2)


async def until(check: Any, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def test_the_push_is_owed_in_the_same_transaction_as_the_transition(
    tmp_path: Path, receiver: Receiver
) -> None:
    alarms, _ = make(tmp_path / "s.sqlite", [route(receiver.port)])
    transitions, _ = alarms.apply([fire()])
    with alarms.sessions() as s:
        (row,) = s.scalars(select(OutboxRow)).all()
    assert row.alarm_id == transitions[0].alarm_id
    assert row.payload["title"].startswith("【火警】")
    assert "smk-1-1" in row.payload["body"]
    assert row.payload["transition"]["action"] == "raised"


def test_routes_filter_by_category_site_and_action(tmp_path: Path) -> None:
    per_alarm: dict[str, Any] = {"per_alarm": True, "incident_actions": []}
    routes = [
        PushRoute(name="fire-only", url="json://127.0.0.1:9/x", categories=[AlarmCategory.FIRE], **per_alarm),
        PushRoute(name="faults", url="json://127.0.0.1:9/x", categories=[AlarmCategory.FAULT], **per_alarm),
        PushRoute(name="other-site", url="json://127.0.0.1:9/x", sites=["elsewhere"], **per_alarm),
        PushRoute(name="resets", url="json://127.0.0.1:9/x", actions=[AlarmAction.RESET], **per_alarm),
    ]
    alarms, _ = make(tmp_path / "s.sqlite", routes)
    (raised,), _ = alarms.apply([fire()])
    alarms.apply([fire(kind=DetectorEventKind.CLEAR)])  # a fire alarm latches: recorded, not pushed
    alarms.reset(raised.alarm_id, actor="op")
    with alarms.sessions() as s:
        owed = sorted((r.route, r.payload["transition"]["action"]) for r in s.scalars(select(OutboxRow)))
    # By default a subscription hears a fire's raise and its reset (the stand-down).
    assert owed == [("fire-only", "raised"), ("fire-only", "reset"), ("resets", "reset")]


async def test_a_receiver_that_is_down_is_retried_until_it_is_up_and_nothing_is_lost(
    tmp_path: Path, receiver: Receiver
) -> None:
    alarms, dispatcher = make(tmp_path / "s.sqlite", [route(receiver.port)])
    alarms.apply([fire("smk-1-1"), fire("smk-1-2"), fire("smk-2-1")])
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    try:
        await until(lambda: dispatcher.failed_attempts >= 3)  # nobody listening: refused, retried
        assert dispatcher.delivered == 0
        receiver.start()
        await until(lambda: dispatcher.pending() == 0)
    finally:
        stop.set()
        await task
    devices = sorted(b["message"].split("设备: ")[1].split("\n")[0] for b in receiver.bodies)
    assert devices == ["smk-1-1", "smk-1-2", "smk-2-1"]  # each once, in order per route
    with alarms.sessions() as s:
        log = s.scalars(select(DeliveryRow)).all()
    assert sum(not d.ok for d in log) >= 3
    assert sum(d.ok for d in log) == 3
    assert all("127.0.0.1" not in d.detail or "json://" not in d.detail for d in log)  # no secret URL


async def test_a_restart_in_the_middle_of_delivery_loses_nothing(tmp_path: Path, receiver: Receiver) -> None:
    db = tmp_path / "s.sqlite"
    alarms, first = make(db, [route(receiver.port)])
    alarms.apply([fire("smk-1-1"), fire("smk-1-2")])
    stop = asyncio.Event()
    task = asyncio.create_task(first.run(stop))
    await until(lambda: first.failed_attempts >= 1)
    stop.set()
    await task  # the service stops with both pushes still owed

    receiver.start()
    _, second = make(db, [route(receiver.port)])  # a new process reads what is owed
    stop = asyncio.Event()
    task = asyncio.create_task(second.run(stop))
    try:
        await until(lambda: second.pending() == 0)
    finally:
        stop.set()
        await task
    assert len(receiver.bodies) == 2
    assert receiver.bodies[0]["title"].startswith("【火警】")


def test_an_unusable_route_url_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="not a URL Apprise understands"):
        AppriseChannel(PushRoute(name="bad", url="nonsense-without-scheme"))
