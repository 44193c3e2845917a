"""The registry's mirror in the state store at start-up (firewatch/service.py, storage/registry_sync.py).

A registry larger than `MIRROR_AT_START_MAX` devices is mirrored in the background once the service
ingests: alarms are detected and recorded meanwhile, the device and place lists answer 503 until
the mirror is whole, and then it equals the registry. A restart with the same registry finds its
fingerprint and rewrites nothing. The limit is lowered here so a small registry takes that path.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

import firewatch.service as service_module
import storage.registry_sync
from api.app import create_app
from core.registry import Registry
from core.settings import IngestSettings, MqttSettings, Settings
from firewatch.broker import Mosquitto
from firewatch.service import Service
from storage.models import DeviceRow
from storage.registry_sync import DEVICE_COLUMNS, device_rows
from tests.conftest import PROFILES, small_registry
from tests.mqtt_helpers import Publisher, reading
from tests.postgres import PrivatePostgres
from tests.waiting import eventually

pytestmark = pytest.mark.integration


def settings_for(data: Path, broker_url: str, registry: Path) -> Settings:
    return Settings(
        data_dir=data,
        registry=registry,
        mqtt=MqttSettings(url=broker_url, client_id=f"fw-mirror-{uuid.uuid4().hex[:8]}"),
        ingest=IngestSettings(liveness_check_s=0.1, batch_wait_ms=2),
    )


def registry_file(tmp_path: Path, registry: Registry) -> Path:
    path = tmp_path / "registry.yaml"
    path.write_text(registry.to_yaml(), encoding="utf-8")
    return path


def client_for(service: Service) -> httpx.AsyncClient:
    ctx = service.app_context()
    ctx.start = ctx.stop = None
    # Reading the lists needs a signed-in reader unless the accounts are the demo's: the demo's
    # open reading is not wanted here, so sign in as an admin made for the test.
    from core.domain import Role

    service.accounts.create_user("reader", "Kestrel-orbit-2049-lamp", [Role.ADMIN])
    issued, _ = service.accounts.login("reader", "Kestrel-orbit-2049-lamp")
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(ctx)),
        base_url="http://firewatch",
        headers={"Authorization": f"Bearer {issued.token}"},
    )


def mirrored_rows(service: Service) -> dict[str, tuple[Any, ...]]:
    with service.sessions() as s:
        rows = s.execute(select(*[DeviceRow.__table__.c[c] for c in DEVICE_COLUMNS])).all()
    return {r[0]: tuple(r) for r in rows}


@pytest.fixture
def large(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every registry counts as too large to mirror before start-up ends."""
    monkeypatch.setattr(service_module, "MIRROR_AT_START_MAX", 0)


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch, large: None) -> Iterator[threading.Event]:
    """The background sync waits until the test opens the gate."""
    opened = threading.Event()
    real = storage.registry_sync.sync_registry

    def gated(*args: Any, **kwargs: Any) -> Any:
        assert opened.wait(30), "the test never opened the gate"
        return real(*args, **kwargs)

    monkeypatch.setattr(service_module, "sync_registry", gated)
    yield opened
    opened.set()  # a sync still waiting ends with the test


@pytest.fixture
def publisher(mosquitto: Mosquitto) -> Iterator[Publisher]:
    pub = Publisher(mosquitto.host, mosquitto.port)
    yield pub
    pub.close()


@pytest.fixture
async def started(mosquitto: Mosquitto, tmp_path: Path) -> AsyncIterator[Callable[[Registry], Any]]:
    """Start a service on a registry (same data directory each time); all are stopped at the end."""
    services: list[Service] = []

    async def start(registry: Registry) -> Service:
        service = Service(
            settings_for(tmp_path, mosquitto.url, registry_file(tmp_path, registry)), profiles=PROFILES
        )
        services.append(service)
        await service.start()
        await asyncio.wait_for(service.source.connected.wait(), 10)
        return service

    yield start
    for service in services:
        await service.stop()


