"""The GB/T 26875.3 listener, over real TCP on loopback, in front of the whole service (private
mosquitto, SQLite): a transmission device's frames become the alarms of the registry devices they
name, each upload is confirmed once what it means is stored, and bad frames are denied or refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select
from typer.testing import CliRunner

from api.app import create_app
from core.domain import Role
from core.registry import BuildingSpec, Device, FloorSpec, Registry, RoomSpec, SiteSpec, ZoneSpec
from core.settings import Gb26875Settings, IngestSettings, MqttSettings, Settings
from device_profiles.loader import load_profiles
from device_profiles.schema import Profile
from firewatch.broker import Mosquitto
from firewatch.cli import app
from firewatch.service import Service
from ingest.gb26875.codes import Command
from ingest.gb26875.frame import encode_frame
from ingest.gb26875.objects import (
    AnalogValue,
    ComponentState,
    DeviceState,
    Operation,
    SystemState,
    UnknownObjects,
)
from simulators.gb26875_device import TransmissionDevice, now_tag
from storage.models import AlarmRow, AuditRow, IncidentRow, RejectRow, TicketRow
from tests.conftest import make_accounts, sign_in
from tests.test_body_limit import served
from tests.waiting import eventually

pytestmark = pytest.mark.integration

UD = 889  # the transmission device's address (GB/T 26875.3's vendor example uses 889)
SMOKE_101 = 0x0002000A  # loop 10, point 2 (low word loop, high word point)
SMOKE_102 = 0x0003000A
PRESSURE = 0x00010002  # a pressure switch's transmitter on loop 2
FIRE, FAULT, DISABLED = 1 << 1, 1 << 2, 1 << 3
NORMAL = 1 << 0


def registry() -> Registry:
    site = SiteSpec(
        id="s1",
        name="测试医院",
        buildings=[
            BuildingSpec(
                id="b1",
                name="住院楼",
                floors=[
                    FloorSpec(
                        id="f1",
                        name="1F",
                        zones=[ZoneSpec(id="z1", name="1区", rooms=[RoomSpec(id="r101", name="101病房")])],
                    )
                ],
            )
        ],
    )
    room = "s1/b1/f1/z1/r101"
    ud = {"gateway": "ud-1", "place": room}
    devices = [
        Device(id="ud-1", profile="gb-transmission-device", place="s1/b1/f1/z1", tags=[f"gb26875={UD}"]),
        Device(id="fas-1", profile="gb-fire-alarm-panel", **ud, tags=["gb26875=1/1"]),
        # Component addresses in hexadecimal or decimal, as the site's list gives them.
        Device(id="smk-101", profile="gb-smoke-detector", **ud, tags=[f"gb26875=1/1/42/{SMOKE_101:#x}"]),
        Device(id="smk-102", profile="gb-smoke-detector", **ud, tags=[f"gb26875=1/1/42/{SMOKE_102}"]),
        Device(id="prs-1", profile="gb-water-pressure", **ud, tags=[f"gb26875=1/1/99/{PRESSURE:#x}"]),
    ]
    return Registry([site], devices)


class AlarmTopic:
    """A subscriber of the MQTT alarm topic, recording when each message arrived."""

    def __init__(self, broker: Mosquitto) -> None:
        self.messages: list[tuple[float, dict[str, Any]]] = []
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{uuid.uuid4().hex[:8]}")
        self.client.on_connect = lambda c, *_: c.subscribe("fw/v1/+/alarms", qos=1)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = lambda _c, _u, msg: self.messages.append(
            (time.time(), orjson.loads(msg.payload))
        )
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert subscribed.wait(10)

    def raised(self, device_id: str) -> float | None:
        for at, t in self.messages:  # each message is one transition (docs/alarms.md)
            if t.get("action") == "raised" and t.get("after", {}).get("device_id") == device_id:
                return at
        return None

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@contextlib.asynccontextmanager
async def gb_service(
    broker: Mosquitto,
    data: Path,
    profiles: dict[str, Profile] | None = None,
    inspection_every_s: float = 3600.0,
) -> AsyncIterator[Service]:
    """The whole service on `registry()`, its GB/T 26875.3 listener on a free port, connected to
    the broker; stopped on the way out."""
    settings = Settings(
        data_dir=data / "data",
        mqtt=MqttSettings(url=broker.url, client_id=f"fw-gb-{uuid.uuid4().hex[:8]}"),
        ingest=IngestSettings(liveness_check_s=0.2, batch_wait_ms=2),
        gb26875=Gb26875Settings(enabled=True, port=0, inspection_every_s=inspection_every_s),
    )
    svc = Service(settings, registry=registry(), profiles=profiles or load_profiles())
    await svc.start()
    try:
        await asyncio.wait_for(svc.source.connected.wait(), 10)
        yield svc
    finally:
        await svc.stop()


@pytest.fixture
async def service(mosquitto: Mosquitto, tmp_path: Path) -> AsyncIterator[Service]:
    async with gb_service(mosquitto, tmp_path, inspection_every_s=1.0) as svc:
        yield svc


@pytest.fixture
async def device(service: Service) -> AsyncIterator[TransmissionDevice]:
    assert service.gb26875 is not None
    dev = TransmissionDevice(address=UD, host="127.0.0.1", port=service.gb26875.port)
    await dev.connect()
    yield dev
    await dev.close()


@pytest.fixture
def alarm_topic(mosquitto: Mosquitto) -> Iterator[AlarmTopic]:
    sub = AlarmTopic(mosquitto)
    yield sub
    sub.close()


def alarms(service: Service, device_id: str, *, open_only: bool = True) -> list[AlarmRow]:
    with service.sessions() as s:
        q = select(AlarmRow).where(AlarmRow.device_id == device_id)
        if open_only:
            q = q.where(AlarmRow.state != "closed")
        return list(s.scalars(q))


def component(
    addr: int, status: int, comp_type: int = 42, description: str = "101病房感烟"
) -> ComponentState:
    return ComponentState(1, 1, comp_type, addr, status, description, now_tag())


async def test_a_fire_frame_is_a_fire_incident_and_on_the_alarm_topic_within_a_second(
    service: Service, device: TransmissionDevice, alarm_topic: AlarmTopic
) -> None:
    sent = time.time()
    reply = await device.upload(2, [component(SMOKE_101, NORMAL | FIRE)])
    confirmed = time.time()
    assert reply.command == Command.CONFIRM
    # Confirmed only once stored: the alarm is in the state store when the confirm arrives.
    (fire,) = alarms(service, "smk-101")
    assert (fire.alarm_type, fire.category, fire.state) == ("device.alarm", "fire", "active_unacknowledged")
    assert confirmed - sent < 1.0
    with service.sessions() as s:
        incident = s.scalars(select(IncidentRow).where(IncidentRow.kind == "fire")).one()
    assert incident.state == "open"
    at = await eventually(lambda: alarm_topic.raised("smk-101"), timeout=5, what="the alarm topic's message")
    assert at - sent < 1.0


async def test_state_bits_become_alarms_and_clear_as_the_word_changes(
    service: Service, device: TransmissionDevice
) -> None:
    await device.upload(2, [component(SMOKE_102, NORMAL | FAULT | DISABLED)])
    kinds = {(a.alarm_type, a.category) for a in alarms(service, "smk-102")}
    assert kinds == {("device.fault", "fault"), ("device.disabled", "disabled")}
    # Re-enabled at the panel, still faulty: the disabled alarm clears, the fault stays active.
    await device.upload(2, [component(SMOKE_102, NORMAL | FAULT)])
    by_type = {a.alarm_type: a.state for a in alarms(service, "smk-102")}
    assert by_type["device.fault"] == "active_unacknowledged"
    assert by_type["device.disabled"] == "cleared_unacknowledged"
    # A disabled point is a hazard to follow up: it opened a rectification ticket.
    with service.sessions() as s:
        tickets = s.scalars(select(TicketRow).where(TicketRow.device_id == "smk-102")).all()
    assert {t.category for t in tickets} >= {"disabled", "fault"}


async def test_a_panel_reset_ends_the_latched_fire_alarms_of_its_points(
    service: Service, device: TransmissionDevice
) -> None:
    await device.upload(2, [component(SMOKE_101, NORMAL | FIRE)])
    await device.upload(2, [component(SMOKE_102, NORMAL | FAULT)])
    # The fire bit falls back: a latched fire stays active (GB 4717), as on the panel itself.
    await device.upload(2, [component(SMOKE_101, NORMAL)])
    assert alarms(service, "smk-101")[0].state.startswith("active")
    reply = await device.upload(4, [Operation(1, 1, 1 << 0, 7, now_tag())])  # 复位 by operator 7
    assert reply.command == Command.CONFIRM
    (fire,) = alarms(service, "smk-101", open_only=False)
    assert not fire.state.startswith("active")
    # A reset ends fires, not faults: the faulty point's alarm stands until the panel says it is gone.
    (fault,) = alarms(service, "smk-102")
    assert fault.state == "active_unacknowledged"
    # The next fire of the same point is raised anew.
    await device.upload(2, [component(SMOKE_101, NORMAL | FIRE)])
    assert any(a.state.startswith("active") for a in alarms(service, "smk-101", open_only=False))


async def test_analog_values_are_readings_judged_by_the_points_profile(
    service: Service, device: TransmissionDevice
) -> None:
    # 0.35 MPa (type 4, 0.1 MPa steps on the wire would be too coarse: kPa is what panels send),
    # then 80.0 kPa (type 5): below the 0.10 MPa supervisory level of the pipe (GB 50974-2014 §5.2.2).
    normal = AnalogValue(1, 1, 99, PRESSURE, 5, 3500, now_tag())
    low = AnalogValue(1, 1, 99, PRESSURE, 5, 800, now_tag())
    assert (await device.upload(3, [normal])).command == Command.CONFIRM
    assert alarms(service, "prs-1") == []
    assert (await device.upload(3, [low])).command == Command.CONFIRM
    (alarm,) = alarms(service, "prs-1")
    assert (alarm.alarm_type, alarm.category) == ("pressure.low", "supervisory")
    stored = service.telemetry.history("prs-1", "pressure", 0, time.time() + 3600)
    assert [round(float(v), 3) for v in stored.value] == [0.35, 0.08]  # stored before the confirm
    # An analog type the point's profile has no channel for is refused with its reason, and kept.
    await device.upload(3, [AnalogValue(1, 1, 99, PRESSURE, 9, 12, now_tag())])  # 电流 (A)

    def kept() -> list[RejectRow]:
        with service.sessions() as s:
            return list(s.scalars(select(RejectRow).where(RejectRow.device_id == "prs-1")))

    (reject,) = await eventually(kept, timeout=5, what="the reject")
    assert reject.reason == "unknown_channel"


async def test_a_system_state_and_the_devices_own_state_reach_their_devices(
    service: Service, device: TransmissionDevice
) -> None:
    await device.upload(1, [SystemState(1, 1, NORMAL | (1 << 8), now_tag())])  # main power fault
    assert {a.alarm_type for a in alarms(service, "fas-1")} == {"device.power_fault"}
    await device.upload(21, [DeviceState(NORMAL | (1 << 5), now_tag())])  # channel to the centre failed
    assert {a.alarm_type for a in alarms(service, "ud-1")} == {"device.fault"}


async def test_an_unregistered_point_still_raises_its_fire_and_opens_an_onboarding_ticket(
    service: Service, device: TransmissionDevice
) -> None:
    reply = await device.upload(2, [component(0x00090001, NORMAL | FIRE, comp_type=23)])  # a call point
    assert reply.command == Command.CONFIRM
    by_type = {a.alarm_type: a for a in alarms(service, "ud-1")}
    assert by_type["device.alarm"].category == "fire"
    assert by_type["device.unregistered"].category == "hazard"
    with service.sessions() as s:
        ticket = s.scalars(select(TicketRow).where(TicketRow.device_id == "ud-1")).one()
    assert ticket.category == "hazard"


async def test_heartbeats_and_unknown_types_are_confirmed_and_the_centre_inspects(
    service: Service, device: TransmissionDevice
) -> None:
    assert (await device.heartbeat()).command == Command.CONFIRM
    # A type identifier of a vendor's own (赋安/依爱 use 204, 205): confirmed, never denied.
    assert (await device.upload(205, [UnknownObjects(205, 1, bytes(13))])).command == Command.CONFIRM
    kept = service.telemetry.device_events("ud-1", 0, time.time() + 86_400)
    assert [(e[3], e[4]) for e in kept] == [("upload", 205)]  # with its frame, once stored
    assert kept[0][6] is not None
    assert service.gb26875 is not None
    stats = service.gb26875.stats
    # On connecting the device got the centre's clock (type 90), then a state read (type 81, 巡检).
    await eventually(lambda: stats.inspections_answered >= 1, timeout=10, what="an inspection answered")
    types = [f.adu[0] for f in device.received if f.command in (Command.CONTROL, Command.REQUEST)]
    assert types[:2] == [90, 81]


async def test_bad_frames_are_denied_garbage_is_counted_and_a_look_alike_is_refused(
    service: Service, device: TransmissionDevice
) -> None:
    assert service.gb26875 is not None
    stats = service.gb26875.stats
    data, serial = device.frame(Command.SEND, bytes([2, 1]) + bytes(46))
    bad = data[:-3] + bytes([(data[-3] + 1) & 0xFF]) + data[-2:]  # checksum off by one
    reply = await device.exchange(bad, serial)
    assert reply.command == Command.DENY
    await device.send_raw(b"hello, centre")
    assert (await device.heartbeat()).command == Command.CONFIRM  # the connection goes on
    assert stats.rejects["bad_checksum"] == 1
    assert stats.rejects["bad_start"] >= 1
    # 赋安 FSCN8001's private framing on the same delimiters: refused, the connection closed.
    body = bytes.fromhex("01000105241205173000") + b"FA0000000001"  # cmd, mark, BCD time, id
    fscn = b"@@" + body + bytes([sum(body) & 0xFF]) + b"##"
    await device.send_raw(fscn)
    await asyncio.wait_for(device.closed.wait(), 5)
    assert stats.rejects["lookalike_fscn8001"] == 1


async def test_frames_from_an_unregistered_device_are_confirmed_and_kept_as_rejects(
    service: Service,
) -> None:
    assert service.gb26875 is not None
    stranger = TransmissionDevice(address=4242, host="127.0.0.1", port=service.gb26875.port)
    await stranger.connect()
    try:
        reply = await stranger.upload(2, [component(SMOKE_101, NORMAL | FIRE)])
        assert reply.command == Command.CONFIRM
    finally:
        await stranger.close()

    def kept() -> list[RejectRow]:
        with service.sessions() as s:
            return list(s.scalars(select(RejectRow).where(RejectRow.device_id == "gb-4242")))

    (reject,) = await eventually(kept, timeout=5, what="the reject")
    assert reject.reason == "unknown_device"
    assert alarms(service, "smk-101") == []


def test_a_frame_is_encoded_as_the_listener_reads_it() -> None:
    """The device's frames are the codec's: a sanity check of the test's own peer."""
    data = encode_frame(serial=1, command=Command.SEND, source=UD, destination=0, time=now_tag())
    assert (data[:2], data[-2:], len(data)) == (b"@@", b"##", 30)


