"""Floor plans (平面图) over the API (issue 22): a plan per floor uploaded as PNG, SVG or a PDF page,
and each device's position on it kept in the registry.

The real service (not started: only its API and state store are needed) on SQLite and PostgreSQL,
its registry in a YAML file; images made here with Pillow and reportlab.
"""

from __future__ import annotations

import io
import struct
import uuid
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from PIL import Image
from reportlab.pdfgen import canvas

from core.floor_plans import MAX_PLAN_BYTES, MAX_PLAN_PIXELS, PlanError, read_plan
from core.registry import load_registry
from core.registry_io import registry_from_csv, registry_to_csv
from core.settings import MqttSettings, Settings
from firewatch.service import Service
from tests.conftest import PROFILES, TEST_PASSWORD, small_registry

pytestmark = pytest.mark.integration

FLOOR = "s1/b1/f1"
PLAN = f"/api/v1/places/{FLOOR}/plan"


def png(width: int = 400, height: int = 300) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (240, 240, 240)).save(out, format="PNG")
    return out.getvalue()


def huge_png(width: int, height: int) -> bytes:
    """A small PNG whose header claims `width` x `height` (what a decompression bomb does)."""
    data = bytearray(png(2, 2))
    ihdr = 8 + 8  # the signature, then IHDR's length and type
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr - 4 : ihdr + 13]))
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


def pdf(pages: int = 2) -> bytes:
    out = io.BytesIO()
    drawing = canvas.Canvas(out, pagesize=(842, 595))  # A4 landscape
    for n in range(pages):
        drawing.rect(40, 40, 700, 500)
        drawing.drawString(60, 500, f"floor {n + 1}")
        drawing.showPage()
    drawing.save()
    return out.getvalue()


SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 800 500">'
    b'<rect x="10" y="10" width="780" height="480" fill="none" stroke="black"/>'
    b'<text x="40" y="40">\xe4\xb8\x9c\xe5\x8c\xba</text></svg>'
)


@pytest.fixture
async def api(store_url: str, tmp_path: Path) -> AsyncIterator[tuple[Service, httpx.AsyncClient, Path]]:
    """The service's API without its loops, on the store under test, signed in as the safety office."""
    registry = tmp_path / "registry.yaml"
    registry.write_text(small_registry().to_yaml(), encoding="utf-8")
    settings = Settings(
        data_dir=tmp_path,
        registry=registry,
        database_url=store_url,
        mqtt=MqttSettings(url="mqtt://127.0.0.1:9", client_id=f"fw-plan-{uuid.uuid4().hex[:8]}"),
    )
    service = Service(settings, profiles=PROFILES)
    from core.domain import Role

    service.accounts.create_user("safety-zhou", TEST_PASSWORD, [Role.SAFETY], display_name="保卫科 周九")
    issued, _ = service.accounts.login("safety-zhou", TEST_PASSWORD)
    ctx = service.app_context()
    ctx.start = ctx.stop = None
    from api.app import create_app

    transport = httpx.ASGITransport(app=create_app(ctx))
    headers = {"Authorization": f"Bearer {issued.token}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://firewatch", headers=headers) as client:
        yield service, client, registry
    service.telemetry.close()
    service.db.dispose()


def signed_in(service: Service, name: str, role: str) -> dict[str, str]:
    from core.domain import Role

    service.accounts.create_user(name, TEST_PASSWORD, [Role(role)])
    issued, _ = service.accounts.login(name, TEST_PASSWORD)
    return {"Authorization": f"Bearer {issued.token}"}


async def upload(client: httpx.AsyncClient, data: bytes, name: str, **form: Any) -> httpx.Response:
    return await client.put(PLAN, files={"file": (name, data, "application/octet-stream")}, data=form)


# --- uploading ---------------------------------------------------------------------------------------


async def test_a_png_plan_is_kept_and_served_back_byte_for_byte_with_its_hash_in_the_url(
    api: tuple[Service, httpx.AsyncClient, Path],
) -> None:
    _, client, _ = api
    image = png(400, 300)
    r = await upload(client, image, "1F.png")
    assert r.status_code == 200, r.text
    plan = r.json()
    assert (plan["source"], plan["media_type"], plan["width"], plan["height"]) == (
        "png",
        "image/png",
        400,
        300,
    )
    assert plan["uploaded_by"] == "保卫科 周九"
    assert plan["place_name"] == "住院楼 1F"
    assert plan["sha256"] in plan["image_url"]
    assert (await client.get(PLAN)).json() == plan
    served = await client.get(plan["image_url"])
    assert served.status_code == 200
    assert served.content == image
    assert served.headers["content-type"] == "image/png"
    assert "immutable" in served.headers["cache-control"]
    again = await client.get(plan["image_url"], headers={"If-None-Match": served.headers["etag"]})
    assert again.status_code == 304


