"""Live alarm streams: committed transitions pushed over WebSocket and Server-Sent Events, resumable
from the alarm event log.

The hub is specified on its own first; then real clients (websockets, httpx) talk to a real uvicorn
server on loopback, in front of the real service fed by a private mosquitto. The clients are
signed in like any other: the duty operator's token in the Authorization header, or in the query
(`access_token`) as a browser's EventSource and WebSocket must send it.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
import pytest
import uvicorn
from sqlalchemy import select
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from accounts.service import AccountService
from alarms.model import Transition
from api.app import create_app
from api.live import (
    Backlog,
    CloseReason,
    LiveHub,
    StreamClosedError,
    StreamFilter,
    Subscription,
    follow,
    transition_from_row,
)
from core.domain import AlarmAction, AlarmCategory
from core.registry import BuildingSpec, Device, FloorSpec, Registry, RoomSpec, SiteSpec, ZoneSpec
from core.settings import IngestSettings, MqttSettings, Settings
from device_profiles.schema import Profile
from firewatch.broker import Mosquitto
from firewatch.service import Service
from storage.models import AlarmEventRow
from tests.conftest import PROFILES, make_accounts, sign_in
from tests.mqtt_helpers import Publisher, reading

WAIT_S = 20.0  # bound on every wait: generous for a loaded 2-core machine, never a timing assertion
Json = dict[str, Any]


# --- the hub on its own -----------------------------------------------------------------------------


def transition(event_id: int, site: str = "s1", category: str = "fire") -> Transition:
    after = {"site": site, "category": category, "system": "fire_alarm", "state": "active_unacknowledged"}
    return Transition(event_id, event_id, AlarmAction.RAISED, None, after, "firewatch", time.time())


async def take(sub: Subscription, n: int) -> list[int]:
    """The ids of the next n transitions (a keep-alive gap means they did not come)."""
    ids: list[int] = []
    for _ in range(n):
        t = await sub.get(WAIT_S)
        assert t is not None, f"only {len(ids)} of {n} transitions arrived"
        ids.append(t.event_id)
    return ids


async def test_transitions_published_from_a_worker_thread_reach_every_subscriber_in_order() -> None:
    hub = LiveHub()
    a, b = hub.subscribe(), hub.subscribe()

    def pipeline_thread() -> None:
        for start in range(1, 200, 20):
            hub.publish([transition(i) for i in range(start, start + 20)])

    worker = threading.Thread(target=pipeline_thread)
    worker.start()
    await asyncio.to_thread(worker.join, WAIT_S)

    assert await take(a, 200) == list(range(1, 201))
    assert await take(b, 200) == list(range(1, 201))


async def test_a_subscriber_that_falls_behind_is_disconnected_with_a_reason_and_holds_up_nobody() -> None:
    hub = LiveHub(queue_max=10)
    slow, keeping_up = hub.subscribe(), hub.subscribe()
    received: list[int] = []
    for start in range(1, 31, 5):
        hub.publish([transition(i) for i in range(start, start + 5)])  # returns at once, never blocks
        received += await take(keeping_up, 5)

    assert received == list(range(1, 31))
    with pytest.raises(StreamClosedError) as closed:
        await slow.get(WAIT_S)
    assert closed.value.reason is CloseReason.LAGGED
    assert "fell behind" in closed.value.detail
    assert hub.lagged == 1
    assert hub.subscribers == 1  # the slow one is gone; its queue with it


async def test_subscribers_get_only_the_sites_and_categories_they_asked_for() -> None:
    hub = LiveHub()
    s2 = hub.subscribe(StreamFilter(sites=frozenset({"s2"})))
    supervisory = hub.subscribe(StreamFilter(categories=frozenset({AlarmCategory.SUPERVISORY})))
    s1_fire = hub.subscribe(StreamFilter(frozenset({"s1"}), frozenset({AlarmCategory.FIRE})))
    everything = hub.subscribe()
    hub.publish(
        [
            transition(1, "s1", "fire"),
            transition(2, "s2", "fire"),
            transition(3, "s1", "supervisory"),
            transition(4, "s2", "supervisory"),
            transition(5, "s1", "fire"),
        ]
    )
    assert await take(everything, 5) == [1, 2, 3, 4, 5]
    assert await take(s2, 2) == [2, 4]
    assert await take(supervisory, 2) == [3, 4]
    assert await take(s1_fire, 2) == [1, 5]
    for sub in (s2, supervisory, s1_fire):
        assert await sub.get(0.05) is None  # nothing else was queued for them


async def test_follow_replays_the_backlog_then_goes_live_dropping_only_what_was_already_sent() -> None:
    hub = LiveHub()
    sub = hub.subscribe()
    # Subscribed before the backlog was read: 7 was committed in between, so it is in both.
    backlog = Backlog(after=5, transitions=[transition(6), transition(7)])
    hub.publish([transition(5), transition(7), transition(9), transition(8)])

    stream = follow(sub, backlog, heartbeat_s=0.05)
    sent = [t.event_id for t in [await anext(stream) for _ in range(4)] if t is not None]
    assert sent == [6, 7, 9, 8]  # 5 the client had, 7 was replayed; 8 came late and is still sent
    assert await anext(stream) is None  # idle: time for a keep-alive


async def test_a_backlog_larger_than_one_replay_ends_the_stream_so_the_client_resumes_for_the_rest() -> None:
    hub = LiveHub()
    sub = hub.subscribe()
    replay = [transition(1), transition(2)]
    stream = follow(sub, Backlog(0, replay, more=True), heartbeat_s=1)
    assert [await anext(stream) for _ in replay] == replay
    with pytest.raises(StreamClosedError) as closed:
        await anext(stream)
    assert closed.value.reason is CloseReason.BACKLOG


async def test_closing_the_hub_ends_every_stream_and_refuses_new_ones() -> None:
    hub = LiveHub()
    sub = hub.subscribe()
    waiting = asyncio.create_task(sub.get(WAIT_S))
    await asyncio.sleep(0)  # let it wait
    hub.close()
    with pytest.raises(StreamClosedError) as closed:
        await waiting
    assert closed.value.reason is CloseReason.STOPPING
    with pytest.raises(StreamClosedError):
        await hub.subscribe().get(WAIT_S)
    assert hub.subscribers == 0


async def test_a_resync_ends_every_stream_so_its_client_resumes_and_serves_the_next_ones() -> None:
    hub = LiveHub()
    subs = [hub.subscribe(), hub.subscribe()]
    hub.resync("live events from worker b were lost on the way: resume")
    for sub in subs:
        with pytest.raises(StreamClosedError) as closed:
            await sub.get(WAIT_S)
        assert closed.value.reason is CloseReason.RESYNC
    assert hub.resynced == 1
    again = hub.subscribe()  # the client reconnected
    t = transition(1)
    hub.publish([t])
    assert await again.get(WAIT_S) == t


def test_publishing_with_nobody_listening_is_a_no_op() -> None:
    LiveHub().publish([transition(1)])  # no loop bound yet: nothing to do, no error


# --- the streams over the wire ------------------------------------------------------------------------

# Devices never report silence here: no offline alarm may slip into a stream in the middle of a test.
QUIET_PROFILES: dict[str, Profile] = {
    pid: p.model_copy(update={"liveness": p.watch.model_copy(update={"heartbeat_s": 3600.0})})
    for pid, p in PROFILES.items()
}


def two_sites() -> Registry:
    """Sites s1 and s2; each has four smoke detectors in four zones (no zone fusion between them)
    and a pressure sensor."""

    def site(sid: str) -> SiteSpec:
        zones = [
            ZoneSpec(id=f"z{z}", name=f"{z}区", rooms=[RoomSpec(id=f"r{z}", name=f"{z}01病房")])
            for z in range(1, 5)
        ]
        floor = FloorSpec(id="f1", name="1F", zones=zones)
        return SiteSpec(
            id=sid, name=f"医院{sid}", buildings=[BuildingSpec(id="b1", name="住院楼", floors=[floor])]
        )

    devices = [
        Device(id=f"smk-{s}-{z}", profile="t-smoke", place=f"{s}/b1/f1/z{z}/r{z}")
        for s in ("s1", "s2")
        for z in range(1, 5)
    ]
    devices += [Device(id=f"prs-{s}", profile="t-pressure", place=f"{s}/b1/f1/z1") for s in ("s1", "s2")]
    return Registry([site("s1"), site("s2")], devices)


@dataclass
class Stack:
    service: Service
    port: int
    http: httpx.AsyncClient  # signed in as the duty operator
    auth: dict[str, str]  # the duty operator's Authorization header
    accounts: AccountService
    publisher: Publisher
    seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def ws_url(self, params: Sequence[tuple[str, str | int]] = ()) -> str:
        query = f"?{urlencode(params)}" if params else ""
        return f"ws://127.0.0.1:{self.port}/api/v1/stream/alarms/ws{query}"

    def ws(self, params: Sequence[tuple[str, str | int]] = ()) -> ws_connect:
        """The WebSocket stream, signed in as the duty operator."""
        return connect(self.ws_url(params), self.auth)

    async def smoke(self, device: str, value: float) -> None:
        site = device.split("-")[1]
        await asyncio.to_thread(
            self.publisher.send, f"fw/v1/{site}/{device}/telemetry", reading(next(self.seq), value)
        )

    async def pressure(self, device: str, value: float) -> None:
        site = device.split("-")[1]
        payload = {"ts": time.time(), "seq": next(self.seq), "v": {"pressure": value}}
        await asyncio.to_thread(self.publisher.send, f"fw/v1/{site}/{device}/telemetry", payload)

    async def events(self, after: int = 0) -> list[Transition]:
        """The alarm event log after an id, as transitions."""

        def read() -> list[Transition]:
            with self.service.sessions() as s:
                q = select(AlarmEventRow).where(AlarmEventRow.id > after).order_by(AlarmEventRow.id)
                return [transition_from_row(r) for r in s.scalars(q)]

        return await asyncio.to_thread(read)

    async def committed(self, check: Callable[[list[Transition]], bool], after: int = 0) -> list[Transition]:
        """Wait until the event log after `after` satisfies `check`; return it."""
        deadline = time.monotonic() + WAIT_S
        while True:
            events = await self.events(after)
            if check(events):
                return events
            assert time.monotonic() < deadline, f"the event log never got there: {events}"
            await asyncio.sleep(0.05)


def raised(device: str, category: str = "fire") -> Callable[[Json], bool]:
    def match(m: Json) -> bool:
        return bool(
            m["action"] == "raised"
            and m["after"]["device_id"] == device
            and m["after"]["category"] == category
        )

    return match


def logged(match: Callable[[Json], bool]) -> Callable[[list[Transition]], bool]:
    return lambda events: any(match(t.to_json()) for t in events)


@pytest.fixture
async def stack(mosquitto: Mosquitto, tmp_path: Path) -> AsyncIterator[Stack]:
    settings = Settings(
        data_dir=tmp_path / "data",
        mqtt=MqttSettings(url=mosquitto.url, client_id=f"fw-live-{uuid.uuid4().hex[:8]}"),
        ingest=IngestSettings(batch_wait_ms=2),
    )
    service = Service(settings, registry=two_sites(), profiles=QUIET_PROFILES)
    await service.start()
    await asyncio.wait_for(service.source.connected.wait(), WAIT_S)
    ctx = service.app_context()
    ctx.start = ctx.stop = None  # the fixture owns the service's lifecycle
    ctx.accounts = make_accounts(service.sessions)  # cheap password hashing for tests
    duty = sign_in(ctx.accounts, "zhiban", "operator", display_name="消控室值班员")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(create_app(ctx), lifespan="off", log_level="warning", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + WAIT_S
    while not server.started and not serving.done():
        assert time.monotonic() < deadline, "uvicorn did not start"
        await asyncio.sleep(0.02)
    if serving.done():
        await serving  # surfaces the start-up error
    publisher = Publisher(mosquitto.host, mosquitto.port)
    port = sock.getsockname()[1]
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=WAIT_S, headers=duty
        ) as http:
            yield Stack(service, port, http, duty, ctx.accounts, publisher)
    finally:
        service.live.close()  # open streams end, so the server stops at once
        server.should_exit = True
        await asyncio.wait_for(serving, WAIT_S)
        publisher.close()
        await service.stop()


# --- clients ------------------------------------------------------------------------------------------


def connect(url: str, headers: dict[str, str] | None = None) -> ws_connect:
    # A client that leaves with unread messages queued cannot finish the closing handshake while its
    # incoming queue is full (it stops reading), and waits out close_timeout (websockets #1555):
    # room for every message these tests may leave unread.
    return ws_connect(url, additional_headers=headers, max_queue=4096, open_timeout=WAIT_S)


async def ws_next(
    ws: ClientConnection, match: Callable[[Json], bool] = lambda m: True
) -> tuple[Json, list[Json]]:
    """The next message that matches, and every message received before it."""
    before: list[Json] = []
    async with asyncio.timeout(WAIT_S):
        while True:
            m: Json = orjson.loads(await ws.recv())
            if match(m):
                return m, before
            before.append(m)


@dataclass
class SseBlock:
    fields: dict[str, str]
    comments: list[str]


class Sse:
    """A minimal EventSource over an httpx streaming response."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def block(self) -> SseBlock:
        fields: dict[str, str] = {}
        comments: list[str] = []
        async with asyncio.timeout(WAIT_S):
            async for line in self._lines:
                if line == "":
                    if fields or comments:
                        return SseBlock(fields, comments)
                elif line.startswith(":"):
                    comments.append(line[1:].strip())
                else:
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")
        raise EOFError("the stream ended")

    async def next(self, match: Callable[[Json], bool] = lambda m: True) -> tuple[int, Json, list[Json]]:
        """The next transition that matches (its SSE id and data) and the transitions before it."""
        before: list[Json] = []
        while True:
            b = await self.block()
            if b.fields.get("event") == "disconnect":
                raise AssertionError(f"the server ended the stream: {b.fields['data']}")
            if b.fields.get("event") != "transition":
                continue  # retry: and keep-alive blocks
            m: Json = orjson.loads(b.fields["data"])
            if match(m):
                return int(b.fields["id"]), m, before
            before.append(m)


