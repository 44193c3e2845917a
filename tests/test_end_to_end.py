"""End to end: the simulated hospital publishes over a real mosquitto into the real service; a staged
fire and a silent device must come out of the API as a fire alarm and an offline ticket. The service
and its devices share a clock running 30 times faster than real time."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from core.domain import Role
from core.registry import load_registry
from core.settings import IngestSettings, MqttSettings, Settings
from firewatch.broker import Mosquitto
from firewatch.demo import plan_for
from firewatch.service import DEMO_REGISTRY, Service
from simulators.fleet import Fleet
from simulators.live import LiveFleet

pytestmark = pytest.mark.integration

TIME_SCALE = 30.0  # a smoke detector's 90 s offline limit is 3 s of wall time


@pytest.fixture
async def hospital(
    mosquitto: Mosquitto, tmp_path: Path
) -> AsyncIterator[tuple[Service, LiveFleet, httpx.AsyncClient]]:
    registry = load_registry(DEMO_REGISTRY)
    settings = Settings(
        data_dir=tmp_path,
        mqtt=MqttSettings(url=mosquitto.url, client_id=f"fw-e2e-{uuid.uuid4().hex[:8]}"),
        ingest=IngestSettings(liveness_check_s=0.2),
        time_scale=TIME_SCALE,
    )
    service = Service(settings, registry=registry)
    await service.start()
    await asyncio.wait_for(service.source.connected.wait(), 10)
    sim = LiveFleet(Fleet(registry, service.profiles, impairments=False), service.clock)
    sim_task = asyncio.create_task(sim.run(mosquitto.host, mosquitto.port))
    ctx = service.app_context()
    ctx.start = ctx.stop = None
    # The duty room's screen reads the API with a viewer's key.
    key, _ = service.accounts.create_api_key("duty-screen", [Role.VIEWER], by="test")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(ctx)),
        base_url="http://fw",
        headers={"Authorization": f"Bearer {key.token}"},
    ) as api:
        yield service, sim, api
    sim.stop()
    await asyncio.wait_for(sim_task, 10)
    await service.stop()


async def poll(
    api: httpx.AsyncClient, url: str, params: dict[str, Any], timeout: float = 30.0
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items: list[dict[str, Any]] = (await api.get(url, params=params)).json()["items"]
        if items:
            return items
        await asyncio.sleep(0.2)
    raise AssertionError(f"nothing at {url} {params} within {timeout} s")


async def test_a_staged_fire_and_a_silent_device_become_an_alarm_and_a_ticket(
    hospital: tuple[Service, LiveFleet, httpx.AsyncClient],
) -> None:
    service, sim, api = hospital
    plan = plan_for(service)
    # The hospital reports normally first: nothing is on fire.
    await asyncio.sleep(2.0)  # a minute of simulated time
    assert (await api.get("/api/v1/alarms", params={"category": "fire"})).json()["total"] == 0
    assert service.pipeline.accepted > service.index.n_devices

    sim.fleet.flaming_fire(plan.fire_zone, sim.t)
    sim.fleet.silence(plan.silent_device)
    fire = await poll(api, "/api/v1/alarms", {"category": "fire"})
    zone_devices = {d for d, loc in service.registry.locations.items() if loc.zone_path == plan.fire_zone}
    assert {a["device_id"] for a in fire} <= zone_devices
    assert all(a["state"] == "active_unacknowledged" for a in fire)

    tickets = await poll(api, "/api/v1/tickets", {"device_id": plan.silent_device})
    assert tickets[0]["hazard_type"] == "device.offline"
    assert tickets[0]["problem"]
    offline = (await api.get("/api/v1/alarms", params={"device_id": plan.silent_device, "open": True})).json()
    assert [a["alarm_type"] for a in offline["items"]] == ["device.offline"]
    # Nobody else went offline while everything else kept reporting.
    all_offline = (await api.get("/api/v1/alarms", params={"limit": 1000, "open": True})).json()["items"]
    assert {a["device_id"] for a in all_offline if a["alarm_type"] == "device.offline"} == {
        plan.silent_device
    }
