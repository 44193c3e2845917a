"""Faults around the service, on real components: the promise is that every fire reaches the control
room at once and is recorded exactly once, and no reading is lost or stored twice (issue 18).

Each case counts what was sent, stored, lost and duplicated, and the fire alarms raised, and asserts
them. The state store is a private PostgreSQL cluster of the test's own, stopped (as a crash would)
or frozen (SIGSTOP: a store that hangs instead of refusing) in the middle of a fire; the broker is
a private mosquitto.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select
from sqlalchemy.exc import ProgrammingError

from alarms.model import Transition
from api.app import create_app
from api.live import Subscription
from core.registry import Device, Registry
from core.settings import IngestSettings, MqttSettings, Settings
from firewatch.broker import Mosquitto, free_port
from firewatch.service import Service
from storage.db import open_store
from storage.models import AlarmEventRow, AlarmRow, RejectRow
from storage.telemetry import TelemetryStore
from tests.conftest import PROFILES, make_accounts, sign_in, small_registry
from tests.mqtt_helpers import Publisher, reading
from tests.postgres import PrivatePostgres
from tests.waiting import eventually

pytestmark = pytest.mark.integration

ZONES, PER_ZONE = 10, 6  # 60 smoke detectors, all of which go to fire during the outage


@pytest.fixture
def own_postgres() -> Iterator[PrivatePostgres]:
    """A cluster of this test's own: it is stopped and frozen, which no other test may see."""
    cluster = PrivatePostgres().start()
    try:
        yield cluster
    finally:
        try:
            thaw(cluster)  # never leave it frozen
        finally:
            cluster.close()


def _cluster_pids(cluster: PrivatePostgres) -> list[int]:
    """The postmaster and every process it started (backends, checkpointer, ...)."""
    pidfile = cluster.data / "postmaster.pid"
    if not pidfile.exists():
        return []
    master = int(pidfile.read_text().split()[0])
    pids = [master]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == master:
                pids.append(int(entry.name))
    return pids


def freeze(cluster: PrivatePostgres) -> None:
    for pid in _cluster_pids(cluster):
        os.kill(pid, signal.SIGSTOP)


def thaw(cluster: PrivatePostgres) -> None:
    for pid in _cluster_pids(cluster):
        with contextlib.suppress(ProcessLookupError):  # a backend may have exited since it was listed
            os.kill(pid, signal.SIGCONT)


class AlarmTopic:
    """What the service publishes on the MQTT alarm topic, as a subscriber sees it."""

    def __init__(self, broker: Mosquitto) -> None:
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"topic-{uuid.uuid4().hex[:8]}")
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe("fw/v1/+/alarms", qos=1)
        self.client.loop_start()

    def _on_message(self, _client: Any, _userdata: Any, msg: Any) -> None:
        with self._lock:
            self.messages.append(orjson.loads(msg.payload))

    def fires(self, *, recorded: bool) -> set[str]:
        with self._lock:
            return {
                m["after"]["device_id"]
                for m in self.messages
                if m.get("recorded", True) is recorded
                and m["after"]["alarm_type"] == "smoke.alarm"
                and m["action"] == "raised"
            }

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Live:
    """A live stream subscriber inside the service's process (what the console's WebSocket gets)."""

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub
        self.seen: list[Transition] = []
        self._task = asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        while True:
            t = await self.sub.get(1.0)
            if isinstance(t, Transition):
                self.seen.append(t)

    def fires(self, *, recorded: bool) -> dict[str, float]:
        """Device -> when its fire alarm arrived on the stream (the transition's own time)."""
        return {
            str(t.after["device_id"]): t.ts
            for t in self.seen
            if t.recorded is recorded
            and t.after["alarm_type"] == "smoke.alarm"
            and t.action.value == "raised"
        }

    async def close(self) -> None:
        self._task.cancel()


class Fleet:
    """Smoke detectors publishing QoS 1 readings, counted: what was sent is what must be stored."""

    def __init__(self, broker: Mosquitto, devices: list[str]) -> None:
        self.pub = Publisher(broker.host, broker.port)
        self.devices = devices
        self.seq: defaultdict[str, int] = defaultdict(int)
        self.sent = 0

    def send(self, value: float, devices: list[str] | None = None) -> None:
        items = []
        for dev in devices or self.devices:
            self.seq[dev] += 1
            items.append((f"fw/v1/s1/{dev}/telemetry", orjson.dumps(reading(self.seq[dev], value))))
        self.sent += self.pub.send_many(items)

    def close(self) -> None:
        self.pub.close()


