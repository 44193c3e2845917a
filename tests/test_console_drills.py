"""The drills view (演练) in a real browser (Debian's Chromium, Playwright) against the real service
behind uvicorn, fed by the simulated hospital (the stack of tests/test_console.py): a safety officer
declares a drill for the zone that will burn, the fire shows on the board at once marked 演练 with
its 这是真实火警 button, and the drill's report lists the incident, who acknowledged it and its PDF.

Never `playwright install`: the browser is /usr/bin/chromium."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Page, expect

from tests.test_console import (  # noqa: F401  (the fixtures, used by name)
    CHIEF,
    Stack,
    browser,
    open_console,
    page,
    pytestmark,
    shot,
    stack,
    until,
)


async def drill_incidents(on: Stack) -> list[dict[str, Any]]:
    r = await on.api.get("/api/v1/incidents", params={"open": True, "limit": 500})
    r.raise_for_status()
    return [i for i in r.json()["items"] if i["drill_id"] is not None]


async def test_a_declared_drill_marks_its_fire_on_the_board_and_reports_who_acted(
    stack: Stack,  # noqa: F811  (the fixture imported above)
    page: Page,  # noqa: F811
) -> None:
    await open_console(page, stack, CHIEF)
    await page.click("#tab-drills")
    section = page.locator("#view-drills")
    await expect(section.locator("h2").first).to_have_text("消防演练")
    await expect(section.locator(".empty")).to_have_text("还没有演练")

    # Declared through the form: the zone that will burn, for an hour (of the service's clock).
    form = section.locator('[data-role="drill-form"]')
    await form.locator('[data-role="drill-name"]').fill("住院楼夜间消防演练")
    await form.locator('[data-role="drill-places"]').select_option(stack.plan.fire_zone)
    await form.locator('[data-role="drill-submit"]').click()
    row = section.locator('table[data-role="drills"] tbody tr')
    await expect(row).to_have_count(1)
    await expect(row.locator('[data-role="status"]')).to_have_text("进行中")
    await shot(page, "drills-01-declared")

    # The fire: on the board at once, like any alarm, marked 演练, with the way out of the drill.
    stack.sim.fleet.flaming_fire(stack.plan.fire_zone, stack.sim.t)
    (inc, *_) = await until(lambda: drill_incidents(stack), "a drill incident in the API")
    await page.click("#tab-board")
    card = page.locator(f'#board-list > li[data-incident-id="{inc["id"]}"]')
    await expect(card.locator('span.flag[data-role="drill"]')).to_have_text("演练")
    await expect(card.locator('button[data-role="drill"]')).to_have_text("这是真实火警")
    await shot(page, "drills-02-board")

    # Acknowledged on the board; the report says by whom (the display name) and how fast.
    await card.locator('button[data-role="ack"]').click()
    await page.click("#inc-submit")
    await expect(card).to_have_attribute("data-acked", "true")
    await page.goto(f"{stack.base_url}/console#/drills")
    await page.locator('#view-drills a[data-role="report"]').click()
    report = page.locator('#view-drills [data-role="drill-report"]')
    await expect(report.locator('[data-role="drill-actors"]')).to_contain_text(CHIEF.display_name)
    acked = report.locator(f'tr[data-incident-id="{inc["id"]}"] td[data-step="acknowledged"]')
    await expect(acked).to_contain_text(CHIEF.display_name)
    await expect(report.locator('tr[data-step="acknowledged"] td').nth(1)).to_have_text("1")
    await shot(page, "drills-03-report")
    async with page.expect_download() as download:
        await report.locator('[data-role="drill-pdf"]').click()
    assert (await download.value).suggested_filename.endswith(".pdf")

    # English on the toggle.
    await page.click("#lang")
    await expect(page.locator("#tab-drills")).to_have_text("Drills")
    await expect(report.locator("h3").first).to_have_text("Response times (from the first alarm)")
