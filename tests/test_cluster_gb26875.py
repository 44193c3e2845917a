"""GB/T 26875.3 through the listener, clustered (docs/scale.md, docs/gb26875.md): a transmission
device connected to one worker reports for a site another worker owns. Its uploads go through the
engine to the owner; each is confirmed to the device only once the engine has stored it, and not
at all while the engine is unreachable; nothing is lost, and a fire is raised once. Queries and
duty checks asked of either worker's API reach the device through the worker it is connected to.

The forwarder itself (firewatch/cluster/forward.py) against the same engine: in order, bounded,
and confirming only what the stream stored. The relay of questions (firewatch/cluster/gb_relay.py)
between two listeners in this process: it follows a device from one to the other, and refuses
what is not a worker's question.

Real components: a one-node engine (nats-server with JetStream, the site-partitioning mapping; one
node is enough here, node failover is tests/test_cluster.py's), a private PostgreSQL database, two
`firewatch serve` workers each with its GB/T 26875.3 listener, and a simulated transmission device
over TCP on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import nats
import orjson
import pytest
from nats.aio.client import Client
from sqlalchemy import text

from api.context import HeldConnection, RelayError, Survey
from core.registry import (
    BuildingSpec,
    Device,
    FloorSpec,
    Registry,
    RoomSpec,
    SiteSpec,
    ZoneSpec,
    write_registry_text,
)
from core.settings import Gb26875Settings
from device_profiles.loader import load_profiles
from firewatch.broker import free_port
from firewatch.cluster.engine import STREAM, NatsCluster, partition_of, prepare_stream
from firewatch.cluster.forward import EngineInbox
from firewatch.cluster.gb_relay import DeviceRelay, parse_survey_part, subject_of, survey_parts
from firewatch.cluster.local import ClusterState, WorkerProcess, start_worker
from ingest.envelope import Message
from ingest.gb26875.codes import Command
from ingest.gb26875.frame import Frame
from ingest.gb26875.listener import DutyCheckRecord, Gb26875Listener
from ingest.gb26875.objects import ComponentState, UnknownObjects, encode_adu
from ingest.index import DeviceIndex
from ingest.queue import BoundedQueue
from simulators.gb26875_device import TransmissionDevice, now_tag
from tests.waiting import eventually

pytestmark = pytest.mark.xdist_group("cluster")

PARTITIONS = 2  # two workers, one partition each
NORMAL, FIRE, FAULT = 1 << 0, 1 << 1, 1 << 2
SMOKE_1, SMOKE_2, SMOKE_3 = 0x0002000A, 0x0003000A, 0x0004000A  # loop 10, points 2, 3, 4


def two_sites() -> tuple[str, str]:
    """Two site ids in different partitions: whichever worker owns one does not own the other."""
    first = "h00"
    other = next(
        f"h{i:02d}"
        for i in range(1, 100)
        if partition_of(f"h{i:02d}", PARTITIONS) != partition_of(first, PARTITIONS)
    )
    return first, other


def registry(sites: tuple[str, ...]) -> Registry:
    """Per site a hospital ward with a transmission device (address 881, 882, ...), its panel and
    three smoke detectors on it."""
    specs: list[SiteSpec] = []
    devices: list[Device] = []
    for n, site in enumerate(sites):
        room = RoomSpec(id="r101", name="101病房")
        floor = FloorSpec(id="f1", name="1F", zones=[ZoneSpec(id="z1", name="1区", rooms=[room])])
        specs.append(
            SiteSpec(
                id=site, name=f"医院{n + 1}", buildings=[BuildingSpec(id="b1", name="住院楼", floors=[floor])]
            )
        )
        ud = {"gateway": f"{site}-ud", "place": f"{site}/b1/f1/z1/r101"}
        devices += [
            Device(
                id=f"{site}-ud",
                profile="gb-transmission-device",
                place=f"{site}/b1/f1/z1",
                tags=[f"gb26875={881 + n}"],
            ),
            Device(id=f"{site}-fas", profile="gb-fire-alarm-panel", **ud, tags=["gb26875=1/1"]),
            *(
                Device(
                    id=f"{site}-smk-{i}",
                    profile="gb-smoke-detector",
                    **ud,
                    tags=[f"gb26875=1/1/42/{addr:#x}"],
                )
                for i, addr in enumerate((SMOKE_1, SMOKE_2, SMOKE_3), start=1)
            ),
        ]
    return Registry(specs, devices)


def point(addr: int, status: int) -> ComponentState:
    return ComponentState(1, 1, 42, addr, status, "101病房感烟", now_tag())


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[NatsCluster]:
    cluster = NatsCluster(tmp_path / "engine", nodes=1, partitions=PARTITIONS)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


class Stream:
    """The engine's stream FW as a test reads it."""

    def __init__(self, engine: NatsCluster) -> None:
        self.engine = engine

    async def payloads(self, subject: str) -> list[bytes]:
        """What the stream stored on `subject`, in order (a small stream: read message by message)."""
        nc = await nats.connect(servers=self.engine.client_urls, connect_timeout=2, allow_reconnect=False)
        try:
            js = nc.jetstream()
            last = (await js.stream_info(STREAM)).state.last_seq
            msgs = [await js.get_msg(STREAM, seq) for seq in range(1, last + 1)]
        finally:
            await nc.close()
        return [m.data or b"" for m in msgs if m.subject == subject]

    async def events(self, site: str, device_id: str) -> list[object]:
        """The kinds of the events the stream stored for the device, in order."""
        subject = f"fwp.{partition_of(site, PARTITIONS)}.fw.v1.{site}.{device_id}.event"
        return [orjson.loads(p or b"{}").get("event") for p in await self.payloads(subject)]