# --- the control room's side, through the API ----------------------------------------------------
@pytest.fixture
async def api(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    ctx = service.app_context()
    ctx.start = ctx.stop = None  # the fixture owns the service's lifecycle
    ctx.accounts = make_accounts(service.sessions)
    operator = sign_in(ctx.accounts, "duty-op", "operator")
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://firewatch", headers=operator
    ) as client:
        yield client


async def test_the_control_room_sees_which_devices_are_connected(
    api: httpx.AsyncClient, device: TransmissionDevice
) -> None:
    await device.heartbeat()
    (ud,) = (await api.get("/api/v1/gb26875/devices")).json()
    assert (ud["device_id"], ud["address"], ud["connected"], ud["points"]) == ("ud-1", UD, True, 4)


async def test_a_query_returns_the_devices_answer_decoded(
    api: httpx.AsyncClient, device: TransmissionDevice
) -> None:
    await device.heartbeat()  # heard: the listener knows which connection is this device's
    r = await api.post("/api/v1/gb26875/devices/ud-1/query", json={"type": 81})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert (answer["command"], answer["command_name"]) == (Command.RESPONSE, "应答")
    assert (answer["frame"]["type_id"], answer["frame"]["objects"][0]["status_names"]) == (21, ["正常监视"])
    # A query the device does not support is denied, and said so.
    r = await api.post(
        "/api/v1/gb26875/devices/ud-1/query",
        json={"type": 62, "system_type": 1, "system_address": 1, "component_address": SMOKE_101},
    )
    assert r.json()["command_name"] == "否认"