async def test_an_svg_plan_is_served_as_an_image_that_can_run_nothing(
    api: tuple[Service, httpx.AsyncClient, Path],
) -> None:
    _, client, _ = api
    scripted = SVG.replace(b"</svg>", b"<script>alert(1)</script></svg>")
    r = await upload(client, scripted, "1F.svg")
    assert r.status_code == 200, r.text
    assert (r.json()["source"], r.json()["width"], r.json()["height"]) == ("svg", 800, 500)
    served = await client.get(r.json()["image_url"])
    assert served.headers["content-type"].startswith("image/svg+xml")
    assert served.headers["content-security-policy"].startswith("sandbox")
    assert "default-src 'none'" in served.headers["content-security-policy"]
    assert served.headers["x-content-type-options"] == "nosniff"


async def test_a_pdf_page_is_drawn_as_a_png_of_that_page(
    api: tuple[Service, httpx.AsyncClient, Path],
) -> None:
    _, client, _ = api
    r = await upload(client, pdf(pages=2), "plans.pdf", page="2")
    assert r.status_code == 200, r.text
    plan = r.json()
    assert (plan["source"], plan["page"], plan["media_type"]) == ("pdf", 2, "image/png")
    assert plan["width"] > plan["height"]  # landscape, as drawn
    image = Image.open(io.BytesIO((await client.get(plan["image_url"])).content))
    assert image.format == "PNG"
    assert image.size == (plan["width"], plan["height"])


async def test_a_pdf_page_that_does_not_exist_is_refused_and_the_plan_before_stays(
    api: tuple[Service, httpx.AsyncClient, Path],
) -> None:
    _, client, _ = api
    before = (await upload(client, png(), "1F.png")).json()
    r = await upload(client, pdf(pages=2), "plans.pdf", page="3")
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert "no page 3" in r.json()["detail"]
    assert (await client.get(PLAN)).json() == before


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"GIF89a\x01\x00\x01\x00", "not a PNG, SVG or PDF"),
        (png()[:60], "PNG file is broken"),
        (b"%PDF-1.4\nnot really a pdf", "PDF file cannot be read"),
        (b"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 1 1'><rect></svg>", "not well-formed"),
        (b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aa">]><svg/>', "document type"),
        (b"<svg><rect/></svg>", "not an SVG image"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'><rect/></svg>", "has no size"),
    ],
)
async def test_a_file_that_is_not_a_plan_is_refused_with_why(
    api: tuple[Service, httpx.AsyncClient, Path], data: bytes, says: str
) -> None:
    _, client, _ = api
    r = await upload(client, data, "plan")
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert says in r.json()["detail"]
    assert (await client.get(PLAN)).status_code == 404


async def test_an_image_of_too_many_pixels_is_refused_as_too_large(
    api: tuple[Service, httpx.AsyncClient, Path],
) -> None:
    _, client, _ = api
    side = int(MAX_PLAN_PIXELS**0.5) + 10
    r = await upload(client, huge_png(side, side), "huge.png")
    assert r.status_code == 413
    assert "pixels" in r.json()["detail"]


def test_a_file_over_the_size_limit_is_refused_before_it_is_read() -> None:
    with pytest.raises(PlanError, match="larger than"):
        read_plan(png() + b"\0" * MAX_PLAN_BYTES)


async def test_only_floors_have_plans_and_only_the_safety_office_or_an_admin_uploads_them(
    api: tuple[Service, httpx.AsyncClient, Path],
) -> None:
    service, client, _ = api
    zone = await client.put("/api/v1/places/s1/b1/f1/z1/plan", files={"file": ("p.png", png())})
    assert zone.status_code == 422
    assert "plans are kept per floor" in zone.json()["detail"]
    assert (
        await client.put("/api/v1/places/s1/b9/f1/plan", files={"file": ("p.png", png())})
    ).status_code == 404
    operator = signed_in(service, "op-li", "operator")
    refused = await client.put(PLAN, files={"file": ("p.png", png())}, headers=operator)
    assert refused.status_code == 403
    assert (await client.get(PLAN, headers=operator)).status_code == 404  # reading is everyone's


async def test_a_removed_plan_is_gone_and_its_image_too(api: tuple[Service, httpx.AsyncClient, Path]) -> None:
    _, client, _ = api
    plan = (await upload(client, png(), "1F.png")).json()
    assert (await client.delete(PLAN)).status_code == 204
    assert (await client.get(PLAN)).status_code == 404
    assert (await client.get(plan["image_url"])).status_code == 404
    assert (await client.delete(PLAN)).status_code == 404


# --- placing devices ---------------------------------------------------------------------------------