@pytest.fixture
async def on_postgres(
    mosquitto: Mosquitto, own_postgres: PrivatePostgres, tmp_path: Path
) -> AsyncIterator[tuple[Service, PrivatePostgres]]:
    settings = Settings(
        data_dir=tmp_path,
        database_url=own_postgres.url(own_postgres.create_database()),
        mqtt=MqttSettings(url=mosquitto.url, client_id=f"fw-fault-{uuid.uuid4().hex[:8]}"),
        ingest=IngestSettings(liveness_check_s=0.2, batch_wait_ms=2, alarm_write_timeout_s=1.0),
    )
    svc = Service(settings, registry=small_registry(ZONES, PER_ZONE), profiles=PROFILES)
    await svc.start()
    await asyncio.wait_for(svc.source.connected.wait(), 10)
    try:
        yield svc, own_postgres
    finally:
        thaw(own_postgres)
        await svc.stop()


def fire_alarms(svc: Service) -> dict[str, int]:
    """Device -> how many times its fire alarm was raised, from the state store's event log."""
    with svc.sessions() as s:
        rows = s.execute(
            select(AlarmRow.device_id, func.count())
            .join(AlarmEventRow, AlarmEventRow.alarm_id == AlarmRow.id)
            .where(AlarmRow.alarm_type == "smoke.alarm", AlarmEventRow.action == "raised")
            .group_by(AlarmRow.device_id)
        )
        return {d: int(n) for d, n in rows}


def samples_stored(svc: Service) -> int:
    return svc.telemetry.count()


@pytest.mark.parametrize("fault", ["stopped", "frozen"])
async def test_a_fire_while_the_state_store_is_down_reaches_the_control_room_at_once_and_is_recorded_once(
    on_postgres: tuple[Service, PrivatePostgres], mosquitto: Mosquitto, fault: str
) -> None:
    svc, pg = on_postgres
    smoke = [d for d in svc.registry.devices if d.startswith("smk-")]
    live = Live(svc.live.subscribe())
    topic = AlarmTopic(mosquitto)
    fleet = Fleet(mosquitto, smoke)
    ctx = svc.app_context()
    ctx.start = ctx.stop = None  # the fixture owns the service's lifecycle
    ctx.accounts = make_accounts(svc.sessions)
    app = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(ctx)),
        base_url="http://fw",
        headers=sign_in(ctx.accounts, "duty-operator", "operator"),
    )
    try:
        fleet.send(0.02)  # all quiet, and stored
        await eventually(lambda: samples_stored(svc) == 2 * fleet.sent, timeout=20)
        assert (await app.get("/api/v1/alarms/unrecorded")).json() == {"items": [], "storage_failing": False}

        if fault == "stopped":
            pg.halt()
        else:
            freeze(pg)
        started = time.time()
        fleet.send(0.31)  # every detector in the building sees smoke

        # At once, unrecorded: on the live stream (the console) and on the MQTT alarm topic.
        await eventually(lambda: set(live.fires(recorded=False)) == set(smoke), timeout=20)
        await eventually(lambda: topic.fires(recorded=False) == set(smoke), timeout=20)
        shown_within = max(live.fires(recorded=False).values()) - started
        ready = await asyncio.to_thread(svc.readiness)
        assert "ingest.storage_failing" in ready
        if fault == "stopped":  # (a frozen store hangs a query until it thaws: not asked then)
            # The API says the store is unavailable; it never answers 500.
            answer = await app.get("/api/v1/alarms")
            assert answer.status_code == 503, answer.text
            # ... while the operator already signed in still gets the board's unrecorded alarms.
            unrecorded = (await app.get("/api/v1/alarms/unrecorded")).json()
            assert unrecorded["storage_failing"] is True
            assert {a["device_id"] for a in unrecorded["items"] if a["alarm_type"] == "smoke.alarm"} == set(
                smoke
            )

        # Ingest does not hold the broker's messages hostage: the batches are acknowledged, their
        # alarms journaled, while the store is still down.
        fleet.send(0.35)
        await eventually(lambda: samples_stored(svc) == 2 * fleet.sent, timeout=20)
        await eventually(lambda: svc.pipeline.backlog() == 0, timeout=20)
        await asyncio.sleep(3)  # the outage goes on a while

        if fault == "stopped":
            pg.resume()
        else:
            thaw(pg)
        back = time.time()
        # Recorded once each, in the store and on the streams; nothing left waiting.
        await eventually(lambda: fire_alarms(svc) == dict.fromkeys(smoke, 1), timeout=30)
        recorded_within = time.time() - back
        await eventually(lambda: set(live.fires(recorded=True)) == set(smoke), timeout=20)
        await eventually(lambda: svc.telemetry.journal_size()[0] == 0, timeout=20)
        await eventually(lambda: "ingest.storage_failing" not in svc.readiness(), timeout=20)
        assert len(svc.pipeline.unrecorded) == 0
        # Every reading sent is stored once: none lost, none twice.
        assert samples_stored(svc) == 2 * fleet.sent

        # A fault alarm told the control room about the outage, and was cleared after it.
        def outage_alarm() -> list[str]:
            with svc.sessions() as s:
                rows = s.scalars(
                    select(AlarmRow).where(AlarmRow.alarm_type == "ingest.storage_failing")
                ).all()
                return [a.state for a in rows]

        await eventually(lambda: outage_alarm() == ["cleared_unacknowledged"], timeout=10)
        print(
            f"{fault}: {len(smoke)} fire alarms shown unrecorded within {shown_within:.2f} s, recorded "
            f"{recorded_within:.2f} s after the store came back; {fleet.sent} readings sent, "
            f"{samples_stored(svc) // 2} stored"
        )
    finally:
        await live.close()
        topic.close()
        fleet.close()
        await app.aclose()