async def test_a_query_that_cannot_be_asked_is_refused_with_the_reason(
    service: Service, api: httpx.AsyncClient, device: TransmissionDevice
) -> None:
    await device.heartbeat()
    missing = await api.post("/api/v1/gb26875/devices/ud-1/query", json={"type": 61, "system_type": 1})
    assert missing.status_code == 422
    assert "system_address is required" in missing.text
    assert (await api.post("/api/v1/gb26875/devices/ud-1/query", json={"type": 2})).status_code == 422
    assert (await api.post("/api/v1/gb26875/devices/smk-101/query", json={"type": 81})).status_code == 404
    # Once the device has gone, it cannot be asked: 409, not a wait.
    await device.close()
    assert service.gb26875 is not None
    listener = service.gb26875
    await eventually(lambda: listener.connection_of(UD) is None, timeout=5, what="the connection closed")
    gone = await api.post("/api/v1/gb26875/devices/ud-1/query", json={"type": 81})
    assert gone.status_code == 409
    assert "not connected" in gone.text


async def test_a_duty_check_is_confirmed_and_its_answer_time_recorded(
    service: Service, api: httpx.AsyncClient, device: TransmissionDevice
) -> None:
    await device.heartbeat()
    r = await api.post("/api/v1/gb26875/devices/ud-1/duty-check", json={"timeout_minutes": 10})
    assert r.status_code == 200, r.text
    assert r.json()["confirmed"] is True
    assert r.json()["answered_at"] is None
    assert (await device.answer_duty_check(operator=3)).command == Command.CONFIRM
    (check,) = (await api.get("/api/v1/gb26875/duty-checks")).json()
    assert check["operator"] == 3
    assert 0 <= check["answer_s"] < 10

    def audited() -> list[AuditRow]:
        with service.sessions() as s:
            return list(s.scalars(select(AuditRow).where(AuditRow.action == "duty_check_answered")))

    (row,) = await eventually(audited, timeout=5, what="the audit record")
    assert row.detail["operator"] == 3


