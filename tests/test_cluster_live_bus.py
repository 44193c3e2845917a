"""One control room over several workers: the live bus (firewatch/cluster/live_bus.py) carries each
worker's alarm transitions and incident steps to every other worker's live streams, and a stream
resumes without gaps although workers commit their event ids out of order (api/live.py).

Each test starts its own nats-server on a free loopback port; the resume test runs two real alarm
services on one private PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import nats
import orjson
import pytest
from nats.aio.client import Client
from sqlalchemy import event
from sqlalchemy.engine import Engine

from alarms.model import IncidentUpdate, Transition
from alarms.service import AlarmService
from alarms.tickets import TicketOpener
from api.live import (
    CloseReason,
    Item,
    LiveHub,
    StreamClosedError,
    StreamFilter,
    Subscription,
    follow,
    read_backlog,
)
from core.domain import AlarmAction, AlarmCategory, DetectorEvent, DetectorEventKind, IncidentAction
from core.registry import BuildingSpec, Device, FloorSpec, Registry, RoomSpec, SiteSpec, ZoneSpec
from core.settings import TicketPolicy
from firewatch.broker import free_port, stop_process, wait_for_port
from firewatch.cluster import live_bus
from firewatch.cluster.live_bus import LiveBus, decode_item, encode_item, runs
from ingest.index import DeviceIndex
from storage.db import open_store
from storage.registry_sync import sync_registry
from tests.conftest import PROFILES, FakeClock

pytestmark = pytest.mark.integration

T0 = 1_780_000_000.0
WAIT_S = 10.0  # a guard against hanging, never a performance bar


def nats_binary() -> str:
    found = shutil.which("nats-server") or "/usr/sbin/nats-server"
    assert shutil.which(found), "nats-server is not installed (Debian package nats-server)"
    return found


@dataclass
class NatsServer:
    """A private nats-server on a loopback port, stopped and started again on the same port."""

    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        cmd = [nats_binary(), "-a", "127.0.0.1", "-p", str(self.port)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port("127.0.0.1", self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    server = NatsServer().start()
    try:
        yield server
    finally:
        server.stop()


async def connect(server: NatsServer) -> Client:
    # Reconnect for ever, once a second: the tests stop and restart the server.
    return await nats.connect(
        server.url, max_reconnect_attempts=-1, reconnect_time_wait=1, error_cb=_quiet, name="test"
    )


async def _quiet(_exc: Exception) -> None:
    """nats-py logs every reconnection attempt as an error by default."""


@dataclass
class Worker:
    """What a worker's API needs of the bus: its hub, fed by its own commits and by the bus."""

    name: str
    nc: Client
    hub: LiveHub
    bus: LiveBus

    def commit(self, items: Sequence[Item]) -> None:
        """What service.py wires: alarms.on_commit feeds the own hub and the bus."""
        self.hub.publish(items)
        self.bus.publish(items)


@pytest.fixture
async def two_workers(nats_server: NatsServer) -> AsyncIterator[tuple[Worker, Worker]]:
    workers = []
    for name in ("worker-a", "worker-b"):
        nc = await connect(nats_server)
        hub = LiveHub(queue_max=50)
        bus = LiveBus(nc, name, hub)
        await bus.start()
        workers.append(Worker(name, nc, hub, bus))
    await workers[0].nc.flush()  # both subscriptions are in place on the server
    await workers[1].nc.flush()
    try:
        yield workers[0], workers[1]
    finally:
        for w in workers:
            await w.bus.stop()
            await w.nc.close()


def raised(event_id: int, device: str = "smk-1-1", *, recorded: bool = True) -> Transition:
    after = {
        "id": event_id,
        "device_id": device,
        "site": "s1",
        "category": "fire",
        "state": "active_unacknowledged",
    }
    return Transition(
        event_id if recorded else 0,
        event_id if recorded else 0,
        AlarmAction.RAISED,
        None,
        after,
        "firewatch",
        T0 + event_id,
        targets=("duty_officer", "security"),
        recorded=recorded,
    )


def incident_step(event_id: int) -> IncidentUpdate:
    after = {
        "id": 7,
        "site": "s1",
        "category": "fire",
        "zones": ["s1/b1/f1/z1", "s1/b1/f1/z2"],
        "state": "open",
    }
    return IncidentUpdate(
        event_id, 7, IncidentAction.OPENED, after, "firewatch", T0, targets=("duty_officer",)
    )


