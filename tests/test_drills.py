"""Drills (演练) end to end: declared through the API of the running service, fires over a private
mosquitto, pushes to real HTTP receivers on loopback, on SQLite and on PostgreSQL."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from alarms.drills import recipient_routes
from api.app import create_app
from core.domain import IncidentAction
from core.settings import IngestSettings, MqttSettings, PushRoute, Settings
from firewatch.broker import Mosquitto
from firewatch.service import Service
from tests.conftest import PROFILES, make_accounts, sign_in, small_registry
from tests.mqtt_helpers import Publisher, reading
from tests.test_pushes import Receiver, free_port
from tests.waiting import eventually

pytestmark = pytest.mark.integration

HOUR = 3600.0


@pytest.fixture
def duty() -> Iterator[Receiver]:
    r = Receiver(free_port())
    r.start()
    yield r
    r.stop()


@pytest.fixture
def drill_inbox() -> Iterator[Receiver]:
    r = Receiver(free_port())
    r.start()
    yield r
    r.stop()


@pytest.fixture
async def service(
    mosquitto: Mosquitto, tmp_path: Path, store_url: str, duty: Receiver
) -> AsyncIterator[Service]:
    settings = Settings(
        data_dir=tmp_path,
        database_url=store_url,
        mqtt=MqttSettings(url=mosquitto.url, client_id=f"fw-drill-{uuid.uuid4().hex[:8]}"),
        ingest=IngestSettings(batch_wait_ms=2),
        pushes=[
            PushRoute(name="control-room", url=f"json://127.0.0.1:{duty.port}/duty", roles=["control_room"])
        ],
    )
    svc = Service(settings, registry=small_registry(zones=2, smoke_per_zone=3), profiles=PROFILES)
    await svc.start()
    await svc.source.connected.wait()
    yield svc
    await svc.stop()


@pytest.fixture
async def api(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    ctx = service.app_context()
    ctx.start = ctx.stop = None  # the fixture owns the service's lifecycle
    ctx.accounts = make_accounts(service.sessions)
    safety = sign_in(ctx.accounts, "safety-1", "safety", "operator", display_name="保卫科 周九")
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://firewatch", headers=safety) as client:
        yield client


class Integration:
    """An integration reading the MQTT alarm topic (alarms and incident steps)."""

    def __init__(self, broker: Mosquitto) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"int-{uuid.uuid4().hex[:8]}")
        self.client.on_connect = lambda c, *_: c.subscribe([("fw/v1/+/alarms", 1), ("fw/v1/+/incidents", 1)])
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = lambda _c, _u, m: self.messages.append((m.topic, orjson.loads(m.payload)))
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self.subscribed.wait(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def integration(mosquitto: Mosquitto) -> Iterator[Integration]:
    sub = Integration(mosquitto)
    yield sub
    sub.close()


@pytest.fixture
def publisher(mosquitto: Mosquitto) -> Iterator[Publisher]:
    pub = Publisher(mosquitto.host, mosquitto.port)
    yield pub
    pub.close()


def smoke(publisher: Publisher, device: str, seq: int = 1) -> None:
    publisher.send(f"fw/v1/s1/{device}/telemetry", reading(seq, 0.31))


async def incident_of(api: httpx.AsyncClient, device: str) -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        page = (await api.get("/api/v1/incidents", params={"open": "true"})).json()
        for inc in page["items"]:
            if any(a["device_id"] == device for a in inc["alarms"]):
                return dict(inc)
        return None

    result: dict[str, Any] = await eventually(found, what=f"an incident of {device}")
    return result


async def declare(api: httpx.AsyncClient, service: Service, url: str, **kw: Any) -> dict[str, Any]:
    body = {
        "name": "住院楼 1F 1区 消防演练",
        "places": ["s1/b1/f1/z1"],
        "end": service.clock() + HOUR,
        "urls": [url],
        **kw,
    }
    r = await api.post("/api/v1/drills", json=body)
    assert r.status_code == 201, r.text
    drill: dict[str, Any] = r.json()
    return drill


async def test_a_fire_in_a_drill_is_tagged_shown_told_only_to_the_drill_and_no_false_alarm(
    service: Service,
    api: httpx.AsyncClient,
    publisher: Publisher,
    duty: Receiver,
    drill_inbox: Receiver,
    integration: Integration,
) -> None:
    drill = await declare(api, service, f"json://127.0.0.1:{drill_inbox.port}/drill")
    assert drill["status"] == "active"
    assert drill["url_count"] == 1
    assert "urls" not in drill

    smoke(publisher, "smk-1-1")
    inc = await incident_of(api, "smk-1-1")
    assert inc["drill_id"] == drill["id"]
    assert [a["drill_id"] for a in inc["alarms"]] == [drill["id"]]
    assert inc["kind"] == "fire"
    assert inc["state"] == "open"

    # The same fire outside the drill's places, during the drill: a real one, told to the duty.
    smoke(publisher, "smk-2-1")
    real = await incident_of(api, "smk-2-1")
    assert real["drill_id"] is None
    assert real["id"] != inc["id"]

    await eventually(lambda: drill_inbox.bodies and duty.bodies, what="both pushes")
    await eventually(lambda: service.dispatcher.pending() == 0, what="the outbox drained")
    assert all(b["title"].startswith("【演练】") for b in drill_inbox.bodies)
    assert all("2区" in b["message"] for b in duty.bodies)  # the drill's fire never reached the duty
    assert not any("演练" in b["title"] for b in duty.bodies)
    # The alarm topic is for integrations: it carries the drill's alarm and incident, tagged.

    def tagged() -> bool:
        alarms = [m for t, m in integration.messages if t.endswith("/alarms")]
        steps = [m for t, m in integration.messages if t.endswith("/incidents")]
        return any(m["after"]["drill_id"] == drill["id"] for m in alarms) and any(
            m["incident"]["drill_id"] == drill["id"] for m in steps
        )

    await eventually(tagged, what="the drill's alarm and incident on the alarm topic")

    # A verdict of the drill's fire counts against no device.
    r = await api.post(
        f"/api/v1/incidents/{inc['id']}/verdict", json={"verdict": "false_alarm", "cause": "steam"}
    )
    assert r.status_code == 200, r.text
    counts = (await api.get("/api/v1/alarms/false-alarms")).json()
    assert "smk-1-1" not in [c["device_id"] for c in counts]
    assert "smk-2-1" in [c["device_id"] for c in counts]  # the real one is counted as always


async def test_a_fire_after_the_drill_ended_is_a_real_alarm_told_to_the_duty(
    service: Service, api: httpx.AsyncClient, publisher: Publisher, duty: Receiver, drill_inbox: Receiver
) -> None:
    drill = await declare(api, service, f"json://127.0.0.1:{drill_inbox.port}/drill")
    r = await api.post(f"/api/v1/drills/{drill['id']}/end", json={"note": "提前结束"})
    assert r.status_code == 200
    assert r.json()["status"] == "ended"
    assert (await api.post(f"/api/v1/drills/{drill['id']}/end", json={})).status_code == 409

    smoke(publisher, "smk-1-2")
    inc = await incident_of(api, "smk-1-2")
    assert inc["drill_id"] is None
    await eventually(lambda: duty.bodies, what="the duty's push")
    assert duty.bodies[0]["title"].startswith("【火警】")
    assert drill_inbox.bodies == []


async def test_taking_an_incident_out_of_the_drill_tells_the_duty_at_once_as_a_fire(
    service: Service, api: httpx.AsyncClient, publisher: Publisher, duty: Receiver, drill_inbox: Receiver
) -> None:
    drill = await declare(api, service, f"json://127.0.0.1:{drill_inbox.port}/drill")
    smoke(publisher, "smk-1-3")
    inc = await incident_of(api, "smk-1-3")
    assert inc["drill_id"] == drill["id"]
    ack = await api.post(f"/api/v1/incidents/{inc['id']}/acknowledge", json={"note": "演练受理"})
    assert ack.status_code == 200

    r = await api.post(f"/api/v1/incidents/{inc['id']}/out-of-drill", json={"note": "真的冒烟了"})
    assert r.status_code == 200, r.text
    step = r.json()
    assert step["incident"]["drill_id"] is None
    assert step["incident"]["acked_ts"] is None  # the duty must take it anew
    assert step["targets"] == ["control_room"]  # the escalation starts now, at its first step
    await eventually(lambda: duty.bodies, what="the duty's push")
    assert duty.bodies[0]["title"].startswith("【火警】")
    assert "真实火警" in duty.bodies[0]["message"]
    detail = (await api.get(f"/api/v1/incidents/{inc['id']}")).json()
    assert [a["drill_id"] for a in detail["alarms"]] == [None]
    # Once is enough: it is not a drill's any more.
    again = await api.post(f"/api/v1/incidents/{inc['id']}/out-of-drill", json={})
    assert again.status_code == 409
    # With a real fire in its places the drill is over: another detector there alarms for real.
    assert (await api.get(f"/api/v1/drills/{drill['id']}")).json()["status"] == "ended"
    smoke(publisher, "smk-1-1")
    more = await incident_of(api, "smk-1-1")
    assert more["drill_id"] is None


async def test_a_drill_is_refused_for_unknown_places_a_bad_window_or_an_unknown_route(
    service: Service, api: httpx.AsyncClient
) -> None:
    now = service.clock()
    bad = [
        {"name": "x", "places": ["s1/nowhere"], "end": now + HOUR},
        {"name": "x", "places": ["s1/b1"], "start": now + HOUR, "end": now + 60},
        {"name": "x", "places": ["s1/b1"], "end": now + 25 * HOUR},
        {"name": "x", "places": ["s1/b1"], "end": now + HOUR, "routes": ["nobody"]},
        {"name": "x", "places": ["s1/b1"], "end": now + HOUR, "urls": ["not a url"]},
    ]
    for body in bad:
        r = await api.post("/api/v1/drills", json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    viewer = sign_in(make_accounts(service.sessions), "viewer-1", "viewer")
    r = await api.post(
        "/api/v1/drills", json={"name": "x", "places": ["s1/b1"], "end": now + HOUR}, headers=viewer
    )
    assert r.status_code == 403
    assert (await api.get("/api/v1/drills")).json()["total"] == 0


def pdf_text(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf)
    done = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, check=True)
    return done.stdout.decode()


async def test_a_drills_report_has_each_steps_time_who_acted_and_the_devices_test_button(
    service: Service,
    api: httpx.AsyncClient,
    publisher: Publisher,
    drill_inbox: Receiver,
    tmp_path: Path,
) -> None:
    drill = await declare(api, service, f"json://127.0.0.1:{drill_inbox.port}/drill")
    # The detector's own test button (自检): kept in its event log, raising no alarm.
    test_ts = time.time()
    publisher.send("fw/v1/s1/smk-1-1/event", {"ts": test_ts, "seq": 1, "event": "test"})

    async def logged() -> list[dict[str, Any]]:
        events = (await api.get("/api/v1/devices/smk-1-1/events")).json()
        return [e for e in events if e["event"] == "test"]

    (event,) = await eventually(logged, what="the test event in the device's log")
    assert event["ts"] == pytest.approx(test_ts)

    smoke(publisher, "smk-1-2")
    inc = await incident_of(api, "smk-1-2")
    assert [a["device_id"] for a in inc["alarms"]] == ["smk-1-2"]  # the test button raised nothing
    base = f"/api/v1/incidents/{inc['id']}"
    assert (await api.post(f"{base}/acknowledge", json={})).status_code == 200
    assert (await api.post(f"{base}/verify", json={"verifier": "微型消防站 王五"})).status_code == 200
    assert (await api.post(f"{base}/verdict", json={"verdict": "test"})).status_code == 200
    assert (await api.post(f"{base}/reset", json={})).status_code == 200

    r = await api.get(f"/api/v1/drills/{drill['id']}/report")
    assert r.status_code == 200, r.text
    report = r.json()
    (row,) = report["incidents"]
    steps = {s["step"]: s for s in row["steps"]}
    assert steps["acknowledged"]["by"] == "保卫科 周九"  # the display name, not the user name
    assert steps["verifying"]["by"] == "微型消防站 王五"
    assert steps["called_119"]["ts"] is None
    assert steps["called_119"]["seconds"] is None
    assert 0 <= steps["acknowledged"]["seconds"] <= steps["reset"]["seconds"]
    summary = {s["step"]: s for s in report["summary"]}
    assert summary["acknowledged"]["count"] == 1
    assert summary["called_119"]["count"] == 0
    assert summary["reset"]["max_s"] == steps["reset"]["seconds"]
    assert report["actors"] == ["保卫科 周九", "微型消防站 王五"]
    assert [(e["device_id"], e["ts"]) for e in report["test_events"]] == [("smk-1-1", pytest.approx(test_ts))]

    pdf = await api.get(f"/api/v1/drills/{drill['id']}/report.pdf")
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    text = pdf_text(pdf.content, tmp_path)
    assert "消防演练报告" in text
    assert "住院楼 1F 1区 消防演练" in text
    for label in ("受理", "前往核实", "复位", "保卫科 周九", "smk-1-1", "测试"):
        assert label in text, label
    assert "safety-1" not in text  # no user name where a display name exists
    missing = await api.get("/api/v1/drills/999/report")
    assert missing.status_code == 404


def test_a_drills_recipients_hear_every_step_the_duty_would_escalations_included() -> None:
    duty = PushRoute(name="duty", url="json://127.0.0.1:9/duty", roles=["control_room"], sites=["b1"])
    routes = recipient_routes(7, ["duty"], ["json://127.0.0.1:9/drill"], [duty])
    assert [r.name for r in routes] == ["duty", "drill-7-0"]
    for route in routes:
        assert route.roles == []  # the drill chose them: no filter of theirs
        assert route.sites == []
        heard = set(route.incident_actions)
        assert {IncidentAction.OPENED, IncidentAction.ESCALATED, IncidentAction.REMINDED} <= heard
        assert {IncidentAction.ACKNOWLEDGED, IncidentAction.VERIFY_OVERDUE, IncidentAction.RESET} <= heard
        assert IncidentAction.JOINED not in heard
