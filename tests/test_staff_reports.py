"""The staff hazard report (随手拍) over the real app, on SQLite and PostgreSQL: the safety office gets
a QR code per place and device (and a sheet to print), anyone with the code reports a hazard there
without an account and gets the ticket's number, the photo becomes the ticket's evidence; a revoked
or made-up code, a bad field, a file that is not a photo or too large, and too many reports from
one address are refused with a clear problem, leaving no ticket behind."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from alarms.service import AlarmService
from alarms.tickets import TicketOpener
from api.routes.staff_reports import PHOTO_MAX_BYTES, REPORTS_PER_WINDOW
from core.settings import TicketPolicy
from ingest.index import DeviceIndex
from storage.db import open_store
from storage.registry_sync import sync_registry
from tests.conftest import PROFILES, ApiClient, FakeClock, asgi_api, small_registry
from tests.test_console_frontline import JPEG
from tickets.service import TicketService

T0 = 1_800_000_000.0
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


@pytest.fixture
async def api(store_url: str, tmp_path: Path) -> AsyncIterator[ApiClient]:
    _, sessions = open_store(store_url)
    registry = small_registry()
    sync_registry(sessions, registry, PROFILES)
    index = DeviceIndex.build(registry, PROFILES)
    clock = FakeClock(T0)
    alarms = AlarmService(sessions, index, TicketOpener(index, TicketPolicy()), clock)
    tickets = TicketService(sessions, index, TicketPolicy(), alarms=alarms, clock=clock)
    async with asgi_api(alarms, tmp_path, tickets) as client:
        yield client


async def codes(api: ApiClient, place: str = "s1/b1/f1/z1") -> list[dict[str, Any]]:
    r = await api.get("/api/v1/report-codes", params={"place": place, "base_url": "https://fw.example.org"})
    assert r.status_code == 200, r.text
    found: list[dict[str, Any]] = r.json()
    return found


def code_of(found: list[dict[str, Any]], *, device: str | None = None, place: str = "") -> dict[str, Any]:
    return next(c for c in found if c["device_id"] == device and (device is not None or c["place"] == place))


async def send(
    api: ApiClient,
    token: str,
    description: str = "走廊灭火器被杂物挡住",
    photo: bytes | None = JPEG,
    **form: str,
) -> Any:
    files = {"photo": ("IMG_0001.jpg", photo, "image/jpeg")} if photo is not None else None
    return await api.post(
        f"/api/v1/public/reports/{token}", data={"description": description, **form}, files=files, headers={}
    )


async def ticket_count(api: ApiClient) -> int:
    total: int = (await api.get("/api/v1/tickets", params={"source": "staff_report"})).json()["total"]
    return total


async def test_a_place_gets_a_code_for_itself_its_rooms_and_its_devices_and_keeps_them(
    api: ApiClient,
) -> None:
    found = await codes(api)
    assert [(c["place"], c["device_id"]) for c in found] == [
        ("s1/b1/f1/z1", None),
        ("s1/b1/f1/z1/r101", None),
        ("s1/b1/f1/z1", "prs-1"),
        ("s1/b1/f1/z1/r101", "smk-1-1"),
        ("s1/b1/f1/z1/r101", "smk-1-2"),
        ("s1/b1/f1/z1/r101", "smk-1-3"),
    ]
    zone = code_of(found, place="s1/b1/f1/z1")
    assert zone["url"] == f"https://fw.example.org/report/{zone['token']}"
    assert zone["place_name"] == "住院楼 1F 1区"
    assert len({c["token"] for c in found}) == len(found)
    assert len(zone["token"]) >= 24  # 144 random bits
    assert [c["token"] for c in await codes(api)] == [c["token"] for c in found]  # the same codes again
    assert (await api.get("/api/v1/report-codes", params={"place": "s9"})).status_code == 404
    operator = api.as_("wangwu", "operator")
    assert (
        await api.get("/api/v1/report-codes", params={"place": "s1"}, headers=operator)
    ).status_code == 403


async def test_a_report_with_a_photo_becomes_a_ticket_there_with_the_photo_as_evidence(
    api: ApiClient,
) -> None:
    room = code_of(await codes(api), place="s1/b1/f1/z1/r101")
    where = (await api.get(f"/api/v1/public/reports/{room['token']}", headers={})).json()
    assert where == {"place_name": "住院楼 1F 1区 101病房", "device_name": "", "device_id": None}
    r = await send(api, room["token"], name="护士 小王", phone="138-0000-0000")
    assert r.status_code == 201, r.text
    receipt = r.json()
    assert receipt["number"].startswith("YH-")
    assert receipt["recurred"] is False
    (ticket,) = (await api.get("/api/v1/tickets", params={"source": "staff_report"})).json()["items"]
    assert (ticket["number"], ticket["place"], ticket["category"]) == (
        receipt["number"],
        "s1/b1/f1/z1/r101",
        "hazard",
    )
    assert ticket["problem"].startswith("走廊灭火器被杂物挡住")
    assert "护士 小王" in ticket["problem"]
    assert "138-0000-0000" in ticket["problem"]
    detail = (await api.get(f"/api/v1/tickets/{ticket['id']}")).json()
    (evidence,) = detail["evidence"]
    assert (evidence["filename"], evidence["content_type"], evidence["size"]) == (
        "IMG_0001.jpg",
        "image/jpeg",
        len(JPEG),
    )
    stored = await api.get(f"/api/v1/tickets/{ticket['id']}/evidence/{evidence['id']}")
    assert stored.content == JPEG
    # Without a photo, name or phone: a ticket all the same.
    r = await send(api, room["token"], description="安全出口指示灯不亮", photo=None)
    assert r.status_code == 201, r.text
    assert await ticket_count(api) == 2


async def test_a_devices_second_report_counts_on_its_open_ticket(api: ApiClient) -> None:
    smoke = code_of(await codes(api), device="smk-1-2")
    where = (await api.get(f"/api/v1/public/reports/{smoke['token']}", headers={})).json()
    assert where["device_id"] == "smk-1-2"
    first = (await send(api, smoke["token"], description="烟感被塑料袋罩住")).json()
    second = (await send(api, smoke["token"], description="还是罩着", photo=PNG)).json()
    assert second["number"] == first["number"]
    assert second["recurred"] is True
    (ticket,) = (await api.get("/api/v1/tickets", params={"device_id": "smk-1-2"})).json()["items"]
    assert ticket["occurrences"] == 2
    detail = (await api.get(f"/api/v1/tickets/{ticket['id']}")).json()
    assert [e["content_type"] for e in detail["evidence"]] == ["image/jpeg", "image/png"]


async def test_a_revoked_code_is_refused_and_the_next_list_makes_a_new_one(api: ApiClient) -> None:
    room = code_of(await codes(api), place="s1/b1/f1/z1/r101")
    assert (await api.post(f"/api/v1/report-codes/{room['id']}/revoke")).status_code == 204
    assert (await api.post(f"/api/v1/report-codes/{room['id']}/revoke")).status_code == 404
    r = await api.get(f"/api/v1/public/reports/{room['token']}", headers={})
    assert r.status_code == 404
    assert "已停用" in r.json()["detail"]
    assert (await send(api, room["token"])).status_code == 404
    assert await ticket_count(api) == 0
    renewed = code_of(await codes(api), place="s1/b1/f1/z1/r101")
    assert renewed["token"] != room["token"]
    assert (await send(api, renewed["token"])).status_code == 201


@pytest.mark.parametrize(
    ("form", "photo", "status", "says"),
    [
        ({"description": ""}, JPEG, 422, ""),
        ({"description": "   "}, JPEG, 422, "请描述"),
        ({"description": "x" * 1001}, JPEG, 422, ""),
        ({"phone": "call me"}, JPEG, 422, ""),
        ({"name": "名" * 51}, JPEG, 422, ""),
        ({}, b"%PDF-1.4 not a photo", 415, "只能上传照片"),
        ({}, b"\xff\xd8\xff" + b"\x00" * PHOTO_MAX_BYTES, 413, "照片超过"),
    ],
    # Named, not spelled out: the photos would make test ids of megabytes.
    ids=[
        "empty-description",
        "blank-description",
        "description-too-long",
        "bad-phone",
        "name-too-long",
        "not-a-photo",
        "photo-too-large",
    ],
)
async def test_bad_input_is_a_clear_problem_and_leaves_no_ticket(
    api: ApiClient, form: dict[str, str], photo: bytes, status: int, says: str
) -> None:
    room = code_of(await codes(api), place="s1/b1/f1/z1/r101")
    r = await send(api, room["token"], photo=photo, **{"description": "有隐患", **form})
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert says in str(r.json()["detail"])
    assert await ticket_count(api) == 0


async def test_a_made_up_code_is_404_and_a_malformed_one_422(api: ApiClient) -> None:
    assert (await send(api, "A" * 24)).status_code == 404
    assert (await api.get("/api/v1/public/reports/short", headers={})).status_code == 422
    assert (await api.get("/api/v1/public/reports/" + "a%2F" * 8, headers={})).status_code in (404, 422)


async def test_too_many_reports_from_one_address_wait_and_another_address_is_not_held_up(
    api: ApiClient,
) -> None:
    room = code_of(await codes(api), place="s1/b1/f1/z1/r101")
    for _ in range(REPORTS_PER_WINDOW):
        assert (await send(api, room["token"], photo=None)).status_code == 201
    r = await send(api, room["token"], photo=None)
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) > 0
    assert "过于频繁" in r.json()["detail"]
    assert await ticket_count(api) == REPORTS_PER_WINDOW
    other = api.from_address("10.0.0.9")
    assert (await send(other, room["token"], photo=None)).status_code == 201


async def test_the_sheet_prints_each_code_with_its_place_in_chinese_and_what_to_do(
    api: ApiClient, tmp_path: Path
) -> None:
    r = await api.get("/api/v1/report-codes/sheet.pdf", params={"place": "s1/b1/f1/z1"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf"
    pdftotext = shutil.which("pdftotext")
    if pdftotext is None:
        pytest.skip("needs pdftotext (poppler-utils)")
    (tmp_path / "sheet.pdf").write_bytes(r.content)
    done = await asyncio.to_thread(
        subprocess.run,
        [pdftotext, str(tmp_path / "sheet.pdf"), "-"],
        capture_output=True,
        check=True,
        text=True,
    )
    text = done.stdout
    assert text.count("发现消防隐患？扫码上报") == 6
    assert "住院楼 1F 1区 101病房" in text
    assert "smk-1-3" in text
    assert "随手拍二维码 · 住院楼 1F 1区" in text