async def take(sub: Subscription, n: int) -> list[Item]:
    out: list[Item] = []
    async with asyncio.timeout(WAIT_S * 2):
        while len(out) < n:
            item = await sub.get(WAIT_S)
            if item is not None:
                out.append(item)
    return out


async def settle(*workers: Worker) -> None:
    """Every message published so far has been through the server and its subscribers' callbacks."""
    for w in workers:
        await w.nc.flush()
    await asyncio.sleep(0)


# --- the wire format --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "item",
    [
        raised(41),
        Transition(
            42,
            3,
            AlarmAction.ACKNOWLEDGED,
            {"state": "a"},
            {"state": "b"},
            "张三",
            T0,
            "已到场",
            (),
            "flapping",
        ),
        raised(0, recorded=False),
        incident_step(9),
        IncidentUpdate(
            0, 7, IncidentAction.SPREAD, {"id": 7}, "firewatch", T0, alarm_id=None, recorded=False
        ),
        IncidentUpdate(10, 7, IncidentAction.ACKNOWLEDGED, {"id": 7}, "李四", T0, "note", (), alarm_id=3),
    ],
    ids=["raised", "acknowledged", "unrecorded", "incident", "unrecorded-incident", "incident-with-alarm"],
)
def test_an_item_read_back_from_the_wire_equals_the_item_sent(item: Item) -> None:
    assert decode_item(orjson.loads(encode_item(item))) == item


def test_from_json_rebuilds_what_the_streams_send() -> None:
    t = raised(5)
    assert Transition.from_json(t.to_json()) == t
    step = incident_step(6)
    assert IncidentUpdate.from_json(step.to_json()) == step  # `recorded` absent: a recorded step


def test_a_batch_is_cut_into_messages_that_fit_and_at_every_missing_number() -> None:
    numbered = [(n, b"x" * 10) for n in (5, 6, 7, 9, 10)]
    cut = [[n for n, _ in run] for run in runs(numbered, limit=2 + 2 * 11)]
    assert cut == [[5, 6], [7], [9, 10]]


# --- two workers on one bus -------------------------------------------------------------------------


async def test_an_alarm_committed_on_one_worker_reaches_a_console_on_the_other(
    two_workers: tuple[Worker, Worker],
) -> None:
    a, b = two_workers
    console_b = b.hub.subscribe()
    a.commit([raised(1), raised(2, "smk-1-2")])
    assert await take(console_b, 2) == [raised(1), raised(2, "smk-1-2")]
    assert b.bus.received == 2
    assert a.bus.sent == 2


async def test_a_worker_does_not_get_its_own_alarms_twice(two_workers: tuple[Worker, Worker]) -> None:
    a, b = two_workers
    console_a = a.hub.subscribe()
    a.commit([raised(1)])
    b.commit([raised(2)])
    assert await take(console_a, 2) == [raised(1), raised(2)]
    await settle(a, b)
    assert a.bus.received == 1  # b's only
    assert await console_a.get(0.05) is None  # and nothing more: a's own came from its hub alone


async def test_unrecorded_alarms_and_incident_steps_go_to_every_worker(
    two_workers: tuple[Worker, Worker],
) -> None:
    a, b = two_workers
    console_b = b.hub.subscribe(StreamFilter(categories=frozenset({AlarmCategory.FIRE})))
    unrecorded = raised(0, recorded=False)
    a.commit([unrecorded])  # what pipeline.unrecorded.consumers hands over while the store is down
    a.commit([incident_step(3)])
    got = await take(console_b, 2)
    assert got == [unrecorded, incident_step(3)]
    assert isinstance(got[0], Transition)
    assert not got[0].recorded


async def test_a_console_that_stops_reading_holds_up_neither_the_bus_nor_other_consoles(
    two_workers: tuple[Worker, Worker],
) -> None:
    a, b = two_workers
    stalled = b.hub.subscribe()  # room for 50 (queue_max), and never read
    reading = b.hub.subscribe()
    sent = [raised(n) for n in range(1, 201)]
    for i in range(0, 200, 20):
        a.commit(sent[i : i + 20])
        assert await take(reading, 20) == sent[i : i + 20]
    assert stalled.closed is not None
    assert stalled.closed.reason is CloseReason.LAGGED
    assert b.bus.received == 200