async def test_a_large_registry_ingests_and_alarms_before_its_mirror_is_written_which_then_equals_it(
    gate: threading.Event, started: Callable[[Registry], Any], publisher: Publisher
) -> None:
    registry = small_registry()
    service: Service = await started(registry)
    assert "sync registry mirror" not in service.phases.seconds  # not on the start-up path
    async with client_for(service) as api:
        for seq in (1, 2, 3):
            publisher.send("fw/v1/s1/smk-1-1/telemetry", reading(seq, 0.31))

        async def fires() -> list[dict[str, Any]]:
            page = (
                await api.get("/api/v1/alarms", params={"device_id": "smk-1-1", "category": "fire"})
            ).json()
            return list(page["items"])

        (fire,) = await eventually(fires)
        assert fire["place"] == "s1/b1/f1/z1/r101"
        assert not service.mirror_synced.is_set()
        assert mirrored_rows(service) == {}
        for path in ("/api/v1/devices", "/api/v1/devices/smk-1-1", "/api/v1/places"):
            waiting = await api.get(path)
            assert waiting.status_code == 503, path
            assert waiting.headers["Retry-After"] == "5"
            assert "still being written" in waiting.json()["detail"]

        gate.set()

        async def listed() -> int | None:
            answer = await api.get("/api/v1/devices", params={"limit": 1000})
            return int(answer.json()["total"]) if answer.status_code == 200 else None

        assert await eventually(listed) == len(registry.devices)
        assert (await api.get("/api/v1/places/s1/b1/f1/z1")).status_code == 200
    assert mirrored_rows(service) == device_rows(registry, PROFILES)
    assert service.mirror is not None
    assert not service.mirror.skipped


async def test_a_restart_with_the_same_registry_skips_the_mirror_and_a_changed_one_writes_the_change(
    large: None, started: Callable[[Registry], Any]
) -> None:
    registry = small_registry()
    first: Service = await started(registry)
    await eventually(lambda: first.mirror_synced.is_set())
    await first.stop()

    again: Service = await started(registry)
    await eventually(lambda: again.mirror_synced.is_set())
    assert again.mirror is not None
    assert again.mirror.skipped
    assert (again.mirror.written, again.mirror.deleted) == (0, 0)
    await again.stop()

    renamed = registry.replacing_device(registry.devices["smk-2-2"].model_copy(update={"name": "护士站"}))
    changed: Service = await started(renamed)
    await eventually(lambda: changed.mirror_synced.is_set())
    assert changed.mirror is not None
    assert not changed.mirror.skipped
    assert (changed.mirror.written, changed.mirror.deleted) == (1, 1)  # the renamed device's row
    assert mirrored_rows(changed) == device_rows(renamed, PROFILES)


async def test_a_registry_change_before_the_first_sync_writes_the_mirror_whole(
    large: None, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    registry = small_registry()
    service = Service(
        settings_for(tmp_path, mosquitto.url, registry_file(tmp_path, registry)), profiles=PROFILES
    )
    try:
        assert not service.mirror_synced.is_set()  # not started: no background sync yet
        removed = registry.without_device("smk-1-1")
        await asyncio.to_thread(service.apply_registry, removed)
        assert service.mirror_synced.is_set()
        assert mirrored_rows(service) == device_rows(removed, PROFILES)
        await service.start()  # no background sync: the mirror is whole
        assert service.mirror_synced.is_set()
        assert mirrored_rows(service) == device_rows(removed, PROFILES)
    finally:
        await service.stop()


async def test_a_large_registry_started_while_the_state_store_is_down_is_mirrored_once_it_answers(
    large: None, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    cluster = PrivatePostgres().start()
    registry = small_registry()
    try:
        url = cluster.url(cluster.create_database())
        cluster.halt()  # down before the service starts
        settings = settings_for(tmp_path, mosquitto.url, registry_file(tmp_path, registry))
        service = Service(settings.model_copy(update={"database_url": url}), profiles=PROFILES)
        try:
            await service.start()
            await asyncio.wait_for(service.source.connected.wait(), 10)
            assert service.store_error is not None
            assert not service.mirror_synced.is_set()

            cluster.resume()  # the pipeline sets the store up; the background sync then writes the mirror
            await eventually(lambda: service.mirror_synced.is_set(), timeout=60)
            assert mirrored_rows(service) == device_rows(registry, PROFILES)
        finally:
            await service.stop()
    finally:
        cluster.close()