async def test_the_cli_asks_a_connected_device_through_the_running_service(
    service: Service, device: TransmissionDevice
) -> None:
    ctx = service.app_context()
    ctx.start = ctx.stop = None
    ctx.accounts = make_accounts(service.sessions)
    key, _ = ctx.accounts.create_api_key("duty-cli", [Role.OPERATOR], by="test")
    await device.heartbeat()
    runner = CliRunner()
    async with served(create_app(ctx)) as port:
        common = ["--api", f"http://127.0.0.1:{port}", "--token", key.token]
        answered = await asyncio.to_thread(
            runner.invoke, app, ["gb26875", "query", "ud-1", "--type", "81", *common]
        )
        assert answered.exit_code == 0, answered.output
        assert json.loads(answered.stdout)["frame"]["type_id"] == 21
        listed = await asyncio.to_thread(runner.invoke, app, ["gb26875", "devices", *common])
        assert "ud-1" in listed.stdout
        refused = await asyncio.to_thread(
            runner.invoke, app, ["gb26875", "query", "ud-1", "--type", "61", "--system-type", "1", *common]
        )
        assert refused.exit_code == 1
        assert "system_address is required" in refused.stderr
        checked = await asyncio.to_thread(runner.invoke, app, ["gb26875", "duty-check", "ud-1", *common])
        assert checked.exit_code == 0, checked.output
        assert "confirmed by the device" in checked.stdout