def confirms_of(device: TransmissionDevice, serial: bytes) -> list[Frame]:
    return [f for f in device.received if f.command == Command.CONFIRM and f.serial_bytes == serial]


async def test_a_device_on_one_worker_reports_a_fire_of_a_site_another_owns_confirmed_once_stored(
    tmp_path: Path, engine: NatsCluster, postgres_url: str
) -> None:
    sites = two_sites()
    path = tmp_path / "hospitals.yaml"
    write_registry_text(path, registry(sites))
    gb_ports = {name: free_port() for name in ("w1", "w2")}
    password = f"gb-cluster-{uuid.uuid4().hex}"  # the first admin's, whichever worker makes it
    workers: dict[str, WorkerProcess] = {}
    state = ClusterState(postgres_url)
    device: TransmissionDevice | None = None
    apis: list[httpx.AsyncClient] = []
    stream = Stream(engine)
    try:
        for name, port in gb_ports.items():
            workers[name] = start_worker(
                name,
                engine=engine.client_urls,
                database_url=postgres_url,
                registry=path,
                data_dir=tmp_path / name,
                partitions=PARTITIONS,
                admin_password=password,
                env={
                    "FIREWATCH_CLUSTER__STREAM_REPLICAS": "1",
                    "FIREWATCH_GB26875__ENABLED": "true",
                    "FIREWATCH_GB26875__PORT": str(port),
                },
            )
        await asyncio.to_thread(state.wait_owned, set(workers), PARTITIONS, 90)
        # The device of the site w_b owns connects to the other worker, w_a.
        site = sites[0]
        w_b = state.owners()[partition_of(site, PARTITIONS)]
        assert w_b is not None
        (w_a,) = set(workers) - {w_b}
        device = TransmissionDevice(address=881, host="127.0.0.1", port=gb_ports[w_a], answer_timeout_s=10.0)

        async def connected() -> bool:
            assert device is not None
            try:
                await device.connect()
            except OSError:
                return False
            return True

        await eventually(connected, timeout=30, what=f"{w_a}'s GB/T 26875.3 listener")
        smoke_1, smoke_2, smoke_3 = (f"{site}-smk-{i}" for i in (1, 2, 3))

        # 火警 of a point: confirmed by w_a only once the engine has stored it (it is in the
        # stream when the confirm arrives), then raised by w_b, the site's owner.
        fire_1 = point(SMOKE_1, NORMAL | FIRE)
        reply = await device.upload(2, [fire_1])
        assert reply.command == Command.CONFIRM
        assert "alarm" in await stream.events(site, smoke_1)

        # Asked through either worker's API, the device answers: through w_b, where it is not
        # connected, the question goes over the engine to w_a and the device's own answer comes
        # back (its state, type 21, from its address). A device connected to no worker is 409.
        apis.append(api_a := await signed_in(workers[w_a], password))
        apis.append(api_b := await signed_in(workers[w_b], password))
        ud = f"{site}-ud"
        for api in (api_a, api_b):
            answer = await eventually(partial(query, api, ud), timeout=20, what=f"asked via {api.base_url}")
            frame = answer["frame"]
            assert (answer["command_name"], frame["source"], frame["type_id"]) == ("应答", 881, 21)
            assert frame["objects"][0]["status"] == device.status
        for api in (api_a, api_b):
            nowhere = await api.post(f"/gb26875/devices/{sites[1]}-ud/query", json={"type": 81})
            assert nowhere.status_code == 409, nowhere.text
            assert "not connected" in nowhere.json()["detail"]
        # 查岗 through w_b: sent by w_a on the device's connection and confirmed by the device; the
        # duty person's answer reaches w_a, which matches it to the check and audits it.
        checked = await api_b.post(f"/gb26875/devices/{ud}/duty-check", json={"timeout_minutes": 5})
        assert checked.status_code == 200, checked.text
        assert (checked.json()["device_id"], checked.json()["confirmed"]) == (ud, True)
        assert [f.adu[0] for f in device.received if f.command == Command.CONTROL and f.adu][-1] == 91
        assert (await device.answer_duty_check(operator=3)).command == Command.CONFIRM
        await eventually(lambda: duty_answers(state) == [(ud, 3)], timeout=20, what="the answer audited")
        # One control room: either worker lists the device connected (to w_a) and the duty check
        # (kept by w_a), the other site's device not connected, and says the lists are complete.
        for api in (api_a, api_b):
            listed = await api.get("/gb26875/devices")
            assert "x-firewatch-incomplete" not in listed.headers
            devices = {d["device_id"]: d for d in listed.json()}
            assert devices[ud]["connected"]
            assert devices[ud]["peer"].startswith("127.0.0.1:")
            assert not devices[f"{sites[1]}-ud"]["connected"]
            checks = await api.get("/gb26875/duty-checks")
            assert "x-firewatch-incomplete" not in checks.headers
            (check,) = checks.json()
            assert (check["device_id"], check["operator"]) == (ud, 3)
        # A vendor's own type, kept in the transmission device's event log with its frame.
        vendor = await device.upload(205, [UnknownObjects(205, 1, bytes(13))])
        assert vendor.command == Command.CONFIRM
        # The same upload again (a device resends what it believes unconfirmed), then another
        # point's fault: once that is raised, the resend before it has been dealt with too.
        assert (await device.upload(2, [fire_1])).command == Command.CONFIRM
        assert (await device.upload(2, [point(SMOKE_3, NORMAL | FAULT)])).command == Command.CONFIRM
        await eventually(lambda: open_alarms(state, smoke_3), timeout=20, what=f"{smoke_3}'s fault alarm")
        assert fire_raises(state) == {(smoke_1, "device.alarm"): 1}
        # Event logs are written after the alarms, in stream order: once smoke_3's fault is in its
        # log, everything before it is in theirs. The point's: its fire once (the resend is the
        # same entry), with the frame.
        await eventually(lambda: event_log(state, smoke_3), timeout=20, what=f"{smoke_3}'s event log")
        assert [(k, bool(f)) for k, _, f in event_log(state, smoke_1)] == [("alarm", True)]
        (kept,) = [(k, c, f) for k, c, f in event_log(state, f"{site}-ud") if k == "upload"]
        assert kept[1] == 205
        assert kept[2]  # with the frame's bytes

        # The engine unreachable: heartbeats are the listener's own to answer, but a fire upload
        # is confirmed nothing (the device's wait for its confirm runs out) and is not lost.
        engine.kill(0)
        assert (await device.heartbeat()).command == Command.CONFIRM
        # w_a asks its own connection without the engine; w_b, cut off from it, says so: 503.
        local = await query(api_a, ud)
        assert local is not None
        assert local["frame"]["type_id"] == 21
        cut_off = await eventually(partial(refused, api_b, ud), timeout=20, what="w_b's 503")
        assert cut_off.status_code == 503, cut_off.text
        data, serial = device.frame(Command.SEND, encode_adu(2, [point(SMOKE_2, NORMAL | FIRE)]))
        device.answer_timeout_s = 3.0
        with pytest.raises(TimeoutError):
            await device.exchange(data, serial)
        assert confirms_of(device, serial) == []
        await asyncio.to_thread(engine.restart, 0)
        await eventually(lambda: confirms_of(device, serial), timeout=30, what="the confirm after the outage")
        # Stored once, though published again and again while the engine did not answer.
        assert (await stream.events(site, smoke_2)).count("alarm") == 1
        await eventually(
            lambda: (smoke_2, "device.alarm") in fire_raises(state),
            timeout=30,
            what=f"{smoke_2}'s fire alarm",
        )
        # Each point's fire raised once; two detectors of one zone on fire confirm the zone's fire
        # (火警确认, on the alarm of the first), as on a single node: the site is one worker's.
        assert fire_raises(state) == {
            (smoke_1, "device.alarm"): 1,
            (smoke_2, "device.alarm"): 1,
            (smoke_1, "zone.fire_confirmed"): 1,
        }
        assert len(confirms_of(device, serial)) == 1
        # w_a's subject is held again on the engine it reconnected to: asked through w_b again.
        answer = await eventually(partial(query, api_b, ud), timeout=20, what=f"{ud}'s answer via w_b again")
        assert answer["frame"]["source"] == 881
        for name, proc in workers.items():
            assert proc.alive, f"{name} died:\n{proc.tail()}"
    except BaseException:
        for name, proc in workers.items():
            print(f"--- {name}\n{proc.tail(60)}")
        raise
    finally:
        for client in apis:
            await client.aclose()
        if device is not None:
            await device.close()
        for proc in workers.values():
            with contextlib.suppress(Exception):
                await asyncio.to_thread(proc.stop)
        state.close()


