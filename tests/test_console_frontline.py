"""The console for the people around the control room, in Debian's Chromium against the real service
(the `stack` of tests/test_console.py): the history search finds a past incident by the words of its
verdict note and opens it with its timeline and its incident report. Screenshots go to
tests/artifacts/console/ (and docs/images/ with FW_DOCS_SCREENSHOTS=1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.async_api import Browser, FilePayload, Page, expect

from tests import test_console
from tests.test_console import (
    CHIEF,
    MAINTENANCE,
    OPERATOR,
    Stack,
    incident_of,
    open_alarms,
    open_console,
    shot,
    sign_in_page,
    until,
)

# The real service, the browser and a page, as tests/test_console.py makes them.
pytestmark = test_console.pytestmark
stack = test_console.stack
browser = test_console.browser
page = test_console.page

# A real (tiny) JPEG: 1×1 pixel, as a phone camera's file would start.
JPEG = bytes.fromhex(
    "ffd8ffe000104a46494600010100000100010000ffdb004300080606070605080707070909080a0c140d0c0b0b0c1912130f"
    "141d1a1f1e1d1a1c1c20242e2720222c231c1c2837292c30313434341f27393d38323c2e333432ffc0000b08000100010101"
    "1100ffc4001f0000010501010101010100000000000000000102030405060708090a0bffc400b5100002010303020403050504"
    "040000017d01020300041105122131410613516107227114328191a1082342b1c11552d1f02433627282090a161718191a25"
    "262728292a3435363738393a434445464748494a535455565758595a636465666768696a737475767778797a838485868788"
    "898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3"
    "e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9faffda0008010100003f00fbd3ffd9"
)


async def test_the_history_search_finds_a_past_incident_and_opens_it(
    stack: Stack, page: Page, tmp_path: Path
) -> None:
    # A fire judged a false alarm (steam from a sterilizer) and reset: closed, off the board.
    stack.sim.fleet.flaming_fire(stack.plan.fire_zone, stack.sim.t)
    fires = await until(lambda: open_alarms(stack, category="fire"), "a fire alarm in the API")
    fire = await until(lambda: incident_of(stack, str(fires[0]["id"])), "the fire's incident")
    base = f"/api/v1/incidents/{fire['id']}"
    note = "消毒间蒸汽柜排汽，已开窗"
    r = await stack.api.post(
        f"{base}/verdict", json={"verdict": "false_alarm", "cause": "steam", "note": note}
    )
    assert r.status_code == 200, r.text
    stack.sim.fleet.extinguish(stack.plan.fire_zone)
    assert (await stack.api.post(f"{base}/reset", json={"note": "复位"})).status_code == 200

    await open_console(page, stack, OPERATOR)
    await page.click("#tab-history")
    await expect(page.locator("#tab-history")).to_have_text("历史查询")
    form = page.locator("#history-form")
    await form.locator('select[name="verdict"]').select_option("false_alarm")
    await form.locator('select[name="cause"]').select_option("steam")
    await form.locator('input[name="q"]').fill("蒸汽柜")
    await page.click("#history-search")
    row = page.locator(f'#history-table tr[data-incident-id="{fire["id"]}"]')
    await expect(row).to_contain_text("误报（水汽/蒸汽）")
    await expect(page.locator("#history-total")).to_have_text("共 1 条")
    await shot(page, "30-history", docs="history")
    async with page.expect_download() as export:
        await page.click("#history-export")
    sheet = tmp_path / "history.xlsx"
    await (await export.value).save_as(sheet)
    assert sheet.read_bytes().startswith(b"PK")  # a workbook (a zip)
    await row.click()
    detail = page.locator("#history-incident")
    await expect(detail).to_have_attribute("data-incident-id", str(fire["id"]))
    await expect(page.locator('#history-timeline li[data-action="false_alarm"]')).to_contain_text(note)
    await expect(page.locator('#history-timeline li[data-action="reset"]')).to_contain_text("复位")
    # Who took each step by their display name, the service's own steps as 系统.
    await expect(page.locator('#history-timeline li[data-action="false_alarm"]')).to_contain_text(
        "值班管理员"
    )
    await expect(page.locator('#history-timeline li[data-action="opened"]')).to_contain_text("系统")
    await expect(page.locator("#history-alarms tbody tr").first).to_be_visible()
    async with page.expect_download() as download:
        await page.click('#history-incident button[data-role="report-pdf"]')
    saved = tmp_path / "report.pdf"
    await (await download.value).save_as(saved)
    assert saved.read_bytes().startswith(b"%PDF")
    await shot(page, "31-history-incident", docs="history-incident")
    # Back to the results: the search is kept.
    await page.click('#history-incident a[href="#/history"]')
    await expect(row).to_be_visible()
    # Words that are nowhere: nothing found, said so.
    await form.locator('input[name="q"]').fill("没有这句话")
    await page.click("#history-search")
    await expect(page.locator("#history-results .empty")).to_have_text("没有符合条件的记录")


async def phone_page(browser: Browser) -> Page:
    """A phone: 390×844 CSS pixels, touch, Chinese."""
    context = await browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True, locale="zh-CN"
    )
    p = await context.new_page()
    p.set_default_timeout(10_000)
    return p


async def no_horizontal_scroll(page: Page) -> None:
    width = await page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert width[0] <= width[1], f"the page scrolls sideways: {width}"


async def small_targets(page: Page, selector: str) -> list[str]:
    """The visible elements matching `selector` whose box is less than 44 px high."""
    found: list[str] = await page.eval_on_selector_all(
        selector,
        """nodes => nodes.filter(n => n.offsetParent !== null)
            .filter(n => n.getBoundingClientRect().height < 44)
            .map(n => n.id || n.textContent.trim() || n.outerHTML.slice(0, 60))""",
    )
    return found


async def test_a_maintenance_user_on_a_phone_lands_on_their_tickets_as_cards_and_uploads_a_photo(
    stack: Stack, browser: Browser
) -> None:
    async def new_ticket(problem: str, assignee: str | None) -> dict[str, Any]:
        r = await stack.api.post(
            "/api/v1/tickets",
            json={
                "place": stack.plan.fire_zone,
                "site": stack.plan.fire_zone.split("/")[0],
                "problem": problem,
                "inspectors": "保卫科",
            },
        )
        assert r.status_code == 201, r.text
        ticket: dict[str, Any] = r.json()["ticket"]
        if assignee:
            body = {"action": "assign", "assignee": assignee}
            r = await stack.api.post(f"/api/v1/tickets/{ticket['id']}/transitions", json=body)
            assert r.status_code == 200, r.text
        return ticket

    mine = await new_ticket("住院楼3层东区防火门闭门器损坏，门无法自动关闭", MAINTENANCE.display_name)
    other = await new_ticket("门诊楼1层灭火器压力不足", "维保王二")

    page = await phone_page(browser)
    await page.goto(f"{stack.base_url}/console")
    await sign_in_page(page, MAINTENANCE)
    await expect(page).to_have_url(f"{stack.base_url}/console#/tickets")
    await expect(page.locator("#view-tickets")).to_be_visible()
    await expect(page.locator("#tickets-mine")).to_be_checked()
    card = page.locator(f'#tickets tr[data-ticket-id="{mine["id"]}"]')
    await expect(card).to_contain_text("防火门闭门器损坏")
    await expect(page.locator(f'#tickets tr[data-ticket-id="{other["id"]}"]')).to_have_count(0)
    # A card, not a table row: the header row is gone and the card spans the screen.
    await expect(page.locator("#tickets thead")).to_be_hidden()
    box = await card.bounding_box()
    assert box is not None
    assert box["width"] > 300, box
    await expect(card.locator('td[data-role="status"]')).to_have_text("已派单")
    await no_horizontal_scroll(page)
    assert await small_targets(page, ".tab, #tickets td a, .ticket-filters label") == []
    await shot(page, "40-phone-tickets", docs="phone-tickets")

    await card.click()
    await expect(page.locator("#ticket-status")).to_have_attribute("data-status", "assigned")
    start = page.locator('#ticket-actions button[data-action="start"]')
    await start.scroll_into_view_if_needed()
    await expect(start).to_be_visible()
    await no_horizontal_scroll(page)
    assert (
        await small_targets(page, "#ticket-actions button, #evidence-form input, #evidence-form button") == []
    )
    # The camera: a photo input that asks for it.
    photo = page.locator("#evidence-photo")
    assert await photo.get_attribute("accept") == "image/*"
    assert await photo.get_attribute("capture") == "environment"
    await photo.set_input_files(files=[FilePayload(name="door.jpg", mimeType="image/jpeg", buffer=JPEG)])
    await page.fill("#evidence-note", "闭门器现状")
    await page.click("#evidence-submit")
    row = page.locator("#ticket-evidence tbody tr").first
    await expect(row).to_contain_text("door.jpg")
    await expect(row).to_contain_text(MAINTENANCE.display_name)
    await no_horizontal_scroll(page)
    await shot(page, "41-phone-ticket", docs="phone-ticket")
    detail = (await stack.api.get(f"/api/v1/tickets/{mine['id']}")).json()
    assert [e["filename"] for e in detail["evidence"]] == ["door.jpg"]

    # Unticked, 我的整改单 shows everyone's tickets.
    await page.click('a[href="#/tickets"]')
    await page.uncheck("#tickets-mine")
    await expect(page.locator(f'#tickets tr[data-ticket-id="{other["id"]}"]')).to_have_count(1)
    await page.context.close()


async def test_an_operator_still_lands_on_the_fire_board(stack: Stack, page: Page) -> None:
    await page.goto(f"{stack.base_url}/console")
    await sign_in_page(page, OPERATOR)
    await expect(page).to_have_url(f"{stack.base_url}/console#/board")
    await expect(page.locator("#tickets-mine")).not_to_be_checked()


async def test_the_safety_office_prints_qr_codes_and_a_phone_report_becomes_a_ticket_with_its_photo(
    stack: Stack, page: Page, browser: Browser, tmp_path: Path
) -> None:
    # The safety office: the codes of one zone, the sheet to print.
    zone = stack.plan.fire_zone
    await page.goto(f"{stack.base_url}/console")
    await sign_in_page(page, CHIEF)
    await page.click("#tab-qr")
    await expect(page.locator("#tab-qr")).to_have_text("随手拍二维码")
    await page.select_option("#qr-place", zone)
    await page.click("#qr-list")
    await expect(page.locator("#qr-table tbody tr").first).to_be_visible()
    async with page.expect_download() as download:
        await page.click("#qr-pdf")
    sheet = tmp_path / "sheet.pdf"
    await (await download.value).save_as(sheet)
    assert sheet.read_bytes().startswith(b"%PDF")
    await shot(page, "50-qr-codes", docs="qr-codes")
    r = await stack.api.get("/api/v1/report-codes", params={"place": zone})
    place_code = next(c for c in r.json() if c["device_id"] is None and c["place"] == zone)

    # A nurse scans the zone's code on her phone: no sign-in, the place in Chinese.
    phone = await phone_page(browser)
    await phone.goto(place_code["url"])
    await expect(phone.locator("#place")).to_have_text(place_code["place_name"])
    await expect(phone.locator("h1")).to_have_text("消防隐患随手拍")
    await phone.fill("#description", "护士站旁的安全出口被推床堵住")
    await phone.set_input_files(
        "#photo", files=[FilePayload(name="exit.jpg", mimeType="image/jpeg", buffer=JPEG)]
    )
    await phone.fill("#name", "护士 小李")
    await phone.fill("#phone", "13800000000")
    await no_horizontal_scroll(phone)
    assert await small_targets(phone, "button, input, textarea") == []
    await shot(phone, "51-report-page", docs="report-page")
    await phone.click("#submit")
    await expect(phone.locator("#done")).to_be_visible()
    number = (await phone.locator("#number").text_content()) or ""
    assert number.startswith("YH-")
    await shot(phone, "52-report-received", docs="report-received")
    # English on the toggle.
    await phone.click("#lang")
    await expect(phone.locator("#done h2")).to_have_text("Received, thank you!")

    # The ticket, at the zone, with the photo as its evidence (shrunk or as sent: an image).
    items = (await stack.api.get("/api/v1/tickets", params={"source": "staff_report"})).json()["items"]
    (ticket,) = [t for t in items if t["number"] == number]
    assert ticket["place"] == zone
    assert "安全出口被推床堵住" in ticket["problem"]
    detail = (await stack.api.get(f"/api/v1/tickets/{ticket['id']}")).json()
    (evidence,) = detail["evidence"]
    assert evidence["content_type"] in ("image/jpeg", "image/png")
    # The console shows it as a 随手拍 ticket.
    await page.goto(f"{stack.base_url}/console#/tickets/{ticket['id']}")
    await expect(page.locator("#ticket-info")).to_contain_text("随手拍")
    await expect(page.locator("#ticket-evidence tbody tr")).to_have_count(1)

    # A made-up code: said so in Chinese, no form.
    await phone.goto(f"{stack.base_url}/report/{'x' * 24}")
    await phone.click("#lang")  # back to Chinese
    await expect(phone.locator("#fatal")).to_have_text("二维码无效或已停用，请联系消防控制室。")
    await expect(phone.locator("#report-form")).to_be_hidden()
    await phone.context.close()
