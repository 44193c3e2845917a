"""Changing the registry of a running service over the API (issue 7).

The real service over a real mosquitto where the data path matters (a device registered, removed or
left alone while messages flow); the same service, not started, where only the API answers matter.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

import api.routes.devices as device_routes
from api.app import create_app
from core.registry import load_registry
from core.registry_io import BOM
from core.settings import IngestSettings, MqttSettings, Settings
from device_profiles.schema import Profile
from firewatch.broker import Mosquitto
from firewatch.service import Service
from ingest.envelope import Message
from tests.conftest import PRESSURE, SMOKE, small_registry
from tests.mqtt_helpers import Publisher, reading
from tests.waiting import eventually

pytestmark = pytest.mark.integration

# The test smoke detector with a debounced pre-alarm: three readings in a row at or above 0.10.
_smoke = SMOKE.model_dump(mode="json")
_smoke["detectors"][0]["levels"][0]["repeat"] = 3
DEBOUNCED_SMOKE = Profile.model_validate(_smoke)
PROFILES = {p.id: p for p in (DEBOUNCED_SMOKE, PRESSURE)}
PASSWORD = "Kestrel-orbit-2049-lamp"


def settings_for(data: Path, broker_url: str, registry: Path | None) -> Settings:
    return Settings(
        data_dir=data,
        registry=registry,
        mqtt=MqttSettings(url=broker_url, client_id=f"fw-reg-{uuid.uuid4().hex[:8]}"),
        ingest=IngestSettings(liveness_check_s=0.1, batch_wait_ms=2),
    )


def registry_file(tmp_path: Path) -> Path:
    path = tmp_path / "registry.yaml"
    path.write_text(small_registry().to_yaml(), encoding="utf-8")
    return path


def admin_headers(service: Service) -> dict[str, str]:
    """An admin's token where the service has accounts (registry changes are an admin's)."""
    accounts = getattr(service, "accounts", None)
    if accounts is None:
        return {}
    from core.domain import Role

    accounts.create_user("registrar", PASSWORD, [Role.ADMIN])
    issued, _ = accounts.login("registrar", PASSWORD)
    return {"Authorization": f"Bearer {issued.token}"}


def client_for(service: Service, headers: dict[str, str]) -> httpx.AsyncClient:
    ctx = service.app_context()
    ctx.start = ctx.stop = None  # the fixtures own the service's lifecycle
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(ctx)), base_url="http://firewatch", headers=headers
    )


@pytest.fixture
async def running(mosquitto: Mosquitto, tmp_path: Path) -> AsyncIterator[tuple[Service, httpx.AsyncClient]]:
    service = Service(settings_for(tmp_path, mosquitto.url, registry_file(tmp_path)), profiles=PROFILES)
    headers = admin_headers(service)  # before start: the service's clocks write to the store too
    await service.start()
    await asyncio.wait_for(service.source.connected.wait(), 10)
    async with client_for(service, headers) as api:
        yield service, api
    await service.stop()


@pytest.fixture
async def idle(tmp_path: Path) -> AsyncIterator[tuple[Service, httpx.AsyncClient]]:
    """The service's API without its loops (a broker URL that is never dialled)."""
    service = Service(
        settings_for(tmp_path, "mqtt://127.0.0.1:9", registry_file(tmp_path)), profiles=PROFILES
    )
    async with client_for(service, admin_headers(service)) as api:
        yield service, api
    service.telemetry.close()
    service.db.dispose()


@pytest.fixture
def publisher(mosquitto: Mosquitto) -> Iterator[Publisher]:
    pub = Publisher(mosquitto.host, mosquitto.port)
    yield pub
    pub.close()


def alarms_of(api: httpx.AsyncClient, device_id: str, category: str) -> Callable[[], Any]:
    async def check() -> list[dict[str, Any]]:
        page = (await api.get("/api/v1/alarms", params={"device_id": device_id, "category": category})).json()
        return list(page["items"])

    return check


NEW_DEVICE = {
    "id": "smk-new",
    "profile": "t-smoke",
    "place": "s1/b1/f1/z1/r101",
    "name": "新装 走廊烟感",
    "gateway": "gw-1f-east",
}