async def test_the_forwarder_keeps_order_bounds_its_backlog_and_confirms_only_what_the_engine_stored(
    engine: NatsCluster,
) -> None:
    await prepare_stream(engine.client_urls, PARTITIONS, replicas=1, max_age_s=3600.0)
    nc = await nats.connect(servers=engine.client_urls)
    js: list[nats.js.JetStreamContext] = []  # empty: not connected to the engine yet
    confirmed: list[list[bytes]] = []

    def confirm(messages: Iterable[Message]) -> int:
        confirmed.append([m.payload for m in messages])
        return 1

    inbox = EngineInbox(lambda: js[0] if js else None, confirm, name="w-test", backlog_max=3)
    topic = "fw/v1/h00/h00-smk-1/event"

    def upload(*payloads: bytes) -> None:
        inbox.put_acknowledged([Message(topic, p, time.time(), 1, 1, -1) for p in payloads])

    try:
        # Held, unconfirmed, while the engine cannot be reached; beyond the backlog, refused.
        upload(b"1", b"2")
        upload(b"3")
        upload(b"4")
        await eventually(lambda: inbox.failures >= 2, timeout=10, what="the forwarder retrying")
        assert confirmed == []
        assert (len(inbox), inbox.refused) == (3, 1)
        # Reached: stored in the order handed over, each upload confirmed once stored.
        js.append(nc.jetstream())
        await eventually(lambda: len(confirmed) == 2, timeout=10, what="both uploads confirmed")
        assert confirmed == [[b"1", b"2"], [b"3"]]
        stored = await Stream(engine).payloads(
            f"fwp.{partition_of('h00', PARTITIONS)}.fw.v1.h00.h00-smk-1.event"
        )
        assert stored == [b"1", b"2", b"3"]
        # Stopping: what is not yet forwarded is left unconfirmed (the device sends it again).
        js.clear()
        upload(b"5")
        assert await inbox.close() == 1
        upload(b"6")
        assert inbox.refused == 2
        assert len(confirmed) == 2
    finally:
        await inbox.close()
        await nc.close()