@asynccontextmanager
async def sse(
    stack: Stack, params: Sequence[tuple[str, str | int]] = (), headers: dict[str, str] | None = None
) -> AsyncIterator[Sse]:
    async with stack.http.stream("GET", "/api/v1/stream/alarms", params=tuple(params), headers=headers) as r:
        assert r.status_code == 200, (await r.aread()).decode()
        assert r.headers["content-type"].startswith("text/event-stream")
        yield Sse(r)


# --- the specification ----------------------------------------------------------------------------------


@pytest.mark.integration
async def test_a_smoke_reading_over_mqtt_arrives_as_a_raised_fire_on_both_streams_then_its_acknowledgement(
    stack: Stack,
) -> None:
    async with stack.ws() as ws, sse(stack) as es:
        await stack.smoke("smk-s1-1", 0.02)
        await stack.smoke("smk-s1-1", 0.31)

        fire, _ = await ws_next(ws, raised("smk-s1-1"))
        sse_id, sse_fire, _ = await es.next(raised("smk-s1-1"))
        assert sse_fire == fire
        assert sse_id == fire["event_id"]
        assert fire["after"]["site"] == "s1"
        assert fire["after"]["state"] == "active_unacknowledged"
        assert fire["after"]["value"] == 0.31
        assert fire["actor"] == "firewatch"

        r = await stack.http.post(f"/api/v1/alarms/{fire['alarm_id']}/acknowledge", json={"note": "现场确认"})
        assert r.status_code == 200, r.text

        def ack(m: Json) -> bool:
            return bool(m["action"] == "acknowledged" and m["alarm_id"] == fire["alarm_id"])

        ws_ack, _ = await ws_next(ws, ack)
        sse_id, sse_ack, _ = await es.next(ack)
        assert sse_ack == ws_ack
        assert sse_id == ws_ack["event_id"] > fire["event_id"]
        assert (ws_ack["actor"], ws_ack["note"]) == ("zhiban", "现场确认")
        assert ws_ack["before"]["state"] == "active_unacknowledged"
        assert ws_ack["after"]["state"] == "active_acknowledged"