# --- the data path ----------------------------------------------------------------------------------


async def test_a_discovered_device_registered_over_the_api_is_stored_and_alarms_from_then_on(
    running: tuple[Service, httpx.AsyncClient], publisher: Publisher
) -> None:
    service, api = running
    publisher.send("fw/v1/s1/smk-new/telemetry", reading(1, 0.02))

    async def discovered() -> list[str]:
        items = (await api.get("/api/v1/devices/discovered")).json()["items"]
        return [d["device_id"] for d in items]

    assert await eventually(discovered) == ["smk-new"]

    created = await api.post("/api/v1/devices", json=NEW_DEVICE)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["device"]["name"] == "新装 走廊烟感"
    assert body["device"]["department"] == "心内科"  # inherited from its zone
    assert body["change"]["added"] == ["smk-new"]
    assert body["change"]["persisted"] is True
    assert await discovered() == []
    assert (await api.get("/api/v1/devices/smk-new")).json()["room"] == "r101"
    # A restart keeps it: the registry file has it, with the gateway it reports through.
    assert load_registry(service.settings.registry or Path()).devices["smk-new"].gateway == "gw-1f-east"

    publisher.send("fw/v1/s1/smk-new/telemetry", reading(2, 0.05))
    publisher.send("fw/v1/s1/smk-new/telemetry", reading(3, 0.31))
    (fire,) = await eventually(alarms_of(api, "smk-new", "fire"))
    assert fire["alarm_type"] == "smoke.alarm"
    assert fire["place"] == "s1/b1/f1/z1/r101"
    history = (await api.get("/api/v1/devices/smk-new/history", params={"channel": "smoke"})).json()
    assert history["value"] == [0.05, 0.31]
    assert await discovered() == []


async def test_a_removed_device_s_later_messages_are_rejects_while_its_alarms_and_history_stay(
    running: tuple[Service, httpx.AsyncClient], publisher: Publisher
) -> None:
    service, api = running
    publisher.send("fw/v1/s1/smk-1-1/telemetry", reading(1, 0.31))
    (fire,) = await eventually(alarms_of(api, "smk-1-1", "fire"))

    removed = await api.delete("/api/v1/devices/smk-1-1")
    assert removed.status_code == 204
    assert removed.headers["X-Registry-Persisted"] == "true"
    assert (await api.get("/api/v1/devices/smk-1-1")).status_code == 404
    assert "smk-1-1" not in load_registry(service.settings.registry or Path()).devices

    publisher.send("fw/v1/s1/smk-1-1/telemetry", reading(2, 0.40))

    async def rejected() -> list[dict[str, Any]]:
        items = (await api.get("/api/v1/rejects", params={"reason": "unknown_device"})).json()["items"]
        return [r for r in items if r["device_id"] == "smk-1-1"]

    assert await eventually(rejected)
    (first, *_) = await rejected()
    assert first["reason_zh"] == "未登记的设备"  # beside the code, for the people who read it
    still = (await api.get(f"/api/v1/alarms/{fire['id']}")).json()
    assert still["state"] == "active_unacknowledged"
    history = (await api.get("/api/v1/devices/smk-1-1/history", params={"channel": "smoke"})).json()
    assert history["value"] == [0.31]


async def test_a_device_that_stays_keeps_its_debounce_across_an_unrelated_change(
    running: tuple[Service, httpx.AsyncClient], publisher: Publisher
) -> None:
    """Two of the three readings a pre-alarm needs arrive before the change, the third after it:
    the pre-alarm comes with the third, as it would have without the change."""
    service, api = running
    engine = service.engine
    for seq in (1, 2):
        publisher.send("fw/v1/s1/smk-2-1/telemetry", reading(seq, 0.12))

    async def accepted_two() -> bool:
        return service.pipeline.accepted >= 2

    await eventually(accepted_two)
    assert await alarms_of(api, "smk-2-1", "pre_alarm")() == []

    assert (await api.post("/api/v1/devices", json=NEW_DEVICE)).status_code == 201
    assert service.engine is not engine  # the engine was rebuilt over the new registry...
    publisher.send("fw/v1/s1/smk-2-1/telemetry", reading(3, 0.12))
    (pre,) = await eventually(alarms_of(api, "smk-2-1", "pre_alarm"))  # ...and remembered two of three
    assert pre["alarm_type"] == "smoke.pre_alarm"
    assert pre["value"] == 0.12