async def signed_in(worker: WorkerProcess, password: str) -> httpx.AsyncClient:
    """A client of the worker's API, signed in as the first admin (queries can take 12 s)."""
    api = httpx.AsyncClient(base_url=f"http://127.0.0.1:{worker.port}/api/v1", timeout=30)
    login = await api.post("/auth/login", json={"username": "admin", "password": password})
    api.headers["Authorization"] = f"Bearer {login.raise_for_status().json()['token']}"
    return api


async def query(api: httpx.AsyncClient, device_id: str) -> dict[str, Any] | None:
    """The device's answer to a read of its state (type 81); None while no worker can ask it yet
    (409: its worker has not subscribed to its subject yet; 503: this worker is reconnecting)."""
    r = await api.post(f"/gb26875/devices/{device_id}/query", json={"type": 81})
    if r.status_code in (409, 503):
        return None
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


async def refused(api: httpx.AsyncClient, device_id: str) -> httpx.Response | None:
    """The query's response once it is 503 (the worker knows it is cut off from the engine)."""
    r = await api.post(f"/gb26875/devices/{device_id}/query", json={"type": 81})
    return r if r.status_code == 503 else None


def duty_answers(state: ClusterState) -> list[tuple[str, int]]:
    """The duty checks answered, from the audit log: (transmission device, operator)."""
    with state.db.connect() as c:
        rows = c.execute(
            text(
                "SELECT subject, (detail->>'operator')::int FROM audit "
                "WHERE action = 'duty_check_answered' ORDER BY id"
            )
        ).all()
    return [(str(subject).rsplit("/", 1)[1], int(operator)) for subject, operator in rows]