@pytest.mark.integration
async def test_a_replayed_transition_has_exactly_the_shape_of_the_live_one(stack: Stack) -> None:
    live: list[Transition] = []
    stack.service.pipeline.listeners.append(lambda ts, _tickets: live.extend(ts))
    async with stack.ws() as ws:
        await stack.smoke("smk-s1-1", 0.31)
        fire, _ = await ws_next(ws, raised("smk-s1-1"))
        r = await stack.http.post(f"/api/v1/alarms/{fire['alarm_id']}/acknowledge", json={})
        assert r.status_code == 200, r.text
        await ws_next(ws, lambda m: m["action"] == "acknowledged")

    logged_events = await stack.events()
    assert [t.to_json() for t in logged_events] == [t.to_json() for t in live]  # in process
    async with stack.ws([("after", 0)]) as ws:
        replayed = [orjson.loads(await ws.recv()) for _ in live]
    assert replayed == [orjson.loads(orjson.dumps(t.to_json())) for t in live]  # over the wire


@pytest.mark.integration
async def test_reconnecting_after_the_last_event_id_replays_exactly_what_was_missed_then_goes_live(
    stack: Stack,
) -> None:
    async with stack.ws() as ws:
        await stack.smoke("smk-s1-1", 0.31)
        fire, _ = await ws_next(ws, raised("smk-s1-1"))
    last_seen = fire["event_id"]

    # While nobody listens: another fire, and the first one acknowledged.
    await stack.smoke("smk-s2-1", 0.31)
    r = await stack.http.post(f"/api/v1/alarms/{fire['alarm_id']}/acknowledge", json={})
    assert r.status_code == 200, r.text
    missed = await stack.committed(logged(raised("smk-s2-1")), after=last_seen)
    assert any(t.action is AlarmAction.ACKNOWLEDGED for t in missed)
    missed_json = [orjson.loads(orjson.dumps(t.to_json())) for t in missed]

    async with (
        stack.ws([("after", last_seen)]) as ws,
        sse(stack, [("after", 0)], {"Last-Event-ID": str(last_seen)}) as by_header,  # the header wins
        sse(stack, [("after", last_seen)]) as by_param,
    ):
        assert [orjson.loads(await ws.recv()) for _ in missed] == missed_json
        for es in (by_header, by_param):
            got = [await es.next() for _ in missed]
            assert [m for _, m, _ in got] == missed_json
            assert [i for i, _, _ in got] == [m["event_id"] for m in missed_json]

        # Then live, with nothing repeated: the next transition is the new one.
        await stack.smoke("smk-s1-2", 0.31)
        newest = missed[-1].event_id
        first_live, _ = await ws_next(ws, lambda m: m.get("type") != "incident")
        assert first_live["event_id"] > newest
        assert first_live["after"]["device_id"] == "smk-s1-2"
        for es in (by_header, by_param):
            event_id, m, _ = await es.next()
            assert m == first_live
            assert event_id == first_live["event_id"]