async def test_messages_flowing_through_registry_changes_are_all_accepted_and_a_fire_still_alarms(
    running: tuple[Service, httpx.AsyncClient], publisher: Publisher
) -> None:
    service, api = running
    n = 200

    def publish() -> None:
        publisher.send_many(
            ("fw/v1/s1/smk-2-2/telemetry", orjson_reading(seq, 0.02 + seq / 10_000)) for seq in range(1, n)
        )
        publisher.send("fw/v1/s1/smk-2-2/telemetry", reading(n, 0.33))

    flowing = asyncio.create_task(asyncio.to_thread(publish))
    for i in range(4):  # changes that leave smk-2-2 alone, while its messages arrive
        extra = {**NEW_DEVICE, "id": f"smk-extra-{i}"}
        assert (await api.post("/api/v1/devices", json=extra)).status_code == 201
        assert (await api.delete("/api/v1/devices/smk-1-3")).status_code in (204, 404)
    await flowing

    (fire,) = await eventually(alarms_of(api, "smk-2-2", "fire"))
    assert fire["value"] == 0.33

    async def all_stored() -> bool:
        h = (await api.get("/api/v1/devices/smk-2-2/history", params={"channel": "smoke"})).json()
        return len(h["value"]) == n

    await eventually(all_stored)
    totals = (await api.get("/api/v1/rejects/totals")).json()["totals"]
    assert "unknown_device" not in totals  # nothing of smk-2-2 was turned away
    assert service.pipeline.rejected == 0


def orjson_reading(seq: int, smoke: float) -> bytes:
    import orjson

    return orjson.dumps(reading(seq, smoke))


def test_a_batch_detected_before_a_change_and_stored_after_it_lands_in_its_own_series(
    idle: tuple[Service, httpx.AsyncClient],
) -> None:
    """Removing 'prs-1' moves every smoke detector's slots down by one; batches on either side of
    the change, stored later, must still go to smk-1-1's series."""
    service, _ = idle
    now = service.clock()

    def message(seq: int, smoke: float) -> Message:
        payload = orjson_reading(seq, smoke)
        return Message("fw/v1/s1/smk-1-1/telemetry", payload, received=now)

    before = service.pipeline.detect([message(1, 0.02)])
    service.apply_registry(lambda current: current.without_device("prs-1"))
    after = service.pipeline.detect([message(2, 0.03)])
    service.pipeline.store_telemetry(before)
    service.pipeline.store_telemetry(after)
    assert service.telemetry.history("smk-1-1", "smoke", now - 60, now + 60).value.tolist() == [0.02, 0.03]
    assert service.telemetry.history("smk-1-1", "temp", now - 60, now + 60).value.tolist() == [24.0, 24.0]


# --- the API's answers ------------------------------------------------------------------------------


