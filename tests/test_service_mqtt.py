"""The whole path against a real mosquitto: MQTT in, alarms and tickets out through the API."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import func, select

from api.app import create_app
from core.settings import IngestSettings, MqttSettings, Settings
from device_profiles.schema import Profile
from firewatch.broker import Mosquitto
from firewatch.service import Service
from storage.models import RejectRow, TicketRow
from tests.conftest import PROFILES, make_accounts, sign_in, small_registry
from tests.mqtt_helpers import Publisher, reading
from tests.waiting import eventually

pytestmark = pytest.mark.integration


def with_heartbeat(heartbeat_s: float) -> dict[str, Profile]:
    """Every profile with a short heartbeat (offline after 3 of them missed)."""
    return {
        pid: p.model_copy(
            update={
                "liveness": p.watch.model_copy(update={"heartbeat_s": heartbeat_s, "offline_after": 3})
            }
        )
        for pid, p in PROFILES.items()
    }


# A one-second heartbeat, so "silent device" tests take seconds, not minutes (3 s of silence is
# offline: wide enough that a loaded CI machine's stall of the publishing test is not mistaken for
# every other device's silence).
FAST_PROFILES = with_heartbeat(1.0)


def make_service(
    broker: Mosquitto, data: Path, client_id: str, profiles: dict[str, Profile] = PROFILES
) -> Service:
    settings = Settings(
        data_dir=data,
        mqtt=MqttSettings(url=broker.url, client_id=client_id),
        ingest=IngestSettings(liveness_check_s=0.1, batch_wait_ms=2),
    )
    return Service(settings, registry=small_registry(), profiles=profiles)


@pytest.fixture
async def service(mosquitto: Mosquitto, tmp_path: Path) -> AsyncIterator[Service]:
    svc = make_service(mosquitto, tmp_path, f"fw-test-{uuid.uuid4().hex[:8]}", FAST_PROFILES)
    await svc.start()
    await asyncio.wait_for(svc.source.connected.wait(), 10)
    yield svc
    await svc.stop()


@pytest.fixture
async def api(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    ctx = service.app_context()
    ctx.start = ctx.stop = None  # the fixture owns the service's lifecycle
    ctx.accounts = make_accounts(service.sessions)
    admin = sign_in(ctx.accounts, "duty-admin", "admin")
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://firewatch", headers=admin) as client:
        yield client


@pytest.fixture
def publisher(mosquitto: Mosquitto) -> Any:
    pub = Publisher(mosquitto.host, mosquitto.port)
    yield pub
    pub.close()


async def test_a_smoke_reading_over_mqtt_raises_a_fire_alarm_visible_in_the_api(
    service: Service, api: httpx.AsyncClient, publisher: Publisher
) -> None:
    publisher.send("fw/v1/s1/smk-1-1/telemetry", reading(1, 0.02))
    publisher.send("fw/v1/s1/smk-1-1/telemetry", reading(2, 0.31))

    async def fire() -> list[dict[str, Any]]:
        page = (await api.get("/api/v1/alarms", params={"category": "fire"})).json()
        return [a for a in page["items"] if a["device_id"] == "smk-1-1"]

    (alarm,) = await eventually(fire)
    assert alarm["alarm_type"] == "smoke.alarm"
    assert alarm["state"] == "active_unacknowledged"
    assert alarm["value"] == 0.31

    ack = await api.post(f"/api/v1/alarms/{alarm['id']}/acknowledge", json={"note": "现场确认"})
    assert ack.status_code == 200
    assert ack.json()["after"]["state"] == "active_acknowledged"

    history = (await api.get("/api/v1/devices/smk-1-1/history", params={"channel": "smoke"})).json()
    assert history["value"] == [0.02, 0.31]


async def test_garbage_is_rejected_with_reasons_and_a_fire_after_it_still_alarms(
    service: Service, api: httpx.AsyncClient, publisher: Publisher
) -> None:
    garbage: list[tuple[str, bytes]] = [
        ("fw/v1/s1/smk-2-1/telemetry", bytes(range(256))),
        ("fw/v1/s1/smk-2-1/telemetry", b'{"ts": 1, "seq": 1, "v": {"smo'),
        ("fw/v1/s1/smk-2-1/telemetry", b'{"ts": 1, "seq": "one", "v": {"smoke": 0.1}}'),
        ("fw/v1/s1/smk-2-1/telemetry", b'{"ts": 1, "seq": 1, "v": {"smoke": "0.1"}}'),
        ("fw/v1/s1/smk-2-1/telemetry", b'{"ts": 1, "seq": 1, "v": {"smoke": NaN}}'),
        ("fw/v1/s1/smk-2-1/telemetry", b'{"ts": 1, "seq": 1, "v": {"smoke": Infinity}}'),
        ("fw/v1/s1/smk-2-1/telemetry", b'{"ts": 1, "seq": 1, "v": {"smoke": 1e400}}'),
        ("fw/v1/s1/smk-2-1/telemetry", b'{"ts": 1, "seq": 1, "v": {"smoke": 99}}'),
        ("fw/v1/s1/smk-2-1/telemetry", b"{" + b'"x": 1,' * 100_000 + b'"y": 2}'),
        ("fw/v1/s1/ghost-9/telemetry", b'{"ts": 1, "seq": 1, "v": {"smoke": 0.1}}'),
        ("fw/v1/s1/smk-2-1/telemetry", b'{"ts": 99999999999, "seq": 1, "v": {"smoke": 0.1}}'),
        ("fw/v1/s1/smk-2-1/event", b'{"event": "self_destruct"}'),
        ("fw/v1/s1/smk-2-1", b"{}"),
    ]
    publisher.send_many(garbage)
    publisher.send("fw/v1/s1/smk-2-1/telemetry", reading(10, 0.4))

    async def fire() -> bool:
        page = (await api.get("/api/v1/alarms", params={"device_id": "smk-2-1", "category": "fire"})).json()
        return bool(page["total"] == 1)

    await eventually(fire)

    def all_rejects_stored() -> bool:
        with service.sessions() as s:
            return (s.scalar(select(func.count()).select_from(RejectRow)) or 0) >= len(garbage)

    await eventually(all_rejects_stored)
    rejects = (await api.get("/api/v1/rejects", params={"limit": 100})).json()["items"]
    by_payload = {r["payload_base64"]: r["reason"] for r in rejects}
    import base64

    reasons = [by_payload[base64.b64encode(p).decode()] for _, p in garbage]
    assert reasons == [
        "bad_json",
        "bad_json",
        "bad_payload",
        "bad_payload",
        "bad_json",
        "bad_json",
        "bad_json",
        "out_of_range",
        "too_large",
        "unknown_device",
        "future_timestamp",
        "unknown_event",
        "bad_topic",
    ]
    totals = (await api.get("/api/v1/rejects/totals")).json()["totals"]
    assert sum(totals.values()) == len(garbage)
    discovered = (await api.get("/api/v1/devices/discovered")).json()["items"]
    assert [d["device_id"] for d in discovered] == ["ghost-9"]
    metrics = (await api.get("/metrics")).text
    assert 'fw_ingest_rejects_total{reason="bad_json"} 5.0' in metrics
    assert 'fw_alarms_active{category="fire",system="fire_alarm"} 1.0' in metrics


async def test_a_silent_device_goes_offline_and_opens_a_ticket(
    service: Service, api: httpx.AsyncClient, publisher: Publisher
) -> None:
    # Everyone but smk-1-3 keeps reporting; smk-1-3 said one thing and went silent.
    publisher.send("fw/v1/s1/smk-1-3/telemetry", reading(1, 0.02))
    others = [d for d in service.index.device_ids if d not in ("smk-1-3", "prs-1")]
    seq = 1
    deadline = time.monotonic() + 20

    async def offline_ticket() -> list[dict[str, Any]]:
        page = (await api.get("/api/v1/tickets", params={"device_id": "smk-1-3"})).json()
        items: list[dict[str, Any]] = page["items"]
        return items

    tickets: list[dict[str, Any]] = []
    while not tickets and time.monotonic() < deadline:
        seq += 1
        publisher.send_many(
            [
                (f"fw/v1/s1/{d}/telemetry", f'{{"seq": {seq}, "v": {{"smoke": 0.02}}}}'.encode())
                for d in others
            ]
        )
        await asyncio.sleep(0.2)
        tickets = await offline_ticket()
    (ticket,) = tickets
    assert ticket["hazard_type"] == "device.offline"
    assert ticket["status"] == "open"
    assert ticket["department"] == "心内科"
    assert ticket["responsible"] == "张三"
    assert "离线" in ticket["problem"]
    alarms = (await api.get("/api/v1/alarms", params={"device_id": "smk-1-3", "open": True})).json()["items"]
    assert [a["alarm_type"] for a in alarms] == ["device.offline"]
    others_offline = (await api.get("/api/v1/alarms", params={"device_id": "smk-1-1"})).json()["total"]
    assert others_offline == 0


async def test_a_stall_of_the_service_itself_is_not_taken_for_its_devices_silence(
    service: Service, api: httpx.AsyncClient, publisher: Publisher
) -> None:
    # Every device keeps reporting every 0.2 s, from a thread, while the service's own event loop
    # is held up for longer than the 3 s offline limit (as a stalled process or a suspended
    # machine is). Their messages wait in the socket meanwhile and are read after the stall.
    devices = [d for d in service.index.device_ids if d.startswith("smk-")]  # smoke readings
    sending = threading.Event()

    def report() -> None:
        seq = 0
        while not sending.is_set():
            seq += 1
            body = f'{{"seq": {seq}, "v": {{"smoke": 0.02}}}}'.encode()
            publisher.send_many([(f"fw/v1/s1/{d}/telemetry", body) for d in devices])
            time.sleep(0.2)

    reporter = threading.Thread(target=report)
    reporter.start()
    try:
        await asyncio.sleep(1.0)
        time.sleep(4.0)  # noqa: ASYNC251 -- the stall itself: nothing in the service runs
        await asyncio.sleep(2.0)  # two checks' worth after it
    finally:
        sending.set()
        reporter.join()
    page = (await api.get("/api/v1/alarms", params={"category": "fault"})).json()
    assert [(a["device_id"], a["alarm_type"]) for a in page["items"] if a["device_id"] in devices] == []


async def test_readiness_checks_the_broker_and_database_for_real(
    service: Service, api: httpx.AsyncClient
) -> None:
    ready = await api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {
        "database": "ok",
        "broker": "ok",
        "pipeline": "ok",
        "telemetry_compactor": "ok",
    }


async def test_bad_api_input_gets_a_4xx_problem_not_a_500(api: httpx.AsyncClient) -> None:
    for method, url, body in [
        ("GET", "/api/v1/alarms?category=volcano", None),
        ("GET", "/api/v1/alarms?limit=0", None),
        ("GET", "/api/v1/alarms/abc", None),
        ("GET", "/api/v1/alarms/999999", None),
        ("POST", "/api/v1/alarms/1/acknowledge", {"note": "who acts comes from the token", "actor": "x"}),
        ("POST", "/api/v1/alarms/999999/clear", {}),
        ("GET", "/api/v1/devices/smk-1-1/history", None),
        ("GET", "/api/v1/devices/smk-1-1/history?channel=smoke&start=10&end=5", None),
        ("GET", "/api/v1/devices/nobody/history?channel=smoke", None),
        ("GET", "/api/v1/tickets/0", None),
        ("GET", "/api/v1/rejects?reason=whatever", None),
    ]:
        response = await api.request(method, url, json=body)
        assert 400 <= response.status_code < 500, (url, response.status_code, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["detail"]


async def test_messages_published_while_the_service_is_down_arrive_after_restart(
    mosquitto: Mosquitto, tmp_path: Path, publisher: Publisher
) -> None:
    client_id = f"fw-restart-{uuid.uuid4().hex[:8]}"
    first = make_service(mosquitto, tmp_path, client_id)
    await first.start()
    await asyncio.wait_for(first.source.connected.wait(), 10)
    await first.stop()  # the broker keeps our persistent session and queues for it

    n = 300
    base = time.time()
    publisher.send_many(
        (
            "fw/v1/s1/smk-1-1/telemetry",
            f'{{"ts": {base + i}, "seq": {i + 1}, "v": {{"smoke": 0.01}}}}'.encode(),
        )
        for i in range(n)
    )
    publisher.send_many([("fw/v1/s1/smk-1-2/telemetry", b'{"seq": 1, "v": {"smoke": 0.5}}')])

    second = make_service(mosquitto, tmp_path, client_id)
    await second.start()
    try:
        await eventually(lambda: second.telemetry.count() >= n + 1)
        await asyncio.sleep(0.3)
        history = second.telemetry.history("smk-1-1", "smoke", base - 1, base + n + 1)
        assert history.ts.size == n  # none lost, none duplicated
        assert second.alarms.active_keys() >= {("smk-1-2", "smoke.alarm")}
    finally:
        await second.stop()


async def test_a_batch_that_cannot_be_stored_is_not_acknowledged_and_comes_back(
    mosquitto: Mosquitto, tmp_path: Path, publisher: Publisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    client_id = f"fw-crash-{uuid.uuid4().hex[:8]}"
    first = make_service(mosquitto, tmp_path, client_id)

    def disk_full(*_args: object, **_kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(first.telemetry, "write", disk_full)
    await first.start()
    await asyncio.wait_for(first.source.connected.wait(), 10)
    base = time.time()
    publisher.send_many(
        (
            "fw/v1/s1/smk-1-1/telemetry",
            f'{{"ts": {base + i}, "seq": {i + 1}, "v": {{"smoke": 0.01}}}}'.encode(),
        )
        for i in range(50)
    )
    await eventually(lambda: first.pipeline.batches > 0 and len(first.queue) == 0)
    await asyncio.sleep(0.3)
    await first.stop()  # "crash": nothing was stored, so nothing was acknowledged

    second = make_service(mosquitto, tmp_path, client_id)
    await second.start()
    try:
        await eventually(lambda: second.telemetry.count() >= 50)
        await asyncio.sleep(0.3)
        assert second.telemetry.count() == 50
    finally:
        await second.stop()


async def test_a_fire_is_alarmed_while_telemetry_storage_is_stalled_and_nothing_is_lost(
    mosquitto: Mosquitto, tmp_path: Path, publisher: Publisher
) -> None:
    svc = make_service(mosquitto, tmp_path, f"fw-stall-{uuid.uuid4().hex[:8]}")
    stalled = threading.Event()
    release = threading.Event()
    write = svc.telemetry.write

    def slow_disk(*args: Any, **kwargs: Any) -> None:
        stalled.set()
        release.wait(30)
        write(*args, **kwargs)

    svc.telemetry.write = slow_disk  # type: ignore[method-assign]
    await svc.start()
    try:
        await asyncio.wait_for(svc.source.connected.wait(), 10)
        base = time.time()
        # Twenty batches of normal readings first: far more than the writer can take while stalled.
        for k in range(20):
            publisher.send_many(
                (f"fw/v1/s1/smk-2-{i}/telemetry", orjson.dumps(reading(k + 1, 0.02, base + k)))
                for i in range(1, 4)
            )
            await asyncio.sleep(0.02)
        await eventually(stalled.is_set)
        publisher.send("fw/v1/s1/smk-1-1/telemetry", reading(1, 0.31, base + 21))
        await eventually(lambda: "smoke.alarm" in {k[1] for k in svc.alarms.active_keys()})
        assert svc.telemetry.count() == 0  # raised with nothing stored yet
    finally:
        release.set()
    try:
        await eventually(lambda: svc.telemetry.count() == 61 * 2)  # smoke and temp per reading
    finally:
        await svc.stop()


async def test_detection_waits_for_storage_only_past_the_hand_off_bound(
    mosquitto: Mosquitto, tmp_path: Path, publisher: Publisher
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        mqtt=MqttSettings(url=mosquitto.url, client_id=f"fw-bound-{uuid.uuid4().hex[:8]}"),
        ingest=IngestSettings(batch_wait_ms=2, batch_max=50, handoff_max=100),
    )
    svc = Service(settings, registry=small_registry(), profiles=PROFILES)
    release = threading.Event()
    write = svc.telemetry.write

    def stuck(*args: Any, **kwargs: Any) -> None:
        release.wait(30)
        write(*args, **kwargs)

    svc.telemetry.write = stuck  # type: ignore[method-assign]
    await svc.start()
    try:
        await asyncio.wait_for(svc.source.connected.wait(), 10)
        base = time.time()
        publisher.send_many(
            ("fw/v1/s1/smk-2-1/telemetry", orjson.dumps(reading(i + 1, 0.02, base + i / 10)))
            for i in range(400)
        )
        await eventually(lambda: svc.metrics.handoff_waits._value.get() >= 1)
        await asyncio.sleep(0.3)
        # At most the bound plus the batch that crossed it, and the next batch once the writer
        # freed room for one: detected, waiting to be stored.
        assert 100 <= svc.pipeline.accepted <= 100 + 2 * 50
    finally:
        release.set()
    try:
        await eventually(lambda: svc.telemetry.count() == 400 * 2)
    finally:
        await svc.stop()


async def test_the_service_reconnects_after_a_broker_restart_and_loses_nothing(tmp_path: Path) -> None:
    with Mosquitto(data_dir=tmp_path / "broker") as broker:
        service = make_service(broker, tmp_path / "fw", f"fw-reconnect-{uuid.uuid4().hex[:8]}")
        await service.start()
        try:
            await asyncio.wait_for(service.source.connected.wait(), 10)
            first_connects = service.source.connects
            broker.restart()  # clean shutdown: mosquitto saves our session and subscriptions
            pub = Publisher(broker.host, broker.port)
            try:
                base = time.time()
                pub.send_many(
                    (
                        "fw/v1/s1/smk-2-2/telemetry",
                        f'{{"ts": {base + i}, "seq": {i + 1}, "v": {{"smoke": 0.01}}}}'.encode(),
                    )
                    for i in range(100)
                )
            finally:
                pub.close()
            await eventually(lambda: service.source.connects > first_connects, timeout=30)
            await eventually(
                lambda: len(service.telemetry.history("smk-2-2", "smoke", base - 1, base + 101).ts) == 100,
                timeout=30,  # reconnect backoff plus a loaded 2-core CI machine
            )
        finally:
            await service.stop()


async def test_detector_state_survives_a_restart_through_the_snapshot_file(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    from ingest.envelope import Message

    client_id = f"fw-snap-{uuid.uuid4().hex[:8]}"
    first = make_service(mosquitto, tmp_path, client_id)
    assert first.warm_units == 0  # nothing saved yet: a cold start
    body = f'{{"ts": {time.time()}, "seq": 1, "v": {{"smoke": 0.5}}}}'.encode()
    first.pipeline.detect([Message("fw/v1/s1/smk-1-1/telemetry", body, time.time())])
    await first.stop()  # a clean stop saves the detector state
    assert first.settings.detector_snapshot_path.exists()

    second = make_service(mosquitto, tmp_path, client_id)
    try:
        assert second.warm_units == second.engine.n_units
        assert second.engine.is_active("smk-1-1", "smoke.alarm")  # aligned with the open alarm
    finally:
        await second.stop()


async def test_the_metrics_count_each_batchs_messages_and_time_each_alarm_write(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    from ingest.envelope import Message

    svc = make_service(mosquitto, tmp_path, f"fw-metrics-{uuid.uuid4().hex[:8]}")
    sample = svc.metrics.registry.get_sample_value
    try:

        def message(device: str, seq: int, smoke: float) -> Message:
            return Message(f"fw/v1/s1/{device}/telemetry", orjson.dumps(reading(seq, smoke)), time.time())

        svc.pipeline.detect([message("smk-1-1", 1, 0.02), message("smk-1-2", 1, 0.02)])
        assert sample("fw_alarm_write_seconds_count") == 0  # nothing to alarm: no write
        svc.pipeline.detect(
            [message("smk-1-1", 2, 0.02), message("smk-1-2", 2, 0.02), message("smk-1-3", 1, 0.5)]
        )

        assert sample("fw_ingest_batch_messages_count") == 2
        assert sample("fw_ingest_batch_messages_sum") == 5
        assert sample("fw_ingest_batch_messages_bucket", {"le": "1.0"}) == 0
        assert sample("fw_ingest_batch_messages_bucket", {"le": "10.0"}) == 2
        assert sample("fw_alarm_write_seconds_count") == 1  # the fire's write, its commit included
        assert svc.engine.is_active("smk-1-3", "smoke.alarm")
    finally:
        await svc.stop()


async def test_a_fire_over_mqtt_is_pushed_to_the_duty_webhook(
    mosquitto: Mosquitto, tmp_path: Path, publisher: Publisher
) -> None:
    from core.settings import PushRoute
    from tests.test_pushes import Receiver, free_port

    receiver = Receiver(free_port())
    receiver.start()
    settings = Settings(
        data_dir=tmp_path,
        mqtt=MqttSettings(url=mosquitto.url, client_id=f"fw-push-{uuid.uuid4().hex[:8]}"),
        ingest=IngestSettings(liveness_check_s=0.1, batch_wait_ms=2),
        pushes=[PushRoute(name="duty", url=f"json://127.0.0.1:{receiver.port}/hook")],
    )
    svc = Service(settings, registry=small_registry(), profiles=PROFILES)
    await svc.start()
    try:
        await asyncio.wait_for(svc.source.connected.wait(), 10)
        publisher.send("fw/v1/s1/smk-2-1/telemetry", reading(1, 0.4))
        fires = await eventually(lambda: [b for b in receiver.bodies if b["title"].startswith("【火警】")])
        (body,) = fires
        assert "smk-2-1" in body["message"]
        assert svc.dispatcher.pending() == 0 or await eventually(lambda: svc.dispatcher.pending() == 0)
    finally:
        await svc.stop()
        receiver.stop()


async def test_every_transition_is_published_on_the_site_alarm_topic(
    service: Service, publisher: Publisher, mosquitto: Mosquitto
) -> None:
    import orjson
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    got: list[dict[str, Any]] = []
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fw-alarm-sub-{uuid.uuid4().hex[:8]}")
    sub.on_message = lambda _c, _u, msg: got.append({"topic": msg.topic, **orjson.loads(msg.payload)})
    sub.connect(mosquitto.host, mosquitto.port)
    sub.subscribe([("fw/v1/+/alarms", 1), ("fw/v1/+/incidents", 1)])
    sub.loop_start()
    try:
        await asyncio.sleep(0.3)
        publisher.send("fw/v1/s1/smk-1-3/telemetry", reading(1, 0.4))
        fire = await eventually(
            lambda: [m for m in got if "after" in m and m["after"]["alarm_type"] == "smoke.alarm"]
        )
        assert fire[0]["topic"] == "fw/v1/s1/alarms"
        # Its incident, step by step, on the site's incident topic.
        opened = await eventually(lambda: [m for m in got if m["topic"] == "fw/v1/s1/incidents"])
        assert opened[0]["type"] == "incident"
        assert opened[0]["action"] == "opened"
        assert opened[0]["incident"]["kind"] == "fire"
        assert fire[0]["action"] == "raised"
        assert fire[0]["before"] is None
        assert service.pipeline.rejected == 0  # firewatch does not reject its own alarm topic
    finally:
        sub.loop_stop()
        sub.disconnect()


async def test_the_running_service_opens_due_maintenance_tickets_from_its_ticket_clock(
    service: Service,
) -> None:
    """The default plans have no history, so they are due at start: the ticket clock's first tick
    opens one ticket per plan and site, and a second tick opens no more."""

    def maintenance() -> list[str]:
        with service.sessions() as s:
            return sorted(s.scalars(select(TicketRow.hazard_type).where(TicketRow.source == "maintenance")))

    assert await eventually(lambda: len(maintenance()) == 2)
    await asyncio.to_thread(service.tickets.tick)
    assert maintenance() == ["maintenance.detector-test", "maintenance.pump-test"]


async def test_a_backlog_waiting_in_the_pipeline_is_not_mistaken_for_silence(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    from core.clock import ScaledClock
    from ingest.envelope import Message

    clock = ScaledClock(1.0)
    svc = make_service(mosquitto, tmp_path, f"fw-test-{uuid.uuid4().hex[:8]}", with_heartbeat(0.5))
    svc.pipeline.clock = clock
    svc.pipeline._queue = svc.queue
    svc.pipeline.connection = lambda: 1  # not started: as if connected (unconnected, nobody is judged)
    # A reading of every device arrived 0.2 s ago and still waits in the queue; the heartbeat
    # limit (3 x 0.5 s) passes while it waits. Judged against the wall clock, every device would
    # be offline; judged against the watermark, nobody is.
    arrived = clock()
    for device_id in svc.registry.devices:
        svc.queue.put(Message(f"fw/v1/s1/{device_id}/telemetry", b'{"v": {"smoke": 0.01}}', arrived))
    svc.engine.grace(arrived - 1.0)
    await asyncio.sleep(1.0)
    assert svc.pipeline.watermark() == arrived
    svc.pipeline.check_liveness()
    assert svc.alarms.active_keys() == set()
    # Drained and quiet afterwards: now the silence is real.
    svc.pipeline.detect(await svc.queue.get_batch(1000, 0))
    await asyncio.sleep(1.6)
    svc.pipeline.check_liveness()
    assert {k for k in svc.alarms.active_keys() if k[1] == "device.offline"} == {
        (d, "device.offline") for d in svc.registry.devices
    }


async def test_a_time_scaled_service_runs_its_clock_faster_and_says_so(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, mqtt=MqttSettings(url=mosquitto.url), time_scale=50.0)
    svc = Service(settings, registry=small_registry(), profiles=PROFILES)
    ctx = svc.app_context()
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://firewatch") as client:
        first = (await client.get("/healthz")).json()
        await asyncio.sleep(0.2)
        second = (await client.get("/healthz")).json()
    assert first["status"] == "ok"
    assert first["time_scale"] == 50.0
    assert 5.0 < second["time"] - first["time"] < 30.0  # 0.2 s of wall time is about 10 s


async def test_time_with_ingest_disconnected_is_not_counted_as_any_devices_silence(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    from tests.conftest import FakeClock

    svc = make_service(mosquitto, tmp_path, f"fw-test-{uuid.uuid4().hex[:8]}", with_heartbeat(0.5))
    clock = FakeClock(svc.clock())
    svc.pipeline.clock = clock
    connection: list[int | None] = [1]
    svc.pipeline.connection = lambda: connection[0]
    svc.engine.liveness.last_seen[:] = clock.now - 1.0  # everyone silent for 1 s of their 1.5 s limit
    connection[0] = None  # the connection drops for 10 s: nobody is judged meanwhile
    svc.pipeline.check_liveness()
    clock.now += 10.0
    svc.pipeline.check_liveness()
    assert svc.alarms.active_keys() == set()
    connection[0] = 2  # back: the 10 s it was down do not count, so 1 s of silence each
    svc.pipeline.check_liveness()
    assert svc.alarms.active_keys() == set()
    clock.now += 0.7  # 1.7 s of counted silence: past the limit
    svc.pipeline.check_liveness()
    assert {t for _, t in svc.alarms.active_keys()} == {"device.offline"}