@pytest.mark.integration
async def test_a_backlog_larger_than_one_replay_comes_in_pieces_each_connection_ending_where_to_go_on(
    stack: Stack,
) -> None:
    for device in ("smk-s1-1", "smk-s1-2", "smk-s1-3", "smk-s2-1", "smk-s2-2", "smk-s2-3"):
        await stack.smoke(device, 0.31)  # a fire each (its pre-alarm, in the same reading, superseded)
    log = await stack.committed(lambda events: len(events) == 6)
    stack.service.live.replay_max = 4

    async with sse(stack, [("after", 0)]) as es:
        first = [await es.next() for _ in range(4)]
        b = await es.block()
        assert b.fields["event"] == "disconnect"
        info = orjson.loads(b.fields["data"])
        assert (info["reason"], info["after"]) == ("backlog", log[3].event_id)
        with pytest.raises(EOFError):
            await es.block()
    async with sse(stack, [("after", 0)], {"Last-Event-ID": str(info["after"])}) as es:
        rest = [await es.next() for _ in range(2)]
        await stack.smoke("smk-s1-4", 0.31)
        _, live, _ = await es.next()
    got = [m["event_id"] for _, m, _ in first + rest]
    assert got == [t.event_id for t in log]
    assert live["after"]["device_id"] == "smk-s1-4"

    async with stack.ws([("after", 0)]) as ws:
        assert [orjson.loads(await ws.recv())["event_id"] for _ in range(4)] == got[:4]
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1013
    assert closed.value.rcvd.reason.endswith(f"(after={got[3]})")