async def test_a_storm_larger_than_one_message_arrives_whole_and_in_order(
    two_workers: tuple[Worker, Worker],
) -> None:
    a, b = two_workers
    b.hub.queue_max = 5_000
    console_b = b.hub.subscribe()
    # ~1.8 MB of JSON: more than one message holds (nats-server's max_payload is 1 MB by default).
    big = [replace(raised(n, f"smk-{n}"), note="n" * 400) for n in range(1, 3_001)]
    a.commit(big)
    assert await take(console_b, 3_000) == big
    assert b.bus.gaps == 0


async def test_more_waiting_than_the_bus_holds_is_dropped_counted_and_resynced_on_the_other_worker(
    two_workers: tuple[Worker, Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = two_workers
    monkeypatch.setattr(live_bus, "PENDING_MAX", 10)
    console_b = b.hub.subscribe()
    for n in range(1, 31):  # thirty commits before the bus's loop gets a turn: ten wait, the rest drop
        a.commit([raised(n)])
    with pytest.raises(StreamClosedError) as closed:
        await take(console_b, 30)
    assert closed.value.reason is CloseReason.RESYNC
    assert a.bus.unsent == 20
    assert a.bus.sent == 10


async def test_messages_that_are_not_the_bus_format_are_counted_and_ignored(
    two_workers: tuple[Worker, Worker],
) -> None:
    a, b = two_workers
    console_b = b.hub.subscribe()
    await a.nc.publish("fw.live", b"not json")
    await a.nc.publish("fw.live", b'{"w": "x", "b": "1", "s": 0, "items": [{"action": "nonsense"}]}')
    a.commit([raised(1)])
    assert await take(console_b, 1) == [raised(1)]
    assert b.bus.malformed == 2


async def test_while_nats_is_away_publishing_drops_and_counts_and_the_consoles_resume_after(
    nats_server: NatsServer, two_workers: tuple[Worker, Worker]
) -> None:
    a, b = two_workers
    console_b = b.hub.subscribe()
    a.commit([raised(1)])
    assert await take(console_b, 1) == [raised(1)]

    nats_server.stop()
    await wait_until(lambda: not a.nc.is_connected and not b.nc.is_connected)
    a.commit([raised(2), raised(3)])  # returns at once: nothing waits for NATS
    await wait_until(lambda: a.bus.unsent == 2)

    nats_server.start()
    await wait_until(lambda: a.nc.is_connected and b.nc.is_connected)
    # a's next message (its heartbeat, or an alarm) shows b the gap, and b's consoles resume ...
    with pytest.raises(StreamClosedError) as closed:
        await take(console_b, 1)
    assert closed.value.reason is CloseReason.RESYNC
    assert b.bus.gaps == 1

    again = b.hub.subscribe()  # the console reconnected (it reads 2 and 3 from the event log)
    a.commit([raised(4)])
    assert await take(again, 1) == [raised(4)]


async def wait_until(cond: Any) -> None:
    """Poll `cond` until it holds (the guard only stops a hung test)."""
    for _ in range(int(WAIT_S * 2 / 0.02)):
        if cond():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the condition never held")


# --- resume across workers ----------------------------------------------------------------------------


class HeldCommit:
    """Holds one worker's next commit until released: its event ids are taken, the rows not yet
    visible, as when two workers write at once and the one with the lower ids commits last."""

    def __init__(self, engine: Engine) -> None:
        self.armed = False
        self.reached = threading.Event()
        self.release = threading.Event()
        event.listen(engine, "commit", self._commit)

    def _commit(self, _conn: Any) -> None:
        if self.armed:
            self.armed = False
            self.reached.set()
            self.release.wait(WAIT_S * 3)


def two_sites() -> Registry:
    """small_registry's two zones as two sites: the two workers' fires below are in two incident
    groups, so neither waits for the other's incident lock (alarms/incident_service.py) and the
    one with the lower event id can commit last."""

    def site(n: int) -> SiteSpec:
        zone = ZoneSpec(id=f"z{n}", name=f"{n}区", rooms=[RoomSpec(id=f"r{n}01", name=f"{n}01病房")])
        floor = FloorSpec(id="f1", name="1F", zones=[zone])
        return SiteSpec(
            id=f"s{n}", name=f"院区{n}", buildings=[BuildingSpec(id="b1", name="住院楼", floors=[floor])]
        )

    devices = [
        Device(id=f"smk-{n}-{i}", profile="t-smoke", place=f"s{n}/b1/f1/z{n}/r{n}01")
        for n in (1, 2)
        for i in (1, 2)
    ]
    return Registry([site(1), site(2)], devices)


def alarm_worker(url: str) -> tuple[AlarmService, HeldCommit]:
    engine, sessions = open_store(url)
    registry = two_sites()
    sync_registry(sessions, registry, PROFILES)
    index = DeviceIndex.build(registry, PROFILES)
    return AlarmService(sessions, index, TicketOpener(index, TicketPolicy()), FakeClock(T0)), HeldCommit(
        engine
    )


def smoke(device: str) -> DetectorEvent:
    return DetectorEvent(device, "smoke.alarm", DetectorEventKind.RAISE, AlarmCategory.FIRE, T0, 0.3, "smoke")


async def test_a_console_resuming_on_another_worker_gets_an_alarm_committed_late_with_a_lower_id(
    postgres_url: str, two_workers: tuple[Worker, Worker]
) -> None:
    a, b = two_workers
    alarms_a, held_a = alarm_worker(postgres_url)
    alarms_b, _ = alarm_worker(postgres_url)
    alarms_a.on_commit.append(a.commit)
    alarms_b.on_commit.append(b.commit)
    console = b.hub.subscribe()

    # Worker a takes the lower event id for zone 1's fire; worker b commits zone 2's fire first.
    held_a.armed = True
    late = asyncio.create_task(asyncio.to_thread(alarms_a.apply, [smoke("smk-1-1")]))
    assert await asyncio.to_thread(held_a.reached.wait, WAIT_S)
    (first_b,), _ = await asyncio.to_thread(alarms_b.apply, [smoke("smk-2-1")])
    (seen,) = await take(console, 1)
    assert seen == first_b
    cursor = first_b.event_id
    b.hub.discard(console)  # the console loses its connection, its cursor at b's event

    held_a.release.set()
    (late_a,), _ = await late
    assert late_a.event_id < cursor  # committed after the cursor, with a lower id

    # Resuming after the cursor on worker a: the resume window re-reads below it.
    again = a.hub.subscribe()
    backlog = await asyncio.to_thread(
        read_backlog, alarms_a.sessions, cursor, StreamFilter(), a.hub.replay_max, a.hub.resume_window_s
    )
    stream = follow(again, backlog, heartbeat_s=1)
    replayed = [await anext(stream), await anext(stream)]
    assert [t.event_id for t in replayed if isinstance(t, Transition)] == [late_a.event_id, cursor]
    # Without the window (one writer's rule) it would be lost:
    assert read_backlog(alarms_a.sessions, cursor, StreamFilter(), 100).transitions == []


async def test_an_alarm_with_a_lower_id_committed_after_a_console_resumed_is_sent_live(
    postgres_url: str, two_workers: tuple[Worker, Worker]
) -> None:
    a, b = two_workers
    alarms_a, held_a = alarm_worker(postgres_url)
    alarms_b, _ = alarm_worker(postgres_url)
    alarms_a.on_commit.append(a.commit)
    alarms_b.on_commit.append(b.commit)

    held_a.armed = True
    late = asyncio.create_task(asyncio.to_thread(alarms_a.apply, [smoke("smk-1-1")]))
    assert await asyncio.to_thread(held_a.reached.wait, WAIT_S)
    (first_b,), _ = await asyncio.to_thread(alarms_b.apply, [smoke("smk-2-1")])

    # A console resumes on b after b's event while a's is still uncommitted: not in its backlog ...
    console = b.hub.subscribe()
    backlog = await asyncio.to_thread(
        read_backlog, alarms_b.sessions, first_b.event_id, StreamFilter(), 100, b.hub.resume_window_s
    )
    assert [t.event_id for t in backlog.transitions] == [first_b.event_id]
    stream = follow(console, backlog, heartbeat_s=1)
    assert await anext(stream) == first_b

    # ... so when it commits, it comes live, although its id is below the resume point.
    held_a.release.set()
    (late_a,), _ = await late
    assert late_a.event_id < first_b.event_id
    assert await asyncio.wait_for(anext(stream), WAIT_S) == late_a
