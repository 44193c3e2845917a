"""Escalation to the people on duty, end to end: the real service (MQTT from the private broker,
the state store, the dispatcher) pushes a fire to the Apprise json:// addresses of the people the
roster has on duty at send time, each a path on a real HTTP server on loopback. The service's clock
runs forty times faster than real time, so shifts of a few minutes change within seconds."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from core.domain import AlarmCategory, Role
from core.settings import (
    AlarmPolicySettings,
    EscalationChain,
    EscalationStep,
    IngestSettings,
    MqttSettings,
    PushRoute,
    Settings,
)
from firewatch.broker import Mosquitto
from firewatch.service import Service
from roster.rules import Member, ShiftDraft
from roster.service import RosterService
from storage.models import DeliveryRow, IncidentRow, OutboxRow
from tests.conftest import PROFILES, TEST_PASSWORD, small_registry
from tests.mqtt_helpers import Publisher
from tests.test_pushes import free_port
from tests.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("accelerated")]

SCALE = 40.0
SHIFT_S = 300.0  # five minutes of the service's clock: 7.5 s of real time


class People:
    """A real HTTP server on loopback where each person on duty has a path: what was posted where."""

    def __init__(self) -> None:
        self.port = free_port()
        self.posts: list[tuple[str, dict[str, Any]]] = []
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                posts.append((self.path.strip("/"), json.loads(self.rfile.read(length))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def url(self, who: str) -> str:
        return f"json://127.0.0.1:{self.port}/{who}"

    def got(self, who: str) -> list[dict[str, Any]]:
        return [body for path, body in list(self.posts) if path == who]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def people() -> Iterator[People]:
    p = People()
    yield p
    p.close()


DAY = {"a1": "甲一", "a2": "甲二", "la": "甲领导"}
NIGHT = {"b1": "乙一", "b2": "乙二", "lb": "乙领导"}


def on_shift(names: dict[str, str]) -> tuple[Member, ...]:
    user_a, user_b, leader = names
    return (
        Member(user_a, "control_room"),
        Member(user_b, "control_room"),
        Member(leader, "leader_on_call"),
    )


async def test_a_fire_reaches_the_people_on_duty_then_the_next_shift_and_a_gap_falls_back_to_the_url(
    mosquitto: Mosquitto, tmp_path: Path, people: People
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        mqtt=MqttSettings(url=mosquitto.url, client_id=f"fw-roster-{uuid.uuid4().hex[:8]}"),
        ingest=IngestSettings(batch_wait_ms=2),
        pushes=[
            PushRoute(
                name="duty",
                roster=True,
                roles=["control_room", "leader_on_call"],
                url=people.url("fallback"),
                update_interval_s=0,  # every step at once: the shift change is the point here
            )
        ],
        alarms=AlarmPolicySettings(
            escalation=[
                EscalationChain(
                    name="fire",
                    categories=[AlarmCategory.FIRE],
                    steps=[
                        EscalationStep(role="control_room", wait_s=30.0),
                        EscalationStep(role="leader_on_call", wait_s=30.0),
                    ],
                    remind_every_s=3600.0,
                )
            ],
            verify_limit_s=3600.0,
        ),
        time_scale=SCALE,
    )
    svc = Service(settings, registry=small_registry(zones=1, smoke_per_zone=1), profiles=PROFILES)
    publisher = Publisher(mosquitto.host, mosquitto.port)
    await svc.start()
    try:
        await asyncio.wait_for(svc.source.connected.wait(), 10)
        roster = RosterService(svc.sessions, svc.clock)
        for user, display in {**DAY, **NIGHT}.items():
            svc.accounts.create_user(user, TEST_PASSWORD, [Role.OPERATOR], display_name=display)
            roster.set_contact(user, "", [people.url(user)], "test")
        t0 = svc.clock()
        roster.create(ShiftDraft("白班", t0 - 3600, t0 + SHIFT_S, on_shift(DAY)), "test")
        roster.create(ShiftDraft("夜班", t0 + SHIFT_S, t0 + 2 * SHIFT_S, on_shift(NIGHT)), "test")

        publisher.send("fw/v1/s1/smk-1-1/telemetry", {"ts": svc.clock(), "seq": 1, "v": {"smoke": 0.4}})
        # The fire goes to both people in the control room on duty now, naming them.
        first = await eventually(lambda: people.got("a1") and people.got("a2"), what="the control room")
        assert first
        fire = people.got("a1")[0]
        assert fire["title"].startswith("【火警】")
        assert "值班人员：甲一、甲二" in fire["message"]
        assert people.got("a2")[0]["title"] == fire["title"]
        # Unacknowledged after 30 s of the service's clock: the leader on call of this shift.
        await eventually(lambda: people.got("la"), what="the leader on call")
        assert people.got("lb") == []

        # The night shift takes over; the day shift's control room acknowledges nothing, the night
        # shift's does, and that step reaches the night shift's people, not the day shift's.
        await eventually(lambda: svc.clock() > t0 + SHIFT_S + 1, what="the shift change")
        with svc.sessions() as s:
            incident_id = s.scalars(select(IncidentRow.id).where(IncidentRow.kind == "fire")).one()
        day_posts = len(people.got("a1"))
        await asyncio.to_thread(svc.alarms.acknowledge_incident, incident_id, actor="b1")
        await eventually(
            lambda: people.got("b1") and people.got("b2") and people.got("lb"), what="the night shift"
        )
        assert "值班人员：乙一、乙二、乙领导" in people.got("b1")[-1]["message"]
        assert len(people.got("a1")) == day_posts

        # After the night shift nobody is on duty: the reset goes to the route's url, saying so.
        await eventually(lambda: svc.clock() > t0 + 2 * SHIFT_S + 1, what="the end of the roster")
        await asyncio.to_thread(svc.alarms.reset_incident, incident_id, actor="b1")
        fallback = await eventually(lambda: people.got("fallback"), what="the fallback url")
        assert "注意：消防控制室、值班领导当前无人值班，已发往路由固定地址" in fallback[-1]["message"]
        await eventually(lambda: svc.dispatcher.pending() == 0, what="every push delivered")
        with svc.sessions() as s:
            log = s.execute(
                select(DeliveryRow.detail, DeliveryRow.recipients)
                .join(OutboxRow, OutboxRow.id == DeliveryRow.outbox_id)
                .where(
                    OutboxRow.incident_id == incident_id,
                    OutboxRow.route == "duty",
                    DeliveryRow.ok.is_(True),
                )
                .order_by(DeliveryRow.id)
            ).all()
    finally:
        publisher.close()
        await svc.stop()
    # The delivery log names who each push went to, and which address.
    details = [d for d, _ in log]
    assert details[0] == "值班人员：甲一、甲二"
    assert "值班人员：乙一、乙二、乙领导" in details
    assert details[-1] == "消防控制室、值班领导无人值班，已发往路由固定地址"
    first_recipients = log[0][1]
    assert [(r["name"], r["role"], r["address"]) for r in first_recipients] == [
        ("甲一", "control_room", f"json://127.0.0.1:{people.port}/a1"),
        ("甲二", "control_room", f"json://127.0.0.1:{people.port}/a2"),
    ]
    assert log[-1][1][0]["fallback"] is True
    gaps = svc.metrics.registry.get_sample_value(
        "fw_push_roster_gaps_total", {"route": "duty", "role": "control_room"}
    )
    assert gaps is not None
    assert gaps >= 1