@pytest.mark.integration
async def test_a_client_reconnecting_again_and_again_during_a_burst_gets_every_transition_exactly_once(
    stack: Stack,
) -> None:
    devices = [f"smk-{s}-{z}" for s in ("s1", "s2") for z in range(1, 4)]
    burst = [
        (f"fw/v1/{d.split('-')[1]}/{d}/telemetry", orjson.dumps(reading(next(stack.seq), value)))
        for _ in range(3)
        for value in (0.31, 0.02)
        for d in devices
    ]
    sender = asyncio.create_task(asyncio.to_thread(stack.publisher.send_many, burst))
    pipeline = stack.service.pipeline
    received: list[int] = []
    after = 0
    last_id: int | None = None  # the burst's last event, once every message has been processed
    deadline = time.monotonic() + 3 * WAIT_S
    for visit in itertools.count():
        assert time.monotonic() < deadline, f"gave up after {len(received)} transitions"
        async with stack.ws([("after", after)]) as ws:
            # Leave after a few messages, or when nothing comes for a while.
            for _ in range(1 + visit % 5):
                try:
                    async with asyncio.timeout(1.0):
                        m = orjson.loads(await ws.recv())
                except TimeoutError:
                    break
                received.append(m["event_id"])
                after = max(after, m["event_id"])
        # A batch's telemetry is stored only after its alarms are committed and published.
        if last_id is None and sender.done() and pipeline.stored_samples >= 2 * len(burst):
            await sender
            last_id = (await stack.events())[-1].event_id
        if last_id is not None and after >= last_id:
            break

    log = await stack.events()
    assert log[-1].event_id == last_id
    # Each round a fire raised (or repeated: it latches) and its reading back to normal; the
    # pre-alarm crossed in the same reading is superseded by the fire.
    assert len(log) >= 3 * len(devices) * 2
    assert len(received) == len(set(received)), "a transition was sent twice"
    assert sorted(received) == [t.event_id for t in log], "a transition was missed"


