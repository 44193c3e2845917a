"""Pushes per incident, end to end: a zone fire over MQTT through the running service to a real
HTTP receiver on loopback, on the shipped fire escalation chain, with the service's clock twenty
times faster than real time (ten minutes in thirty seconds)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from core.settings import IngestSettings, MqttSettings, PushRoute, Settings
from firewatch.broker import Mosquitto
from firewatch.service import Service
from tests.conftest import PROFILES, small_registry
from tests.mqtt_helpers import Publisher
from tests.test_pushes import Receiver, free_port
from tests.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("accelerated")]

SCALE = 20.0
TEN_MINUTES = 600.0


@pytest.fixture
def receiver() -> Any:
    r = Receiver(free_port())
    r.start()
    yield r
    r.stop()


async def test_a_zone_fire_reaches_the_control_room_in_at_most_three_pushes_in_ten_minutes(
    mosquitto: Mosquitto, tmp_path: Path, receiver: Receiver
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        mqtt=MqttSettings(url=mosquitto.url, client_id=f"fw-inc-{uuid.uuid4().hex[:8]}"),
        ingest=IngestSettings(batch_wait_ms=2),
        # The control room's webhook; the shipped chain escalates to the micro fire station and
        # the leader on call, who have no route here (the board and the timeline show it).
        pushes=[
            PushRoute(
                name="control-room", url=f"json://127.0.0.1:{receiver.port}/hook", roles=["control_room"]
            )
        ],
        time_scale=SCALE,
    )
    svc = Service(settings, registry=small_registry(zones=2, smoke_per_zone=3), profiles=PROFILES)
    publisher = Publisher(mosquitto.host, mosquitto.port)
    await svc.start()
    try:
        await asyncio.wait_for(svc.source.connected.wait(), 10)
        start = svc.clock()
        # Three detectors of zone 1 see smoke, one after the other, and keep seeing it.
        seq = 0
        while svc.clock() - start < TEN_MINUTES:
            seq += 1
            for i in (1, 2, 3):
                if svc.clock() - start >= (i - 1) * 20:
                    ts = svc.clock()
                    publisher.send(
                        f"fw/v1/s1/smk-1-{i}/telemetry", {"ts": ts, "seq": seq, "v": {"smoke": 0.4}}
                    )
            await asyncio.sleep(0.5)
        await eventually(lambda: svc.dispatcher.pending() == 0)
    finally:
        publisher.close()
        await svc.stop()
    notices = [b for b in receiver.bodies if b["title"].startswith("【火警】")]
    incidents = {b["message"].split("位置: ")[1].split("\n")[0] for b in notices}
    assert len(incidents) == 1  # one fire, one incident: not a push per detector
    titles = [b["title"].split(" ")[-1] for b in notices]
    # Its first push is the fire; then, nobody having acknowledged or verified it, the overdue
    # verification (an escalation) and at most one reminder within the ten minutes.
    assert titles[0] in ("报警", "升级为火警")
    escalations = [t for t in titles if "超时未核实" in t or "已升级" in t]
    assert any("超时未核实" in t for t in titles)  # 3 minutes without a verdict: the leader on call
    assert len(titles) - len(escalations) <= 3
    assert len(titles) <= 4
