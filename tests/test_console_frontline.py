"""The console for the people around the control room, in Debian's Chromium against the real service
(the `stack` of tests/test_console.py): the history search finds a past incident by the words of its
verdict note and opens it with its timeline and its incident report. Screenshots go to
tests/artifacts/console/ (and docs/images/ with FW_DOCS_SCREENSHOTS=1)."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Page, expect

from tests import test_console
from tests.test_console import OPERATOR, Stack, incident_of, open_alarms, open_console, shot, until

# The real service, the browser and a page, as tests/test_console.py makes them.
pytestmark = test_console.pytestmark
stack = test_console.stack
browser = test_console.browser
page = test_console.page


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
    await row.click()
    detail = page.locator("#history-incident")
    await expect(detail).to_have_attribute("data-incident-id", str(fire["id"]))
    await expect(page.locator('#history-timeline li[data-action="false_alarm"]')).to_contain_text(note)
    await expect(page.locator('#history-timeline li[data-action="reset"]')).to_contain_text("复位")
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