async def test_a_device_placed_on_the_plan_is_listed_there_and_kept_in_the_registry_file(
    api: tuple[Service, httpx.AsyncClient, Path],
) -> None:
    service, client, registry_path = api
    await upload(client, png(), "1F.png")
    maintenance = signed_in(service, "wx-wang", "maintenance")
    r = await client.put("/api/v1/devices/smk-1-1/plan", json={"x": 0.25, "y": 0.75}, headers=maintenance)
    assert r.status_code == 200, r.text
    assert r.json() == {"device_id": "smk-1-1", "floor": FLOOR, "x": 0.25, "y": 0.75, "persisted": True}
    devices = {d["id"]: d for d in (await client.get(f"{PLAN}/devices")).json()}
    assert (devices["smk-1-1"]["x"], devices["smk-1-1"]["y"]) == (0.25, 0.75)
    assert (devices["smk-1-2"]["x"], devices["smk-1-2"]["y"]) == (None, None)
    assert devices["smk-1-1"]["place_name"] == "1区 101病房"
    assert len(devices) == len(small_registry().devices)
    assert load_registry(registry_path).specs["smk-1-1"].plan == (0.25, 0.75)
    exported = yaml.safe_load((await client.get("/api/v1/registry")).text)
    assert {d["id"]: d.get("plan") for d in exported["devices"]}["smk-1-1"] == [0.25, 0.75]

    r = await client.delete("/api/v1/devices/smk-1-1/plan", headers=maintenance)
    assert (r.status_code, r.json()["x"]) == (200, None)
    assert load_registry(registry_path).specs["smk-1-1"].plan is None


@pytest.mark.parametrize(
    "body",
    [
        {"x": 1.5, "y": 0.5},
        {"x": -0.1, "y": 0.5},
        {"x": 0.5},
        {"x": "left", "y": 0.5},
        {"x": 0.1, "y": 0.1, "z": 1},
    ],
)
async def test_a_position_off_the_plan_is_refused(
    api: tuple[Service, httpx.AsyncClient, Path], body: dict[str, Any]
) -> None:
    _, client, registry_path = api
    await upload(client, png(), "1F.png")
    r = await client.put("/api/v1/devices/smk-1-1/plan", json=body)
    assert r.status_code == 422
    assert load_registry(registry_path).specs["smk-1-1"].plan is None


async def test_a_device_is_placed_only_where_it_exists_and_its_floor_has_a_plan(
    api: tuple[Service, httpx.AsyncClient, Path],
) -> None:
    service, client, _ = api
    no_plan = await client.put("/api/v1/devices/smk-1-1/plan", json={"x": 0.5, "y": 0.5})
    assert no_plan.status_code == 422
    assert "has no plan yet" in no_plan.json()["detail"]
    await upload(client, png(), "1F.png")
    assert (await client.put("/api/v1/devices/nope/plan", json={"x": 0.5, "y": 0.5})).status_code == 404
    viewer = signed_in(service, "kan-zhao", "viewer")
    refused = await client.put("/api/v1/devices/smk-1-1/plan", json={"x": 0.5, "y": 0.5}, headers=viewer)
    assert refused.status_code == 403


# --- the registry carries positions ------------------------------------------------------------------


def test_positions_go_out_and_come_back_in_yaml_json_and_csv(tmp_path: Path) -> None:
    base = small_registry()
    placed = base.replacing_device(base.specs["smk-1-1"].model_copy(update={"plan": (0.125, 1.0)}))
    for name in ("registry.yaml", "registry.json"):
        path = tmp_path / name
        path.write_text(placed.to_text(path), encoding="utf-8")
        assert load_registry(path).specs["smk-1-1"].plan == (0.125, 1.0)
        assert load_registry(path).specs["smk-1-2"].plan is None
    text = registry_to_csv(placed)
    assert text.splitlines()[0].endswith(",plan_x,plan_y")
    again = registry_from_csv(text, base=base, profiles=set(PROFILES))
    assert again.specs["smk-1-1"].plan == (0.125, 1.0)
    assert again.specs["smk-1-2"].plan is None


def test_a_registry_file_with_a_position_off_the_plan_is_refused_naming_the_device(tmp_path: Path) -> None:
    from core.registry import RegistryError

    document = yaml.safe_load(small_registry().to_yaml())
    document["devices"][0]["plan"] = [0.5, 2]
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    with pytest.raises(RegistryError, match="less than or equal to 1"):
        load_registry(path)


def test_a_csv_row_with_half_a_position_is_refused_with_its_line() -> None:
    base = small_registry()
    rows = registry_to_csv(base).splitlines()
    rows[1] = rows[1].rsplit(",", 2)[0] + ",,0.5"  # plan_y given, plan_x left empty
    from core.registry_io import RegistryImportError

    with pytest.raises(RegistryImportError, match="line 2: plan_x and plan_y go together"):
        registry_from_csv("\r\n".join(rows), base=base, profiles=set(PROFILES))