@pytest.mark.integration
async def test_site_and_category_filters_pass_only_what_was_asked_for_live_and_on_replay(
    stack: Stack,
) -> None:
    filters: dict[str, list[tuple[str, str | int]]] = {
        "s2": [("site", "s2")],
        "supervisory": [("category", "supervisory")],
        "s1 fire": [("site", "s1"), ("category", "fire"), ("category", "pre_alarm")],
    }
    wants: dict[str, Callable[[Transition], bool]] = {
        "s2": lambda t: t.after["site"] == "s2",
        "supervisory": lambda t: t.after["category"] == "supervisory",
        "s1 fire": lambda t: t.after["site"] == "s1" and t.after["category"] in ("fire", "pre_alarm"),
    }
    async with (
        stack.ws(filters["s2"]) as s2_only,
        sse(stack, filters["supervisory"]) as supervisory,
        sse(stack, filters["s1 fire"]) as s1_fire,
    ):
        for device in ("smk-s1-1", "smk-s2-1", "smk-s1-2", "smk-s2-2"):
            await stack.smoke(device, 0.31)  # a fire each (its pre-alarm in the same reading superseded)
        for device in ("prs-s1", "prs-s2"):
            await stack.pressure(device, 0.05)  # low pressure: supervisory
        log = await stack.committed(lambda events: len(events) == 6)
        # Every transition has been offered to every stream: what a stream reads before a later
        # transition it wants is all it was given.
        deadline = time.monotonic() + WAIT_S
        while stack.service.live.delivered < len(log):
            assert time.monotonic() < deadline, "the hub never delivered the transitions"
            await asyncio.sleep(0.02)
        alarm_of = {(t.after["device_id"], t.after["category"]): t.alarm_id for t in log}
        for device, category in (("prs-s2", "supervisory"), ("smk-s1-1", "fire")):  # the later ones
            r = await stack.http.post(f"/api/v1/alarms/{alarm_of[device, category]}/acknowledge", json={})
            assert r.status_code == 200, r.text

        def acked(device: str) -> Callable[[Json], bool]:
            return lambda m: m["action"] == "acknowledged" and m["after"]["device_id"] == device

        _, given = await ws_next(s2_only, acked("prs-s2"))
        assert {m["event_id"] for m in given} == {t.event_id for t in log if wants["s2"](t)}
        _, _, given = await supervisory.next(acked("prs-s2"))
        assert {m["event_id"] for m in given} == {t.event_id for t in log if wants["supervisory"](t)}
        _, _, given = await s1_fire.next(acked("smk-s1-1"))
        assert {m["event_id"] for m in given} == {t.event_id for t in log if wants["s1 fire"](t)}
        assert all(len([t for t in log if want(t)]) >= 2 for want in wants.values())

    # Replay filters the same way.
    s2_supervisory = [*filters["s2"], *filters["supervisory"]]
    wanted = [
        orjson.loads(orjson.dumps(t.to_json()))
        for t in await stack.events()
        if wants["s2"](t) and wants["supervisory"](t)
    ]
    assert [m["action"] for m in wanted] == ["raised", "acknowledged"]
    async with stack.ws([("after", 0), *s2_supervisory]) as ws:
        assert [orjson.loads(await ws.recv()) for _ in wanted] == wanted
        await stack.smoke("smk-s2-3", 0.31)  # unwanted, and sent first: it must not show up
        await stack.pressure("prs-s2", 0.5)  # wanted: back to normal, the alarm clears
        cleared, _ = await ws_next(ws)
        assert (cleared["action"], cleared["after"]["device_id"]) == ("cleared", "prs-s2")