async def test_poison_and_clock_jumps_mixed_into_load_lose_no_reading_and_deafen_no_detector(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        mqtt=MqttSettings(url=mosquitto.url, client_id=f"fw-poison-{uuid.uuid4().hex[:8]}"),
        ingest=IngestSettings(liveness_check_s=0.2, batch_wait_ms=2),
    )
    svc = Service(settings, registry=small_registry(ZONES, PER_ZONE), profiles=PROFILES)
    await svc.start()
    await asyncio.wait_for(svc.source.connected.wait(), 10)
    smoke = [d for d in svc.registry.devices if d.startswith("smk-")]
    fleet = Fleet(mosquitto, smoke)
    now = time.time()
    hostile: list[tuple[str, bytes]] = [
        ("fw/v1/s1/smk-1-1/telemetry", orjson.dumps({"ts": now, "seq": 2**63, "v": {"smoke": 0.02}})),
        ("fw/v1/s1/smk-1-2/telemetry", orjson.dumps({"ts": 0, "seq": 1, "v": {"smoke": 0.02}})),
        ("fw/v1/s1/smk-1-3/telemetry", orjson.dumps({"ts": -1e300, "seq": 1, "v": {"smoke": 0.02}})),
        ("fw/v1/s1/smk-1-4/telemetry", bytes(range(256))),
        ("fw/v1/s1/smk-1-5/telemetry", b"[" * 5000),
        ("fw/v1/s1/" + "x" * 5000 + "/telemetry", b"{}"),
    ]
    try:
        for rnd in range(5):
            fleet.send(0.02)
            fleet.pub.send_many(hostile)
            if rnd == 1:
                # smk-2-1 stamps one reading 290 s ahead, with a jump of 1,000 in its seq; its next
                # readings carry on from where it was.
                ahead = reading(fleet.seq["smk-2-1"] + 1000, 0.02, now + 290)
                fleet.pub.send_many([("fw/v1/s1/smk-2-1/telemetry", orjson.dumps(ahead))])
                fleet.sent += 1
        # smk-2-2 reboots with its clock a day behind and its counter back at 1.
        rebooted = [reading(i, 0.02, now - 86_400 + i) for i in (1, 2, 3)]
        fleet.pub.send_many([("fw/v1/s1/smk-2-2/telemetry", orjson.dumps(r)) for r in rebooted])
        fleet.sent += 3
        fleet.seq["smk-2-2"] = 3
        # A power cut resets smk-3-1's clock to 1970: its first reading is rejected, then its clock is
        # known to be wrong and it is heard, stamped with the receipt time.
        reset = [reading(fleet.seq["smk-3-1"] + i, 0.02, 1.0 + i) for i in (1, 2, 3)]
        fleet.pub.send_many([("fw/v1/s1/smk-3-1/telemetry", orjson.dumps(r)) for r in reset])
        fleet.sent += 2
        fleet.seq["smk-3-1"] += 3
        fleet.send(0.31, [d for d in smoke if d != "smk-3-1"])  # a fire everywhere, odd clocks included
        fleet.seq["smk-3-1"] += 1
        burning = reading(fleet.seq["smk-3-1"], 0.31, 5.0)
        fleet.pub.send_many([("fw/v1/s1/smk-3-1/telemetry", orjson.dumps(burning))])
        fleet.sent += 1

        await eventually(lambda: set(fire_alarms(svc)) == set(smoke), timeout=30)
        assert fire_alarms(svc) == dict.fromkeys(smoke, 1)
        await eventually(lambda: samples_stored(svc) == 2 * fleet.sent, timeout=30)

        def rejects() -> Counter[str]:
            with svc.sessions() as s:
                return Counter(r for (r,) in s.execute(select(RejectRow.reason)))

        await eventually(lambda: sum(rejects().values()) == 5 * len(hostile) + 1, timeout=20)
        assert rejects() == {
            "bad_payload": 5,
            "bad_timestamp": 11,
            "bad_json": 10,
            "unknown_device": 5,
        }
        with svc.sessions() as s:
            clock = s.scalars(
                select(AlarmRow.device_id).where(AlarmRow.alarm_type == "device.clock_wrong")
            ).all()
        assert clock == ["smk-3-1"]
        ready = await asyncio.to_thread(svc.readiness)
        assert all(v == "ok" for k, v in ready.items()), ready
    finally:
        fleet.close()
        await svc.stop()