READ_STATE = bytes([81, 1, 0])  # type 81, one object: the device's state, answered with type 21


async def answered(relay: DeviceRelay) -> Frame | None:
    """Device 881's answer to a read of its state asked through `relay`; None while it is
    connected to no worker (or its worker has not subscribed to its subject yet)."""
    try:
        return await relay.ask(881, Command.REQUEST, READ_STATE)
    except LookupError:
        return None


def given(nc: Client) -> Client:
    return nc


async def test_a_question_goes_to_the_worker_holding_the_device_and_follows_it_when_it_moves(
    engine: NatsCluster,
) -> None:
    index = DeviceIndex.build(registry(("h00",)), load_profiles())
    ncs: list[Client] = []
    listeners: list[Gb26875Listener] = []
    relays: list[DeviceRelay] = []
    device = TransmissionDevice(address=881, host="127.0.0.1", port=0, answer_timeout_s=10.0)
    try:
        for _ in range(2):  # two workers: each its listener and its relay on the one engine
            ncs.append(nc := await nats.connect(servers=engine.client_urls))
            listener = Gb26875Listener(
                Gb26875Settings(enabled=True, port=0),
                queue=BoundedQueue(1000),
                index=lambda: index,
                prefix="fw/v1",
            )
            await listener.start()
            listeners.append(listener)
            relays.append(relay := DeviceRelay(listener, partial(given, nc), peers=lambda: 1))
            await relay.start()
        (a, b), (on_a, on_b) = relays, listeners
        device.port = on_a.port
        await device.connect()
        await device.heartbeat()  # heard on a

        # Asked through b, sent by a: the device's own answer comes back.
        answer = await eventually(partial(answered, b), timeout=10, what="the answer through b")
        assert (answer.command, answer.source, answer.adu[0]) == (Command.RESPONSE, 881, 21)
        assert (a.served, b.served) == (1, 0)
        # A duty check through b is kept by a, where the duty person's answer will arrive.
        record = await b.duty_check(881, "h00-ud", 5)
        assert (record.device_id, record.timeout_minutes, record.confirmed) == ("h00-ud", 5, True)
        assert ([r.device_id for r in on_a.duty_checks], list(on_b.duty_checks)) == (["h00-ud"], [])
        # Surveyed from b: the device on a's connection and a's duty check; from a: nothing held
        # elsewhere. Neither answers its own survey.
        seen = await b.survey()
        held = on_a.connection_of(881)
        assert held is not None
        assert seen.connections == {881: HeldConnection(881, held.peer, held.connected_at, held.inspected_at)}
        assert ([r.device_id for r in seen.duty_checks], seen.unanswered) == (["h00-ud"], 0)
        assert await a.survey() == Survey({}, [], 0)
        # What is not a worker's question is refused with the reason, and nothing reaches the device.
        sent = len(device.received)
        for body, why in (
            (b"not json", "not JSON"),
            (b"[4]", "not a JSON object"),
            (orjson.dumps({"op": "ask", "command": 2, "adu": ""}), "not a request (4) or control"),
            (orjson.dumps({"op": "ask", "command": 4, "adu": "zz"}), "non-hexadecimal"),
            (orjson.dumps({"op": "duty", "device": "h00-ud", "minutes": 0}), "minutes is not 1-255"),
            (orjson.dumps({"op": "reset"}), "neither ask nor duty"),
        ):
            reply = orjson.loads((await ncs[1].request(subject_of(881), body, timeout=5)).data)
            assert reply["error"] == "refused"
            assert why in reply["detail"]
        assert (a.refused, len(device.received)) == (6, sent)

        # The device reconnects to b: asked through a, it is b that sends the question now.
        await device.close()
        await eventually(lambda: not on_a.held(), timeout=10, what="a's connection closed")
        device.port = on_b.port
        await device.connect()
        await device.heartbeat()
        answer = await eventually(partial(answered, a), timeout=10, what="the answer through a")
        assert answer.source == 881
        assert (a.served, b.served) == (2, 1)  # the query and the duty check before; this one
        # Connected to no worker: LookupError (the API's 409) as soon as b has let its subject go.
        await device.close()
        await eventually(lambda: not on_b.held(), timeout=10, what="b's connection closed")
        await eventually(lambda: not b.subscribed(), timeout=10, what="b letting go of the subject")
        with pytest.raises(LookupError):
            await a.ask(881, Command.REQUEST, READ_STATE)
        # A worker the last heartbeat saw that does not answer a survey is counted, after 1 s: a
        # third relay expects three others, and only a and b answer.
        third = DeviceRelay(on_a, partial(given, ncs[0]), peers=lambda: 3)
        since = time.monotonic()
        assert (await third.survey()).unanswered == 1
        assert time.monotonic() - since >= 0.9
        # Cut off from the engine: ConnectionError (the API's 503), not a wait.
        await ncs[0].close()
        with pytest.raises(ConnectionError):
            await a.ask(881, Command.REQUEST, READ_STATE)
        with pytest.raises(ConnectionError):
            await a.survey()
    finally:
        await device.close()
        for relay in relays:
            await relay.stop()
        for listener in listeners:
            await listener.stop()
        for nc in ncs:
            await nc.close()