@pytest.mark.integration
async def test_a_bad_filter_or_resume_id_is_a_422_problem_on_both_streams(stack: Stack) -> None:
    bad: list[tuple[list[tuple[str, str]], dict[str, str]]] = [
        ([("category", "smoke")], {}),
        ([("site", "s1/b1")], {}),
        ([("site", "")], {}),
        ([("after", "-1")], {}),
        ([("after", "latest")], {}),
        ([("after", str(10**30))], {}),  # beyond any 64-bit id: a 422, not a database error
        ([("sites", "s1")], {}),  # a mistyped filter must not widen the stream silently
        ([], {"Last-Event-ID": "abc"}),
        ([], {"Last-Event-ID": str(2**64)}),
    ]
    for params, headers in bad:
        async with stack.http.stream(
            "GET", "/api/v1/stream/alarms", params=tuple(params), headers=headers
        ) as r:
            body = orjson.loads(await r.aread())
            assert r.status_code == 422, (params, headers, body)
            assert r.headers["content-type"] == "application/problem+json"
            assert body["status"] == 422
            assert body["detail"], body
        if not headers:
            with pytest.raises(InvalidStatus) as refused:
                async with stack.ws(params):
                    pass
            assert refused.value.response.status_code == 422, params
            assert orjson.loads(refused.value.response.body)["title"] == "Invalid request"


@pytest.mark.integration
async def test_a_stream_without_a_valid_token_is_refused_401_and_one_in_the_query_is_accepted(
    stack: Stack,
) -> None:
    anonymous = httpx.AsyncClient(base_url=f"http://127.0.0.1:{stack.port}", timeout=WAIT_S)
    async with anonymous:
        for params in ([], [("access_token", "fw_not-a-token")]):
            async with anonymous.stream("GET", "/api/v1/stream/alarms", params=tuple(params)) as r:
                body = orjson.loads(await r.aread())
                assert r.status_code == 401, (params, body)
                assert r.headers["content-type"] == "application/problem+json"
            with pytest.raises(InvalidStatus) as refused:
                async with connect(stack.ws_url(params)):
                    pass
            assert refused.value.response.status_code == 401, params

        # A browser's EventSource and WebSocket cannot set headers: the token goes in the query.
        # Any signed-in role may watch, a wall display's viewer account too.
        viewer = sign_in(stack.accounts, "wall-display", "viewer", display_name="监控大屏")
        token = viewer["Authorization"].removeprefix("Bearer ")
        query = [("access_token", token)]
        async with (
            anonymous.stream("GET", "/api/v1/stream/alarms", params=tuple(query)) as r,
            connect(stack.ws_url(query)) as ws,
        ):
            assert r.status_code == 200, (await r.aread()).decode()
            await stack.smoke("smk-s1-1", 0.31)
            fire, _ = await ws_next(ws, raised("smk-s1-1"))
            _, sse_fire, _ = await Sse(r).next(raised("smk-s1-1"))
            assert sse_fire == fire


