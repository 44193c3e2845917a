"""The duty view (值班记录, `#/duty`) in Debian's Chromium against the real service (the harness of
tests/test_console.py): an operator writes the duty log and searches it, starts a handover seeing
what is open before signing, the incoming person countersigns at the same screen with their own
password (a wrong one refused, the screen staying signed in), and the handover's PDF is saved and
read back. English on the toggle; a viewer reads but gets no buttons."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from playwright.async_api import Page, expect

import tests.test_console as console_tests
from tests.conftest import TEST_PASSWORD
from tests.test_console import CHIEF, OPERATOR, VIEWER, Stack, open_console, shot

# The console tests' fixtures: the running stack, the browser, a page (uncaught page errors fail).
stack = console_tests.stack
browser = console_tests.browser
page = console_tests.page
pytestmark = console_tests.pytestmark


async def test_the_duty_log_is_written_and_searched_and_a_shift_handed_over_at_one_screen(
    stack: Stack, page: Page
) -> None:
    await open_console(page, stack, OPERATOR)
    await expect(page.locator("#tab-duty")).to_have_text("值班记录")
    await page.click("#tab-duty")
    await expect(page.locator("#view-duty")).to_be_visible()
    await expect(page.locator("#handovers-empty")).to_be_visible()

    # (1) Two entries in the log, then a search.
    await page.select_option("#duty-kind", "patrol")
    await page.fill("#duty-text", "22:00 巡查住院楼，疏散通道畅通")
    await page.click("#duty-write")
    rows = page.locator("#duty-log tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("巡查")
    await expect(rows.first).to_contain_text(OPERATOR.display_name)
    await page.select_option("#duty-kind", "equipment")
    await page.fill("#duty-text", "<b>控制器</b> 主电故障，已报维保")  # shown as text, never markup
    await page.click("#duty-write")
    await expect(rows).to_have_count(2)
    await expect(rows.first.locator(".duty-text")).to_have_text("<b>控制器</b> 主电故障，已报维保")
    await page.fill("#duty-q", "疏散")
    await page.click("#duty-search")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("疏散通道畅通")
    await page.fill("#duty-q", "没有这条")
    await page.click("#duty-search")
    await expect(page.locator("#duty-log-empty")).to_be_visible()
    await page.fill("#duty-q", "")
    await page.click("#duty-search")
    await expect(rows).to_have_count(2)

    # (2) The outgoing operator starts the handover: what is open now is shown before signing.
    await page.click("#handover-start")
    dialog = page.locator("#handover-dialog")
    await expect(dialog).to_be_visible()
    await expect(dialog.locator("[data-count]")).to_have_count(5)
    await expect(dialog.locator('[data-count="disabled"]')).to_contain_text("屏蔽点位")
    await page.fill("#handover-notes", "2区探测器故障待维保")
    await shot(page, "duty-01-handover-start", docs="duty-handover")
    await page.click("#handover-submit")
    await expect(dialog).to_be_hidden()
    handover = page.locator("#handovers tbody tr").first
    await expect(handover).to_contain_text("待接班")
    await expect(handover).to_contain_text(OPERATOR.display_name)

    # (3) The incoming person countersigns at this screen: a wrong password is refused, then theirs.
    await handover.locator('[data-action="countersign"]').click()
    sign = page.locator("#countersign-dialog")
    await expect(sign).to_be_visible()
    await page.fill("#countersign-user", CHIEF.name)
    await page.fill("#countersign-password", "not-the-password")
    await page.click("#countersign-submit")
    await expect(page.locator("#countersign-error")).to_contain_text("403")
    await expect(page.locator("#who")).to_contain_text(OPERATOR.display_name)  # still signed in
    await page.fill("#countersign-password", TEST_PASSWORD)
    await page.fill("#countersign-note", "已清点，接班")
    await shot(page, "duty-02-countersign", docs="duty-countersign")
    await page.click("#countersign-submit")
    await expect(sign).to_be_hidden()
    await expect(handover).to_have_attribute("data-signed", "true")
    await expect(handover).to_contain_text(CHIEF.display_name)
    await expect(handover.locator('[data-action="countersign"]')).to_have_count(0)
    await expect(page.locator("#who")).to_contain_text(OPERATOR.display_name)
    log = page.locator("#duty-log tbody tr")
    await expect(log.filter(has_text="接班签字")).to_have_count(1)
    await shot(page, "duty-03-signed", docs="duty")
    got = (await stack.api.get("/api/v1/handovers")).json()["items"][0]
    assert (got["outgoing"], got["incoming"], got["countersigned_via"]) == (
        OPERATOR.name,
        CHIEF.name,
        "password",
    )

    # (4) The handover's record as a PDF, saved and read back.
    async with page.expect_download() as download_info:
        await handover.locator('[data-action="pdf"]').click()
    download = await download_info.value
    assert download.suggested_filename == f"交接班记录-{got['id']}.pdf"
    path = Path(await download.path())
    text = (
        await asyncio.to_thread(
            subprocess.run,
            ["pdftotext", "-layout", str(path), "-"],
            capture_output=True,
            check=True,
            text=True,
        )
    ).stdout
    assert "消防控制室交接班记录" in text
    assert CHIEF.display_name in text
    assert "22:00 巡查住院楼，疏散通道畅通" in text

    # (5) English on the toggle.
    await page.click("#lang")
    await expect(page.locator("#tab-duty")).to_have_text("Duty log")
    await expect(page.locator("#handover-start")).to_have_text("Hand over")
    await expect(page.locator("#duty-log thead")).to_contain_text("Written by")
    await page.click("#lang")
    await expect(page.locator("#tab-duty")).to_have_text("值班记录")


async def test_a_viewer_reads_the_duty_log_but_gets_no_buttons(stack: Stack, page: Page) -> None:
    r = await stack.api.post("/api/v1/duty-log", json={"kind": "other", "text": "来访：消防支队检查"})
    assert r.status_code == 201, r.text
    await open_console(page, stack, VIEWER)
    await page.click("#tab-duty")
    await expect(page.locator("#duty-log tbody tr")).to_have_count(1)
    await expect(page.locator("#duty-log tbody tr")).to_contain_text("来访与其他")
    await expect(page.locator("#duty-write-form")).to_have_count(0)
    await expect(page.locator("#handover-start")).to_have_count(0)


async def test_the_handover_dialog_names_the_next_shifts_person_from_the_roster(
    stack: Stack, page: Page
) -> None:
    now = (await stack.api.get("/healthz")).json()["time"]
    shifts = [
        ("白班", now - 3600, now + 3600, [(OPERATOR.name, "control_room"), ("lisi", "control_room")]),
        ("夜班", now + 3600, now + 13 * 3600, [(CHIEF.name, "control_room"), (VIEWER.name, "control_room")]),
    ]
    for name, start, end, members in shifts:
        body = {
            "name": name,
            "start_ts": start,
            "end_ts": end,
            "members": [{"user": u, "role": r} for u, r in [*members, ("duty-admin", "leader_on_call")]],
        }
        r = await stack.api.post("/api/v1/roster", json=body)
        assert r.status_code == 201, r.text
    await open_console(page, stack, OPERATOR)
    await page.click("#tab-duty")
    await expect(page.locator("#duty-now")).to_contain_text("白班")
    await page.click("#handover-start")
    await expect(page.locator("#handover-dialog")).to_be_visible()
    await expect(page.locator("#handover-incoming")).to_have_value(CHIEF.name)