async def test_linkage_and_operations_go_to_the_event_log_with_their_frames(
    service: Service, api: httpx.AsyncClient, device: TransmissionDevice
) -> None:
    linkage, feedback = 1 << 5, 1 << 6
    # An output module (here a detector's base relay) started, then its feedback came: logged, no alarm.
    first = await device.upload(2, [component(SMOKE_101, NORMAL | linkage)])
    await device.upload(2, [component(SMOKE_101, NORMAL | linkage | feedback)])
    assert alarms(service, "smk-101") == []
    # 消音 (silence) by operator 7 at the panel: recorded on the panel.
    await device.upload(4, [Operation(1, 1, 1 << 1, 7, now_tag())])
    events = (await api.get("/api/v1/devices/smk-101/events")).json()
    assert [e["event"] for e in events] == ["feedback", "linkage_start"]  # newest first
    sent = [f for f in device.received if f.serial_bytes == first.serial_bytes]
    assert sent, "the confirm answered the first upload"
    assert events[1]["frame"].startswith("4040")  # the frame it came in, as hex
    assert bytes.fromhex(events[1]["frame"])[-2:] == b"##"
    (silence,) = (await api.get("/api/v1/devices/fas-1/events")).json()
    assert (silence["event"], silence["code"], silence["channel"]) == ("operation", 1 << 1, "operator 7")
    # A point first heard idle logs no "linkage stopped" that never started.
    await device.upload(2, [component(SMOKE_102, NORMAL)])
    assert (await api.get("/api/v1/devices/smk-102/events")).json() == []