@pytest.mark.integration
async def test_a_stream_that_falls_behind_is_told_why_and_resumes_where_it_stopped(stack: Stack) -> None:
    hub = stack.service.live
    hub.queue_max = 3  # for the subscriptions made from now on
    async with stack.ws() as ws, sse(stack) as es:
        await stack.smoke("smk-s1-1", 0.31)
        fire, _ = await ws_next(ws, raised("smk-s1-1"))
        await es.next(raised("smk-s1-1"))
        seen = await stack.events()
        last_seen = seen[-1].event_id
        if fire["event_id"] != last_seen:  # the pre-alarm came after the fire: read it too
            await ws_next(ws, lambda m: m["event_id"] == last_seen)
            await es.next(lambda m: m["event_id"] == last_seen)

        # Ten transitions in one batch, more than the three a subscriber may have waiting.
        hub.publish([transition(10_000 + i) for i in range(10)])

        with pytest.raises(ConnectionClosed) as closed:
            await ws_next(ws, lambda m: m.get("type") != "incident")  # the fire's incident steps came too
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1013  # try again later
        assert "fell behind" in closed.value.rcvd.reason
        assert f"after={last_seen}" in closed.value.rcvd.reason

        b = await es.block()
        while b.fields.get("event") != "disconnect":
            b = await es.block()
        assert "id" not in b.fields  # the client's last event id stays where it resumes
        info = orjson.loads(b.fields["data"])
        assert (info["reason"], info["after"]) == ("lagged", last_seen)
        with pytest.raises(EOFError):
            await es.block()

    hub.queue_max = 1000
    async with stack.ws([("after", last_seen)]) as ws:
        await stack.smoke("smk-s1-2", 0.31)
        # The first alarm transition: an incident step (the fire's incident escalating or joined
        # meanwhile) is numbered in the incident log, not in the resumable alarm log.
        first, _ = await ws_next(ws, lambda m: m.get("type") != "incident")
        assert first["event_id"] > last_seen
        assert first["after"]["device_id"] == "smk-s1-2"


@pytest.mark.integration
async def test_an_idle_sse_stream_sends_keep_alive_comments(stack: Stack) -> None:
    stack.service.live.heartbeat_s = 0.2
    async with sse(stack) as es:
        assert (await es.block()).fields == {"retry": "2000"}
        assert (await es.block()).comments == ["keep-alive"]


@pytest.mark.integration
async def test_a_resync_ends_both_streams_with_its_reason_and_where_to_resume(stack: Stack) -> None:
    async with stack.ws() as ws, sse(stack) as es:
        assert stack.service.live.subscribers == 2
        stack.service.live.resync("live events from worker b were lost on the way: resume")

        with pytest.raises(ConnectionClosed) as closed:
            await ws_next(ws)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1013  # try again later
        b = await es.block()
        while b.fields.get("event") != "disconnect":
            b = await es.block()
        assert orjson.loads(b.fields["data"])["reason"] == "resync"


@pytest.mark.integration
async def test_when_the_service_stops_every_stream_is_ended_with_the_reason(stack: Stack) -> None:
    async with stack.ws() as ws, sse(stack) as es:
        assert stack.service.live.subscribers == 2
        stack.service.live.close()

        with pytest.raises(ConnectionClosed) as closed:
            await ws_next(ws)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1001  # going away
        b = await es.block()
        while b.fields.get("event") != "disconnect":
            b = await es.block()
        assert orjson.loads(b.fields["data"])["reason"] == "stopping"
        with pytest.raises(EOFError):
            await es.block()
