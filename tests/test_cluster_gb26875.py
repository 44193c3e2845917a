"""GB/T 26875.3 through the listener, clustered (docs/scale.md, docs/gb26875.md): a transmission
device connected to one worker reports for a site another worker owns. Its uploads go through the
engine to the owner; each is confirmed to the device only once the engine has stored it, and not
at all while the engine is unreachable; nothing is lost, and a fire is raised once.

The forwarder itself (firewatch/cluster/forward.py) against the same engine: in order, bounded,
and confirming only what the stream stored.

Real components: a one-node engine (nats-server with JetStream, the site-partitioning mapping; one
node is enough here, node failover is tests/test_cluster.py's), a private PostgreSQL database, two
`firewatch serve` workers each with its GB/T 26875.3 listener, and a simulated transmission device
over TCP on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import nats
import orjson
import pytest
from sqlalchemy import text

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
from firewatch.broker import free_port
from firewatch.cluster.engine import STREAM, NatsCluster, partition_of, prepare_stream
from firewatch.cluster.forward import EngineInbox
from firewatch.cluster.local import ClusterState, WorkerProcess, start_worker
from ingest.envelope import Message
from ingest.gb26875.codes import Command
from ingest.gb26875.frame import Frame
from ingest.gb26875.objects import ComponentState, UnknownObjects, encode_adu
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
    workers: dict[str, WorkerProcess] = {}
    state = ClusterState(postgres_url)
    device: TransmissionDevice | None = None
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
                admin_password=f"gb-cluster-{uuid.uuid4().hex}",
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
        reply = await device.upload(2, [point(SMOKE_1, NORMAL | FIRE)])
        assert reply.command == Command.CONFIRM
        assert "alarm" in await stream.events(site, smoke_1)
        # A vendor's own type, kept in the transmission device's event log with its frame.
        vendor = await device.upload(205, [UnknownObjects(205, 1, bytes(13))])
        assert vendor.command == Command.CONFIRM
        # The same upload again (a device resends what it believes unconfirmed), then another
        # point's fault: once that is raised, the resend before it has been dealt with too.
        assert (await device.upload(2, [point(SMOKE_1, NORMAL | FIRE)])).command == Command.CONFIRM
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
        for name, proc in workers.items():
            assert proc.alive, f"{name} died:\n{proc.tail()}"
    except BaseException:
        for name, proc in workers.items():
            print(f"--- {name}\n{proc.tail(60)}")
        raise
    finally:
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