async def test_a_device_that_reconnects_is_heard_again_and_a_resent_fire_is_one_alarm(
    service: Service, device: TransmissionDevice
) -> None:
    await device.upload(2, [component(SMOKE_101, NORMAL | FIRE)])
    await device.close()
    await device.connect()  # serials start again at 0 on the new connection (GB/T 26875.3 §6.1)
    # The device did not get the confirm in time and sends the same fire again: one alarm, counted.
    assert (await device.upload(2, [component(SMOKE_101, NORMAL | FIRE)])).command == Command.CONFIRM
    (fire,) = alarms(service, "smk-101")
    assert fire.occurrences == 2
    assert service.gb26875 is not None
    assert service.gb26875.connection_of(UD) is not None


async def test_the_fire_incident_shows_the_panels_linkage_and_operations_meanwhile(
    service: Service, api: httpx.AsyncClient, device: TransmissionDevice
) -> None:
    await device.upload(2, [component(SMOKE_101, NORMAL | FIRE)])
    # The panel starts the smoke extraction (linkage on a point of the same building), its feedback
    # comes, and the operator silences the sounders.
    await device.upload(2, [component(SMOKE_102, NORMAL | (1 << 5))])
    await device.upload(2, [component(SMOKE_102, NORMAL | (1 << 5) | (1 << 6))])
    await device.upload(4, [Operation(1, 1, 1 << 1, 7, now_tag())])
    (incident,) = (await api.get("/api/v1/incidents", params={"kind": "fire"})).json()["items"]
    detail = (await api.get(f"/api/v1/incidents/{incident['id']}")).json()
    assert [(e["device_id"], e["event"]) for e in detail["panel_events"]] == [
        ("smk-102", "linkage_start"),
        ("smk-102", "feedback"),
        ("fas-1", "operation"),
    ]


