"""The operator console in a real browser: Debian's Chromium driven by Playwright, against the real
service (mosquitto, ingest, detection, alarms, tickets) behind a real uvicorn, fed by the simulated
hospital on a clock 30 times faster than real time.

A staged fire must reach the board by the WebSocket (the page's fallback poll is a minute, far
longer than these tests wait), be acknowledged with a note through the dialog, show in its device's
drill-down with a drawn history chart and its alarm log; a device fault's ticket must go round the
loop by the page's buttons; and the page must switch to English, keep data as text and survive a
broken response. Screenshots go to tests/artifacts/console/ (and to docs/images/ with
FW_DOCS_SCREENSHOTS=1, to refresh docs/console.md).

Never `playwright install`: the browser is /usr/bin/chromium (scripts/test installs it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from playwright.async_api import Page, Route, async_playwright, expect

from api.app import create_app
from api.routes import console
from core.domain import DeviceEventKind
from core.registry import load_registry
from core.settings import IngestSettings, MqttSettings, Settings
from firewatch.broker import Mosquitto, free_port
from firewatch.demo import DemoPlan, plan_for
from firewatch.service import Service
from simulators.fleet import Fleet
from simulators.hospital import DEMO_HOSPITAL
from simulators.live import LiveFleet

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts" / "console"
DOCS_IMAGES = Path(__file__).parent.parent / "docs" / "images"
TIME_SCALE = 30.0

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)",
    ),
]


@dataclass
class Stack:
    service: Service
    sim: LiveFleet
    plan: DemoPlan
    base_url: str
    api: httpx.AsyncClient


@pytest.fixture
async def stack(mosquitto: Mosquitto, tmp_path: Path) -> AsyncIterator[Stack]:
    registry = load_registry(DEMO_HOSPITAL)
    settings = Settings(
        data_dir=tmp_path,
        mqtt=MqttSettings(url=mosquitto.url, client_id=f"fw-console-{uuid.uuid4().hex[:8]}"),
        ingest=IngestSettings(liveness_check_s=0.2),
        time_scale=TIME_SCALE,
    )
    service = Service(settings, registry=registry)
    await service.start()
    await asyncio.wait_for(service.source.connected.wait(), 10)
    sim = LiveFleet(Fleet(registry, service.profiles, impairments=False), service.clock)
    sim_task = asyncio.create_task(sim.run(mosquitto.host, mosquitto.port))
    ctx = service.app_context()
    ctx.start = ctx.stop = None  # the test owns the service; the app's lifespan still ends the streams
    app = create_app(ctx)
    console.mount(app)  # a no-op once api/app.py mounts the console itself
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", timeout_graceful_shutdown=3
        )
    )
    server_task = asyncio.create_task(server.serve())
    while not server.started and not server_task.done():  # noqa: ASYNC110 - uvicorn offers a flag only
        await asyncio.sleep(0.05)
    if server_task.done():
        await server_task
    base_url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
            yield Stack(service, sim, plan_for(service), base_url, client)
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server_task, 10)
        sim.stop()
        await asyncio.wait_for(sim_task, 10)
        await service.stop()


@pytest.fixture
async def page(stack: Stack) -> AsyncIterator[Page]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        try:
            context = await browser.new_context(viewport={"width": 1600, "height": 900}, locale="zh-CN")
            p = await context.new_page()
            errors: list[str] = []
            p.on("pageerror", lambda exc: errors.append(str(exc)))
            p.set_default_timeout(10_000)
            yield p
            assert not errors, f"uncaught errors in the page: {errors}"
        finally:
            await browser.close()


async def shot(page: Page, name: str, *, docs: str | None = None) -> None:
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path))
    if docs and os.environ.get("FW_DOCS_SCREENSHOTS"):
        shutil.copyfile(path, DOCS_IMAGES / f"console-{docs}.png")


async def until(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout} s")


async def open_alarms(stack: Stack, **params: Any) -> list[dict[str, Any]]:
    r = await stack.api.get("/api/v1/alarms", params={"open": True, "limit": 1000, **params})
    r.raise_for_status()
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def open_console(page: Page, stack: Stack) -> None:
    await page.goto(f"{stack.base_url}/console")
    await expect(page.locator("#conn")).to_have_attribute("data-state", "open")
    await expect(page.locator("#board-empty")).to_be_visible()  # nothing on fire yet


async def test_fire_reaches_the_board_is_acknowledged_and_drilled_into(stack: Stack, page: Page) -> None:
    await open_console(page, stack)
    assert await page.locator("html").get_attribute("lang") == "zh-CN"
    await expect(page.locator("#tab-board")).to_have_text("报警")
    await expect(page.locator("#board-title")).to_have_text("火灾报警")
    await expect(page.locator("#gas-title")).to_have_text("可燃气体报警")
    await shot(page, "00-normal", docs="normal")

    # (1) A fire in a ward zone: the card appears without a reload, red, unacknowledged, on top.
    stack.sim.fleet.flaming_fire(stack.plan.fire_zone, stack.sim.t)
    staged = time.monotonic()
    fires = await until(lambda: open_alarms(stack, category="fire"), "a fire alarm in the API")
    in_api = time.monotonic()
    first = page.locator("#board-list > li").first
    await expect(first).to_have_attribute("data-category", "fire", timeout=5_000)
    on_board = time.monotonic()
    assert on_board - in_api < 5.0, "the board lagged the API: the WebSocket did not drive it"
    assert on_board - staged < 30.0
    assert int(await page.locator("#conn").get_attribute("data-events") or 0) > 0
    fire_id = str(fires[0]["id"])
    card = page.locator(f'#board-list > li[data-alarm-id="{fire_id}"]')
    await expect(card).to_have_attribute("data-state", "active_unacknowledged")
    await expect(card).to_have_class("card cat-fire unacked")
    await expect(card.locator(".badge")).to_have_text("火警")
    await expect(page.locator("#board-fire")).to_contain_text("火警")
    badge_colour = await card.locator(".badge").evaluate("e => getComputedStyle(e).backgroundColor")
    assert badge_colour == "rgb(224, 22, 27)", badge_colour  # --fire
    assert await card.evaluate("e => getComputedStyle(e).animationName") == "pulse-fire"
    # Fire is never on the gas board.
    assert await page.locator(f'#gas-list > li[data-alarm-id="{fire_id}"]').count() == 0
    await shot(page, "01-fire-on-board", docs="fire")
    # The wall screen: larger type, the board filling the screen.
    desk_size = await page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)")
    await page.set_viewport_size({"width": 1920, "height": 1080})
    await page.click("#wall")
    await expect(page.locator("body")).to_have_class("wall")
    assert await page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)") > desk_size
    await shot(page, "01b-wall-screen", docs="wall")
    await page.click("#wall")
    await page.set_viewport_size({"width": 1600, "height": 900})

    # (2) Acknowledge with a note through the dialog.
    await card.locator('[data-role="ack"]').click()
    dialog = page.locator("#ack-dialog")
    await expect(dialog).to_be_visible()
    await expect(dialog.locator("h2")).to_have_text("确认报警")
    await page.fill("#ack-actor", "值班员张三")
    await page.fill("#ack-note", "已派人到现场核实 <b>不是标签</b>")
    await shot(page, "02-acknowledge-dialog", docs="acknowledge")
    await page.click("#ack-submit")
    await expect(dialog).to_be_hidden()
    await expect(card).to_have_attribute("data-state", "active_acknowledged")
    await expect(card).not_to_have_class("card cat-fire unacked")
    await expect(card.locator('[data-role="acked"]')).to_contain_text("值班员张三")
    await expect(card.locator('[data-role="acked"]')).to_contain_text("<b>不是标签</b>")  # text, not markup
    assert await card.locator('[data-role="acked"] b').count() == 0
    await expect(card.locator('[data-role="ack"]')).to_have_count(0)
    detail = (await stack.api.get(f"/api/v1/alarms/{fire_id}")).json()
    assert detail["state"] == "active_acknowledged"
    assert detail["acked_by"] == "值班员张三"
    assert detail["ack_note"] == "已派人到现场核实 <b>不是标签</b>"
    await shot(page, "03-acknowledged")

    # (3) The device's drill-down: info, a drawn history chart, the alarm log with this alarm.
    device_id = fires[0]["device_id"]
    await card.locator('[data-role="device"]').click()
    await expect(page).to_have_url(f"{stack.base_url}/console#/device/{device_id}")
    await expect(page.locator("#device-title")).to_contain_text(device_id)
    await expect(page.locator(f'#device-alarms tr[data-alarm-id="{fire_id}"]')).to_have_count(1)
    await expect(page.locator(f'#device-alarms tr[data-alarm-id="{fire_id}"]')).to_contain_text("火警")
    chart = page.locator("#chart")
    await expect(chart).not_to_have_attribute("data-points", "0")
    assert int(await chart.get_attribute("data-points") or 0) >= 5
    # The mean line's colour (#79b8ff) is drawn on the canvas, not just the frame.
    line_pixels = await chart.evaluate(
        """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
        for (let i = 0; i < d.length; i += 4)
          if (Math.abs(d[i] - 0x79) < 8 && Math.abs(d[i+1] - 0xb8) < 8 && Math.abs(d[i+2] - 0xff) < 8) n++;
        return n; }"""
    )
    assert line_pixels > 100, line_pixels
    # The place tree shows the fire's zone red, the path to it open.
    zone_node = page.locator(f'#tree .node[data-path="{stack.plan.fire_zone}"]')
    await expect(zone_node).to_have_attribute("data-worst", "fire")
    await shot(page, "04-device-drilldown", docs="device")

    # The zone itself: its devices, the burning ones marked.
    await zone_node.locator("button.name").click()
    await expect(page.locator("#zone")).to_be_visible()
    await expect(page.locator(f'#zone-devices tr[data-device-id="{device_id}"]')).to_contain_text("火警")
    await shot(page, "05-zone", docs="places")


async def test_a_fault_ticket_goes_round_the_loop_by_the_buttons(stack: Stack, page: Page) -> None:
    await open_console(page, stack)
    gas_device = stack.plan.faulty_device
    stack.sim.fleet.device_event(gas_device, DeviceEventKind.FAULT, stack.service.clock(), code=3)

    async def ticket() -> dict[str, Any] | None:
        r = await stack.api.get("/api/v1/tickets", params={"device_id": gas_device})
        items: list[dict[str, Any]] = r.json()["items"]
        return items[0] if items else None

    tk = await until(ticket, f"a fault ticket for {gas_device}")
    # The gas detector's fault is on the gas board, apart from the fire board.
    gas_card = page.locator(f'#gas-list > li[data-device-id="{gas_device}"]')
    await expect(gas_card).to_have_attribute("data-category", "fault")
    assert await page.locator(f'#board-list > li[data-device-id="{gas_device}"]').count() == 0
    fault_colour = await gas_card.locator(".badge").evaluate("e => getComputedStyle(e).backgroundColor")
    assert fault_colour == "rgb(242, 198, 0)", fault_colour  # --fault yellow
    await shot(page, "10-gas-fault", docs="gas")

    await page.fill("#operator", "维保李四")
    await page.click("#tab-tickets")
    row = page.locator(f'#tickets tr[data-ticket-id="{tk["id"]}"]')
    await expect(row).to_contain_text(tk["number"])
    await expect(row.locator('[data-role="status"]')).to_have_text("待派单")
    await row.click()
    await expect(page.locator("#ticket-status")).to_have_attribute("data-status", "open")
    assert await page.locator("#role").input_value() == "maintenance"  # the default for this view
    await shot(page, "11-ticket-open", docs="ticket")

    async def act(action: str, status: str, fill: dict[str, str] | None = None) -> None:
        await page.click(f'#ticket-actions button[data-action="{action}"]')
        await expect(page.locator("#tr-dialog")).to_be_visible()
        for selector, value in (fill or {}).items():
            await page.fill(selector, value)
        await page.click("#tr-submit")
        await expect(page.locator("#tr-dialog")).to_be_hidden()
        await expect(page.locator("#ticket-status")).to_have_attribute("data-status", status)
        if status == "closed":  # the list shows open tickets only: a closed one leaves it
            await expect(row).to_have_count(0)
        else:
            await expect(row).to_have_attribute("data-status", status)
        got = (await stack.api.get(f"/api/v1/tickets/{tk['id']}")).json()
        assert got["status"] == status, (action, got["status"])

    # Maintenance may not verify: the button is not offered, and the refusal is the workflow's.
    assert await page.locator('#ticket-actions button[data-action="verify"]').count() == 0
    # A required field left empty is caught in the dialog, and nothing is sent.
    await page.click('#ticket-actions button[data-action="assign"]')
    await page.fill("#tr-assignee", "")
    await page.click("#tr-submit")
    await expect(page.locator("#tr-error")).to_contain_text("整改人")
    await page.click("#tr-cancel")
    assert (await stack.api.get(f"/api/v1/tickets/{tk['id']}")).json()["status"] == "open"

    await act("assign", "assigned", {"#tr-assignee": "维保李四"})
    await act("start", "rectifying")
    await shot(page, "12-ticket-rectifying")
    await act("rectify", "rectified", {"#tr-feedback": "更换传感器，现场测试正常"})
    assert await page.locator("#ticket-actions button").count() == 0  # nothing left for maintenance
    await page.select_option("#role", "safety")
    await act("verify", "verified")
    await page.select_option("#role", "leader")
    await act("close", "closed")
    events = [e["action"] for e in (await stack.api.get(f"/api/v1/tickets/{tk['id']}")).json()["events"]]
    assert events[-5:] == ["assign", "start", "rectify", "verify", "close"]
    assert (await stack.api.get(f"/api/v1/tickets/{tk['id']}")).json()["feedback_signed_by"] == "维保李四"
    await expect(page.locator("#ticket-events li")).to_have_count(len(events))
    await shot(page, "13-ticket-closed", docs="ticket-closed")

    # (5) English, kept across a reload; then Chinese again.
    await page.click("#lang")
    await expect(page.locator("#tab-tickets")).to_have_text("Tickets")
    await expect(page.locator("#ticket-status")).to_have_text("Closed")
    assert await page.locator("html").get_attribute("lang") == "en"
    await page.reload()
    await expect(page.locator("#tab-board")).to_have_text("Alarms")
    await page.click("#tab-board")
    await expect(page.locator("#gas-title")).to_have_text("Combustible gas alarms")
    await expect(gas_card.locator(".badge")).to_have_text("Fault")
    await shot(page, "14-english", docs="english")
    await page.click("#lang")
    await expect(page.locator("#tab-board")).to_have_text("报警")


async def test_data_stays_text_and_a_broken_response_is_reported(stack: Stack, page: Page) -> None:
    hostile = '<img src=x onerror="window.pwned=1">火灾隐患'
    r = await stack.api.post(
        "/api/v1/tickets",
        json={
            "actor": "巡查员",
            "role": "safety",
            "site": stack.plan.fire_zone.split("/")[0],
            "problem": hostile,
            "inspectors": "巡查员",
        },
    )
    assert r.status_code == 201, r.text
    await open_console(page, stack)
    await page.click("#tab-tickets")
    row = page.locator(f'#tickets tr[data-ticket-id="{r.json()["ticket"]["id"]}"]')
    await expect(row).to_contain_text(hostile)
    assert await page.locator("#tickets img").count() == 0
    assert await page.evaluate("window.pwned") is None

    # The ticket list answers 500 with an HTML page: a readable error, and the page goes on.
    async def broken(route: Route) -> None:
        await route.fulfill(status=500, content_type="text/html", body="<h1>Internal Server Error</h1>")

    await page.route("**/api/v1/tickets?*", broken)
    await page.click("#tickets-open")
    await expect(page.locator("#error")).to_be_visible()
    await expect(page.locator("#error-text")).to_contain_text("500")
    await shot(page, "20-error")
    await page.unroute("**/api/v1/tickets?*")
    await page.click("#error-close")
    await page.click("#tab-board")
    await expect(page.locator("#board-empty")).to_be_visible()
    await expect(page.locator("#error")).to_be_hidden()