async def test_registration_mistakes_are_problems_that_say_what_is_wrong(
    idle: tuple[Service, httpx.AsyncClient],
) -> None:
    service, api = idle
    cases = [
        ("post", "/api/v1/devices", {**NEW_DEVICE, "id": "smk-1-1"}, 409, "registered already"),
        ("post", "/api/v1/devices", {**NEW_DEVICE, "profile": "t-heat"}, 422, "unknown profiles ['t-heat']"),
        (
            "post",
            "/api/v1/devices",
            {**NEW_DEVICE, "place": "s1/b9"},
            422,
            "'s1/b9' is not in the place tree",
        ),
        ("post", "/api/v1/devices", {**NEW_DEVICE, "place": "s1/b1/f1"}, 422, "not a zone or room"),
        ("post", "/api/v1/devices", {**NEW_DEVICE, "id": "a/b"}, 422, "id"),
        (
            "put",
            "/api/v1/devices/nope",
            {"profile": "t-smoke", "place": "s1/b1/f1/z1"},
            404,
            "not registered",
        ),
        ("delete", "/api/v1/devices/nope", None, 404, "not registered"),
    ]
    for method, url, body, status, detail in cases:
        response = await api.request(method.upper(), url, json=body)
        assert response.status_code == status, (url, body, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert detail in response.json()["detail"], response.json()
    assert service.registry.specs.keys() == small_registry().specs.keys()

    # A discovered device publishes under its site: registered in another, it would still be refused.
    service.pipeline.rejects.add([], [("s9", "smk-elsewhere", service.clock())])
    response = await api.post("/api/v1/devices", json={**NEW_DEVICE, "id": "smk-elsewhere"})
    assert response.status_code == 422
    assert "publishes under site 's9'" in response.json()["detail"]


async def test_a_device_is_replaced_whole_and_two_registrations_at_once_both_count(
    idle: tuple[Service, httpx.AsyncClient],
) -> None:
    service, api = idle
    replaced = await api.put(
        "/api/v1/devices/smk-1-1",
        json={"profile": "t-smoke", "place": "s1/b1/f1/z2", "name": "移到2区", "tags": ["moved"]},
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["change"]["changed"] == ["smk-1-1"]
    assert replaced.json()["device"]["zone"] == "z2"
    assert replaced.json()["device"]["responsible"] == ""  # replaced whole, not merged

    a, b = await asyncio.gather(
        api.post("/api/v1/devices", json={**NEW_DEVICE, "id": "smk-a"}),
        api.post("/api/v1/devices", json={**NEW_DEVICE, "id": "smk-b"}),
    )
    assert (a.status_code, b.status_code) == (201, 201)
    assert {"smk-a", "smk-b"} <= service.registry.devices.keys()
    listed = (await api.get("/api/v1/devices", params={"limit": 1000})).json()["items"]
    assert {"smk-a", "smk-b"} <= {d["id"] for d in listed}


async def test_the_yaml_export_is_what_the_service_reads_and_re_imports_identically(
    idle: tuple[Service, httpx.AsyncClient],
) -> None:
    service, api = idle
    exported = await api.get("/api/v1/registry")
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("application/yaml")
    assert exported.text == (service.settings.registry or Path()).read_text(encoding="utf-8")

    imported = await api.put(
        "/api/v1/registry", content=exported.content, headers={"content-type": "application/yaml"}
    )
    assert imported.status_code == 200, imported.text
    change = imported.json()
    assert change["applied"] is True
    assert (change["added"], change["removed"], change["changed"], change["places_changed"]) == (
        [],
        [],
        [],
        False,
    )
    assert (await api.get("/api/v1/registry")).text == exported.text


async def test_a_csv_import_replaces_the_device_list_and_a_dry_run_only_reports_the_diff(
    idle: tuple[Service, httpx.AsyncClient],
) -> None:
    service, api = idle
    exported = await api.get("/api/v1/registry", params={"format": "csv"})
    assert exported.headers["content-type"].startswith("text/csv")
    assert exported.content.startswith(BOM.encode("utf-8"))
    rows = exported.content.decode("utf-8-sig").splitlines()
    header = "id,profile,place,name,department,responsible,installed,position_x,position_y,tags,gateway"
    assert rows[0] == header + ",plan_x,plan_y"
    assert "smk-1-1,t-smoke,s1/b1/f1/z1/r101,,,张三,,,,,,," in rows

    edited = [r for r in rows if not r.startswith("prs-1,")]  # removed
    edited = [
        r.replace("smk-1-1,t-smoke,s1/b1/f1/z1/r101,", "smk-1-1,t-smoke,s1/b1/f1/z1/r101,一号床头")
        for r in edited
    ]
    edited.append(
        "smk-icu-9,t-smoke,s1/b1/f1/z2/r201,重症 烟感,重症医学科,王五,2024-03-01,1.5,2,icu;夜间,gw-2f,,"
    )
    body = ("\r\n".join(edited) + "\r\n").encode("utf-8")

    dry = await api.put(
        "/api/v1/registry", params={"dry_run": True}, content=body, headers={"content-type": "text/csv"}
    )
    assert dry.status_code == 200, dry.text
    diff = dry.json()
    assert (diff["applied"], diff["added"], diff["removed"], diff["changed"]) == (
        False,
        ["smk-icu-9"],
        ["prs-1"],
        ["smk-1-1"],
    )
    assert "prs-1" in service.registry.devices  # nothing applied
    assert (await api.get("/api/v1/devices/smk-icu-9")).status_code == 404

    applied = await api.put(
        "/api/v1/registry", content=body, headers={"content-type": "text/csv; charset=utf-8"}
    )
    assert applied.status_code == 200, applied.text
    assert applied.json()["applied"] is True
    icu = (await api.get("/api/v1/devices/smk-icu-9")).json()
    assert (icu["name"], icu["department"], icu["installed"], icu["tags"]) == (
        "重症 烟感",
        "重症医学科",
        "2024-03-01",
        ["icu", "夜间"],
    )
    assert (await api.get("/api/v1/devices/prs-1")).status_code == 404
    assert service.registry.places == small_registry().places  # the place tree stayed
    again = await api.get("/api/v1/registry", params={"format": "csv"})
    assert again.content.decode("utf-8-sig").splitlines()[1:] == [r for r in edited[1:]]


async def test_an_import_with_errors_applies_nothing_and_names_every_line(
    idle: tuple[Service, httpx.AsyncClient],
) -> None:
    service, api = idle
    before = service.registry
    body = (
        "id,profile,place\n"
        "smk-1-1,t-smoke,s1/b1/f1/z1\n"
        "ok,t-heat,s1/b1/f1/z1\n"  # line 3
        "fine,t-smoke,s1/b1/f1/z1\n"
        "lost,t-smoke,s1/b7/f1/z1\n"  # line 5
    )
    response = await api.put("/api/v1/registry", content=body.encode(), headers={"content-type": "text/csv"})
    assert response.status_code == 422
    problem = response.json()
    assert problem["title"] == "Invalid registry"
    assert [(e["line"], e["msg"].split(" (")[0]) for e in problem["errors"]] == [
        (3, "unknown profile 't-heat'"),
        (5, "device 'lost': place 's1/b7/f1/z1' is not in the place tree"),
    ]
    assert "nothing was applied" in problem["detail"]
    assert service.registry is before

    broken_yaml = "sites:\n- id: s1\n  name: x\ndevices:\n- {id: d1, profile: t-smoke, place: s1/b1}\n"
    response = await api.put(
        "/api/v1/registry", content=broken_yaml, headers={"content-type": "application/yaml"}
    )
    assert response.status_code == 422
    assert [e["line"] for e in response.json()["errors"]] == [5]
    assert service.registry is before


async def test_an_import_too_large_or_of_another_type_is_refused(
    idle: tuple[Service, httpx.AsyncClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, api = idle
    response = await api.put(
        "/api/v1/registry", content=b"id,profile,place\n", headers={"content-type": "text/plain"}
    )
    assert response.status_code == 415
    monkeypatch.setattr(device_routes, "MAX_IMPORT_BYTES", 100)
    response = await api.put("/api/v1/registry", content=b"x" * 101, headers={"content-type": "text/csv"})
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_the_built_in_demo_registry_is_changed_in_memory_and_the_answer_says_so(tmp_path: Path) -> None:
    service = Service(
        settings_for(tmp_path, "mqtt://127.0.0.1:9", None), registry=small_registry(), profiles=PROFILES
    )
    try:
        async with client_for(service, admin_headers(service)) as api:
            created = await api.post("/api/v1/devices", json=NEW_DEVICE)
            assert created.status_code == 201
            change = created.json()["change"]
            assert change["persisted"] is False
            assert "in memory" in change["note"]
            exported = yaml.safe_load((await api.get("/api/v1/registry")).text)
            assert "smk-new" in [d["id"] for d in exported["devices"]]
    finally:
        service.telemetry.close()
        service.db.dispose()