async def test_a_message_that_breaks_detection_is_rejected_alone_and_the_fire_beside_it_alarms(
    mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug no input check foresaw: any batch holding one particular reading makes the detectors
    raise. The batch is tried twice, then halved until that message is alone; it becomes a reject
    with its bytes, and everything else in the batch goes on."""
    settings = Settings(
        data_dir=tmp_path,
        mqtt=MqttSettings(url=mosquitto.url, client_id=f"fw-bug-{uuid.uuid4().hex[:8]}"),
        ingest=IngestSettings(liveness_check_s=0.2, batch_wait_ms=50),
    )
    svc = Service(settings, registry=small_registry(ZONES, PER_ZONE), profiles=PROFILES)
    process = svc.engine.process

    def buggy(batch: Any) -> Any:
        if (batch.sample_value == 0.0777).any():
            raise ZeroDivisionError("a detector bug")
        return process(batch)

    monkeypatch.setattr(svc.engine, "process", buggy)
    await svc.start()
    await asyncio.wait_for(svc.source.connected.wait(), 10)
    smoke = [d for d in svc.registry.devices if d.startswith("smk-")]
    fleet = Fleet(mosquitto, smoke)
    try:
        fleet.send(0.02)
        poison = orjson.dumps(reading(99, 0.0777))
        fleet.pub.send_many([("fw/v1/s1/smk-1-1/telemetry", poison)])
        fleet.send(0.31)
        await eventually(lambda: set(fire_alarms(svc)) == set(smoke), timeout=30)
        assert fire_alarms(svc) == dict.fromkeys(smoke, 1)
        await eventually(lambda: samples_stored(svc) == 2 * fleet.sent, timeout=20)
        with svc.sessions() as s:
            kept = s.scalars(select(RejectRow).where(RejectRow.reason == "unprocessable")).all()
        assert [(r.topic, r.payload) for r in kept] == [("fw/v1/s1/smk-1-1/telemetry", poison)]
        assert "ZeroDivisionError" in kept[0].detail
        assert svc.pipeline.isolated == 1
    finally:
        fleet.close()
        await svc.stop()


def _hospital(devices: int) -> Registry:
    """`devices` smoke detectors of the shipped photoelectric profile, ten to a zone."""
    base = small_registry(zones=max(1, devices // 10), smoke_per_zone=10)
    specs = [
        Device(id=d.id, profile="smoke-photoelectric", place=d.place, responsible=d.responsible)
        for d in base.specs.values()
        if d.id.startswith("smk-")
    ]
    return Registry(base.sites, specs[:devices])


class ServeProcess:
    """`firewatch serve` as an operator runs it, in a process of its own that the test may kill."""

    def __init__(self, broker: Mosquitto, data: Path, registry: Path) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            "FIREWATCH_MQTT__URL": broker.url,
            "FIREWATCH_MQTT__CLIENT_ID": "fw-kill-test",
            "FIREWATCH_DATA_DIR": str(data),
            "FIREWATCH_REGISTRY": str(registry),
            "FIREWATCH_API__PORT": str(self.port),
        }
        self.log = data / "serve.log"
        data.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "firewatch.cli", "serve"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def ready(self) -> None:
        async def up() -> bool:
            try:
                async with httpx.AsyncClient() as client:
                    return (await client.get(f"http://127.0.0.1:{self.port}/readyz")).status_code == 200
            except httpx.HTTPError:
                return False

        await eventually(up, timeout=60, what=f"firewatch serve ready (log: {self.log})")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL: no clean-up of any kind
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


async def test_the_service_killed_under_load_loses_no_reading_stores_none_twice_and_raises_each_fire_once(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    registry = _hospital(60)
    path = tmp_path / "registry.yaml"
    path.write_text(registry.to_yaml(), encoding="utf-8")
    serve = ServeProcess(mosquitto, tmp_path / "data", path)
    devices = list(registry.devices)
    fleet = Fleet(mosquitto, devices)
    rounds, kills = 90, {30, 60}
    burning: set[str] = set()
    serve.start()
    try:
        await serve.ready()
        for rnd in range(rounds):
            if rnd in kills:
                serve.kill()  # mid-stream: batches in flight, unacknowledged messages at the broker
                serve.start()
            # One detector after another goes to fire, some before, some across each kill.
            if rnd % 2 == 0 and rnd // 2 < len(devices):
                burning.add(devices[rnd // 2])
            await asyncio.to_thread(fleet.send, 0.02, [d for d in devices if d not in burning])
            if burning:
                await asyncio.to_thread(fleet.send, 0.31, sorted(burning))
        await serve.ready()

        telemetry_path = tmp_path / "data" / "telemetry.sqlite"

        def stored() -> int:
            store = TelemetryStore(telemetry_path)
            try:
                return store.count()
            finally:
                store.close()

        await eventually(lambda: stored() >= 2 * fleet.sent, timeout=60, what="every reading stored")
        await asyncio.sleep(1)  # anything stored twice would show up now
        serve.stop()
        store = TelemetryStore(telemetry_path)
        try:
            assert store.count() == 2 * fleet.sent  # none lost, none twice
            for dev in devices[:5]:
                ts = store.history(dev, "smoke", 0, 2e9).ts
                assert len(ts) == fleet.seq[dev] == len(set(ts.tolist()))
        finally:
            store.close()
        _, sessions = open_store(f"sqlite:///{tmp_path / 'data' / 'firewatch.sqlite'}")
        with sessions() as s:
            raised = Counter(
                d
                for (d,) in s.execute(
                    select(AlarmRow.device_id)
                    .join(AlarmEventRow, AlarmEventRow.alarm_id == AlarmRow.id)
                    .where(AlarmRow.alarm_type == "smoke.alarm", AlarmEventRow.action == "raised")
                )
            )
        assert raised == dict.fromkeys(sorted(burning), 1)
        print(
            f"killed twice under load: {fleet.sent} readings sent and stored once, {len(burning)} fires once"
        )
    finally:
        serve.stop()
        fleet.close()


async def test_a_service_started_while_the_state_store_is_down_detects_at_once_and_records_later(
    mosquitto: Mosquitto, own_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    url = own_postgres.url(own_postgres.create_database())
    own_postgres.halt()  # the store is down before the service starts (a restart mid-outage)
    settings = Settings(
        data_dir=tmp_path,
        database_url=url,
        mqtt=MqttSettings(url=mosquitto.url, client_id=f"fw-cold-{uuid.uuid4().hex[:8]}"),
        ingest=IngestSettings(liveness_check_s=0.2, batch_wait_ms=2),
    )
    svc = Service(settings, registry=small_registry(ZONES, PER_ZONE), profiles=PROFILES)
    await svc.start()
    await asyncio.wait_for(svc.source.connected.wait(), 10)
    smoke = [d for d in svc.registry.devices if d.startswith("smk-")]
    live = Live(svc.live.subscribe())
    fleet = Fleet(mosquitto, smoke)
    try:
        assert "ingest.storage_failing" in await asyncio.to_thread(svc.readiness)
        fleet.send(0.02)
        fleet.send(0.31)
        await eventually(lambda: set(live.fires(recorded=False)) == set(smoke), timeout=20)
        await eventually(lambda: samples_stored(svc) == 2 * fleet.sent, timeout=20)

        own_postgres.resume()

        def recorded() -> dict[str, int]:
            try:
                return fire_alarms(svc)
            except ProgrammingError:  # the service has not made its schema yet
                return {}

        await eventually(lambda: recorded() == dict.fromkeys(smoke, 1), timeout=30)
        await eventually(lambda: "ingest.storage_failing" not in svc.readiness(), timeout=20)
        assert svc.telemetry.journal_size()[0] == 0
        fleet.send(0.02)  # and from now on, straight to the store
        await eventually(lambda: samples_stored(svc) == 2 * fleet.sent, timeout=20)
        assert svc.pipeline.storage_failing_since is None
    finally:
        await live.close()
        fleet.close()
        await svc.stop()


async def test_a_failing_disk_a_stalled_ingest_and_a_lost_broker_make_the_service_unready_with_fault_alarms(
    mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        mqtt=MqttSettings(url=mosquitto.url, client_id=f"fw-ready-{uuid.uuid4().hex[:8]}"),
        ingest=IngestSettings(
            liveness_check_s=0.2,
            batch_wait_ms=2,
            unacked_max_age_s=1.0,
            stall_after_s=1.0,
            broker_down_after_s=1.0,
        ),
    )
    svc = Service(settings, registry=small_registry(ZONES, PER_ZONE), profiles=PROFILES)
    await svc.start()
    await asyncio.wait_for(svc.source.connected.wait(), 10)
    smoke = [d for d in svc.registry.devices if d.startswith("smk-")]
    fleet = Fleet(mosquitto, smoke)
    app = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(svc.app_context())), base_url="http://fw"
    )

    def faults() -> dict[str, str]:
        with svc.sessions() as s:
            rows = s.scalars(select(AlarmRow).where(AlarmRow.device_id == "service:ingest")).all()
            return {a.alarm_type: a.state for a in rows}

    try:
        write = svc.telemetry.write

        def disk_error(*_args: object, **_kwargs: object) -> None:
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(svc.telemetry, "write", disk_error)
        fleet.send(0.02)
        wanted = {"ingest.storage_failing", "ingest.stalled", "ingest.unacked_backlog"}
        await eventually(lambda: wanted <= set(svc.readiness()), timeout=20)
        ready = await app.get("/readyz")
        assert ready.status_code == 503
        assert "disk I/O error" in ready.json()["checks"]["ingest.storage_failing"]
        await eventually(lambda: {t for t, st in faults().items() if st == "active_unacknowledged"} >= wanted)

        monkeypatch.setattr(svc.telemetry, "write", write)  # the disk is back: everything is stored
        await eventually(lambda: samples_stored(svc) == 2 * fleet.sent, timeout=20)
        await eventually(lambda: all(v == "ok" for v in svc.readiness().values()))
        await eventually(lambda: all(st == "cleared_unacknowledged" for st in faults().values()))

        mosquitto.kill()  # the broker is gone
        await eventually(lambda: "ingest.broker_down" in svc.readiness(), timeout=20)
        await eventually(lambda: faults().get("ingest.broker_down") == "active_unacknowledged", timeout=10)
        assert (await app.get("/readyz")).json()["checks"]["broker"] == "not connected"
    finally:
        fleet.close()
        await app.aclose()
        await svc.stop()