async def test_a_transmission_device_silent_past_its_heartbeat_is_offline(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """Its points report only changes; the device's heartbeat is what is watched (here 1 s, offline
    after 3 missed)."""
    profiles = load_profiles()
    ud = profiles["gb-transmission-device"]
    assert ud.liveness is not None
    profiles["gb-transmission-device"] = ud.model_copy(
        update={"liveness": ud.liveness.model_copy(update={"heartbeat_s": 1.0})}
    )
    async with gb_service(mosquitto, tmp_path, profiles) as svc:
        assert svc.gb26875 is not None
        dev = TransmissionDevice(address=UD, host="127.0.0.1", port=svc.gb26875.port)
        await dev.connect()
        for _ in range(3):
            await dev.heartbeat()
            await asyncio.sleep(0.5)
        assert alarms(svc, "ud-1") == []
        await dev.close()  # the link is cut: no more heartbeats

        def offline() -> list[AlarmRow]:
            return [a for a in alarms(svc, "ud-1") if a.alarm_type == "device.offline"]

        (alarm,) = await eventually(offline, timeout=15, what="the offline alarm")
        assert alarm.category == "fault"
        # Its points are not offline on their own: their panel's link is what failed.
        assert [a for a in alarms(svc, "smk-101") if a.alarm_type == "device.offline"] == []


async def test_a_silent_connection_is_closed_and_connections_past_the_limit_are_refused(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        mqtt=MqttSettings(url=mosquitto.url, client_id=f"fw-gb-{uuid.uuid4().hex[:8]}"),
        gb26875=Gb26875Settings(enabled=True, port=0, idle_close_s=0.5, max_connections=1),
    )
    svc = Service(settings, registry=registry(), profiles=load_profiles())
    await svc.start()
    try:
        assert svc.gb26875 is not None
        first = TransmissionDevice(address=UD, host="127.0.0.1", port=svc.gb26875.port)
        second = TransmissionDevice(address=UD + 1, host="127.0.0.1", port=svc.gb26875.port)
        await first.connect()
        await first.heartbeat()
        await second.connect()  # one connection at most: the second is closed at once
        await asyncio.wait_for(second.closed.wait(), 5)
        assert not first.closed.is_set()
        # Silent past idle_close_s: the listener closes it (the device reconnects).
        await asyncio.wait_for(first.closed.wait(), 5)
        await first.close()
        await second.close()
    finally:
        await svc.stop()


async def test_transmission_devices_silent_together_are_one_outage(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """Ten transmission devices of one zone lose their link at once (its network is down): one
    outage, not ten offline alarms. Their thirty points are not counted as devices that could have
    kept talking (they are heard only through their devices)."""
    base = registry()
    site, zone = base.sites, "s1/b1/f1/z1"
    devices = []
    for n in range(10):
        ud = f"ud-z{n}"
        devices.append(
            Device(id=ud, profile="gb-transmission-device", place=zone, tags=[f"gb26875={2000 + n}"])
        )
        devices += [
            Device(
                id=f"{ud}-p{p}",
                profile="gb-smoke-detector",
                place=zone,
                gateway=ud,
                tags=[f"gb26875=1/1/42/{p}"],
            )
            for p in range(1, 4)
        ]
    profiles = load_profiles()
    ud_profile = profiles["gb-transmission-device"]
    assert ud_profile.liveness is not None
    profiles["gb-transmission-device"] = ud_profile.model_copy(
        update={"liveness": ud_profile.liveness.model_copy(update={"heartbeat_s": 1.0})}
    )
    settings = Settings(
        data_dir=tmp_path / "data",
        mqtt=MqttSettings(url=mosquitto.url, client_id=f"fw-gb-{uuid.uuid4().hex[:8]}"),
        ingest=IngestSettings(liveness_check_s=0.2, batch_wait_ms=2),
        gb26875=Gb26875Settings(enabled=True, port=0),
    )
    svc = Service(settings, registry=Registry(site, devices), profiles=profiles)
    await svc.start()
    try:
        assert svc.gb26875 is not None
        links = [
            TransmissionDevice(address=2000 + n, host="127.0.0.1", port=svc.gb26875.port) for n in range(10)
        ]
        for link in links:
            await link.connect()
        for _ in range(3):
            await asyncio.gather(*(link.heartbeat() for link in links))
            await asyncio.sleep(0.5)
        for link in links:
            await link.close()

        def outage() -> list[AlarmRow]:
            with svc.sessions() as s:
                return list(s.scalars(select(AlarmRow).where(AlarmRow.alarm_type == "device.outage")))

        (alarm,) = await eventually(outage, timeout=20, what="the outage")
        with svc.sessions() as s:
            offline = s.scalars(select(AlarmRow).where(AlarmRow.alarm_type == "device.offline")).all()
        assert offline == []
        assert alarm.category == "fault"
    finally:
        await svc.stop()


async def test_clustered_lists_say_when_they_lack_what_other_workers_hold(
    service: Service, device: TransmissionDevice, tmp_path: Path
) -> None:
    """The lists as a clustered worker serves them (firewatch/cluster/gb_relay.py): its own devices
    always, and an X-Firewatch-Incomplete header when the other workers could not all be asked."""
    from firewatch.cluster.engine import NatsCluster
    from firewatch.cluster.gb_relay import DeviceRelay

    await device.heartbeat()
    assert service.gb26875 is not None
    ctx = service.app_context()
    ctx.start = ctx.stop = None
    ctx.accounts = make_accounts(service.sessions)
    operator = sign_in(ctx.accounts, "duty-op", "operator")

    async def lists(relay: DeviceRelay) -> list[httpx.Response]:
        ctx.gb26875_surveyor = relay
        transport = httpx.ASGITransport(app=create_app(ctx))
        async with httpx.AsyncClient(transport=transport, base_url="http://fw", headers=operator) as api:
            return [await api.get(f"/api/v1/gb26875/{what}") for what in ("devices", "duty-checks")]

    # The engine not connected: this worker's own, said to be only that.
    for r in await lists(DeviceRelay(service.gb26875, lambda: None, peers=lambda: 1)):
        assert r.status_code == 200, r.text
        assert r.headers["x-firewatch-incomplete"].startswith("only this worker's")
    (ud,) = (await lists(DeviceRelay(service.gb26875, lambda: None)))[0].json()
    assert ud["connected"]
    # Connected, but the one other worker the last heartbeat saw does not answer within 1 s.
    engine = NatsCluster(tmp_path / "engine", nodes=1, partitions=2)
    engine.start()
    nc = await nats.connect(servers=engine.client_urls)
    try:
        for r in await lists(DeviceRelay(service.gb26875, lambda: nc, peers=lambda: 1)):
            assert r.status_code == 200, r.text
            assert "1 other worker(s) did not answer" in r.headers["x-firewatch-incomplete"]
        # Nobody else live: complete, no header.
        for r in await lists(DeviceRelay(service.gb26875, lambda: nc, peers=lambda: 0)):
            assert "x-firewatch-incomplete" not in r.headers
    finally:
        await nc.close()
        engine.stop()