def test_a_survey_answer_too_large_for_one_message_goes_in_parts_that_read_back_whole() -> None:
    held = [[address, f"127.0.0.1:{40000 + address}", 1.7e9 + address, None] for address in range(2000)]
    duty = [dataclasses.asdict(DutyCheckRecord(7, "h00-ud", 1.7e9, 5, True, 1.7e9 + 60, 3))]
    parts = survey_parts("w1", held, duty, limit=16_384)
    assert len(parts) > 1
    assert all(len(part) <= 16_384 for part in parts)
    read = [parse_survey_part(part) for part in parts]
    assert {(w, n) for w, _, n, _, _ in read} == {("w1", len(parts))}
    assert sorted(i for _, i, _, _, _ in read) == list(range(len(parts)))
    assert [c.address for *_, conns, _ in read for c in conns] == list(range(2000))
    assert [r for *_, checks in read for r in checks] == [DutyCheckRecord(**duty[0])]
    assert survey_parts("w1", held[:3], duty, limit=1 << 20) == [
        orjson.dumps({"worker": "w1", "part": 0, "parts": 1, "devices": held[:3], "duty_checks": duty})
    ]


ONE_PART = b'{"worker": "w", "part": 0, "parts": 1, '


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"<html>", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"part": 0, "parts": 1, "devices": [], "duty_checks": []}', "no worker or part"),
        (b'{"worker": "w", "part": 1, "parts": 1, "devices": [], "duty_checks": []}', "not a part of one"),
        (
            b'{"worker": "w", "part": 0, "parts": 1, "devices": [[1, "p", true, null]], "duty_checks": []}',
            "bad device",
        ),
        (b'{"worker": "w", "part": 0, "parts": 1, "devices": [[1, "p"]], "duty_checks": []}', "bad device"),
        (b'{"worker": "w", "part": 0, "parts": 1, "devices": [], "duty_checks": [{}]}', "not a record"),
    ],
    ids=["not-json", "not-object", "no-worker", "part-beyond", "bool-time", "short-row", "bad-check"],
)
def test_a_survey_answer_that_is_not_one_is_refused_with_the_reason(body: bytes, why: str) -> None:
    with pytest.raises(RelayError, match=why):
        parse_survey_part(body)


def fire_raises(state: ClusterState) -> dict[tuple[str, str], int]:
    """How many times each fire alarm was raised, by (device, alarm type), from the alarm event log."""
    with state.db.connect() as c:
        rows = c.execute(
            text(
                "SELECT a.device_id, a.alarm_type, count(*) FROM alarm_events e JOIN alarms a "
                "ON a.id = e.alarm_id WHERE a.category = 'fire' AND e.action = 'raised' "
                "GROUP BY a.device_id, a.alarm_type"
            )
        ).all()
    return {(str(d), str(t)): int(n) for d, t, n in rows}


def open_alarms(state: ClusterState, device_id: str) -> list[str]:
    with state.db.connect() as c:
        rows = c.execute(
            text("SELECT alarm_type FROM alarms WHERE device_id = :d AND state <> 'closed'"), {"d": device_id}
        ).all()
    return [str(r[0]) for r in rows]


def event_log(state: ClusterState, device_id: str) -> list[tuple[str, int | None, str | None]]:
    """A device's event log in PostgreSQL: (kind, code, frame) oldest first."""
    with state.db.connect() as c:
        rows = c.execute(
            text("SELECT kind, code_key, frame FROM device_event_log WHERE device_id = :d ORDER BY ts"),
            {"d": device_id},
        ).all()
    return [(str(k), None if c == -1 else int(c), f) for k, c, f in rows]
