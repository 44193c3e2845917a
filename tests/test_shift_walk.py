"""A shift in the fire control room, walked in Debian's Chromium against the real service (issue 22).

One test, in the order a shift lives it: the safety office puts the day's people on the roster; a
drill is declared for a ward zone; the fire staged there reaches the board marked 演练 and is taken
(受理) by the operator on duty; its floor plan opens with the burning detector blinking; the drill's
report has the response time; the operator writes the duty log and hands the shift over, the
incoming person countersigning at the same screen; a nurse reports a blocked fire door from a phone
through the QR page, and it becomes a ticket with its photo. The screenshots it takes are the ones
in docs/duty.md ("一个班次", with FW_DOCS_SCREENSHOTS=1). Every screen it passes and every document
of the shift (drill report, handover and duty log PDFs, QR sheet, roster and history spreadsheets) is
scanned for machine text a Chinese reader must not see. Fixtures and helpers are the console tests' own.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, FilePayload, Page, expect

import tests.test_console as console_tests
from core.domain import Role
from firewatch.demo_plans import demo_registry_placed, install_demo_plans
from tests.conftest import TEST_PASSWORD
from tests.test_console import (
    CHIEF,
    OPERATOR,
    Stack,
    User,
    new_page,
    open_alarms,
    open_console,
    shot,
    sign_in_page,
    until,
)
from tests.test_console_frontline import JPEG, phone_page
from tests.test_console_plans import incident_of_device
from tests.test_untranslated import cells, pdf_text, xlsx_text
from tests.untranslated import Scanner

# The console tests' fixtures: the running stack, the browser, a page (uncaught page errors fail).
stack = console_tests.stack
browser = console_tests.browser
page = console_tests.page
pytestmark = console_tests.pytestmark

HOUR = 3600.0
# The second person of the control room this shift, and the one who takes the next.
PARTNER = User("zhaoliu", "值班员赵六", ("operator",))
NEXT = User("sunqi", "值班员孙七", ("operator",))


def local_input(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%dT%H:%M")


async def test_a_shift_is_walked_from_the_roster_to_the_handover_with_a_drill_and_a_phone_report(
    stack: Stack, page: Page, browser: Browser, tmp_path: Path
) -> None:
    for person in (PARTNER, NEXT):
        stack.accounts.create_user(
            person.name, TEST_PASSWORD, [Role(r) for r in person.roles], display_name=person.display_name
        )
    zone = stack.plan.fire_zone
    floor = "/".join(zone.split("/")[:3])
    install_demo_plans(stack.service.sessions)  # the demo hospital's drawn plans, its devices placed
    stack.service.apply_registry(demo_registry_placed(stack.service.registry))
    now = stack.service.clock()
    screens: list[tuple[str, str]] = []  # every screen's text, scanned for machine text at the end

    # (1) The safety office puts the day shift on the roster: two in the control room, the leader.
    await open_console(page, stack, CHIEF)
    await page.click("#tab-roster")
    await page.click("#roster-add")
    await page.fill("#roster-name", "白班")
    await page.fill("#roster-start", local_input(now - HOUR))
    await page.fill("#roster-end", local_input(now + 11 * HOUR))
    await page.select_option("#roster-pick-control_room", [OPERATOR.name, PARTNER.name])
    await page.select_option("#roster-pick-leader_on_call", [CHIEF.name])
    await page.click("#roster-save")
    await expect(page.locator("#roster-form")).to_have_count(0)
    on_duty = page.locator("#roster-now .roster-people > li")
    await expect(on_duty).to_have_count(3)
    await expect(on_duty.first).to_contain_text(OPERATOR.display_name)
    await expect(on_duty.nth(1)).to_contain_text(PARTNER.display_name)
    await expect(on_duty.nth(2)).to_contain_text(CHIEF.display_name)
    await shot(page, "walk-01-roster", docs="walk-roster")
    screens.append(("roster", await page.inner_text("body")))

    # (2) A drill declared for the ward zone, for an hour from now.
    await page.click("#tab-drills")
    drills = page.locator("#view-drills")
    form = drills.locator('[data-role="drill-form"]')
    await form.locator('[data-role="drill-name"]').fill("住院楼病区消防演练")
    await form.locator('[data-role="drill-places"]').select_option(zone)
    await form.locator('[data-role="drill-submit"]').click()
    await expect(drills.locator('table[data-role="drills"] tbody tr [data-role="status"]')).to_have_text(
        "进行中"
    )
    await shot(page, "walk-02-drill", docs="walk-drill")
    screens.append(("drills", await page.inner_text("body")))
    await page.click("#signout")

    # (3) The operator on duty: the drill's fire reaches the board at once, marked 演练, and is taken.
    operator = await new_page(browser)
    await open_console(operator, stack, OPERATOR)
    stack.sim.fleet.flaming_fire(zone, stack.sim.t)
    fires = await until(lambda: open_alarms(stack, category="fire", place=floor), "the drill's fire alarm")
    incident = await until(lambda: incident_of_device(stack, floor), "the drill fire's incident")
    assert incident["drill_id"] is not None
    card = operator.locator(f'#board-list > li[data-incident-id="{incident["id"]}"]')
    await expect(card.locator('span.flag[data-role="drill"]')).to_have_text("演练")
    await card.locator('button[data-role="ack"]').click()
    await operator.fill("#inc-note", "演练火警，已派人到场")
    await operator.click("#inc-submit")
    await expect(card).to_have_attribute("data-acked", "true")
    await shot(operator, "walk-03-drill-fire", docs="walk-board")
    screens.append(("board", await operator.inner_text("body")))

    # (4) Its floor plan: the burning detector blinks where it is.
    await card.locator('[data-role="plan"]').click()
    burning = operator.locator(f'[data-role="plan-marker"][data-device-id="{fires[0]["device_id"]}"]')
    await expect(burning).to_have_css("animation-name", "plan-blink")
    await shot(operator, "walk-04-plan", docs="walk-plan")
    screens.append(("floor plan", await operator.inner_text("body")))

    # (5) The drill's report: the incident taken, by whom.
    await operator.goto(f"{stack.base_url}/console#/drills")
    await operator.locator('#view-drills a[data-role="report"]').click()
    report = operator.locator('#view-drills [data-role="drill-report"]')
    acked = report.locator(f'tr[data-incident-id="{incident["id"]}"] td[data-step="acknowledged"]')
    await expect(acked).to_contain_text(OPERATOR.display_name)
    await shot(operator, "walk-05-drill-report", docs="walk-drill-report")
    screens.append(("drill report", await operator.inner_text("body")))

    # (6) The duty log, then the handover: what is open is shown; the next operator countersigns here.
    await operator.click("#tab-duty")
    await operator.select_option("#duty-kind", "alarm_handling")
    await operator.fill("#duty-text", "住院楼病区消防演练：火警受理，微型消防站到场")
    await operator.click("#duty-write")
    await expect(operator.locator("#duty-log tbody tr").first).to_contain_text("消防演练")
    await operator.click("#handover-start")
    dialog = operator.locator("#handover-dialog")
    await expect(dialog).to_be_visible()
    await expect(dialog.locator('[data-count="incidents"]')).to_contain_text("1")
    await operator.fill("#handover-notes", "演练火警待复位")
    await operator.click("#handover-submit")
    await expect(dialog).to_be_hidden()
    handover = operator.locator("#handovers tbody tr").first
    await handover.locator('[data-action="countersign"]').click()
    await operator.fill("#countersign-user", NEXT.name)
    await operator.fill("#countersign-password", TEST_PASSWORD)
    await operator.click("#countersign-submit")
    await expect(handover).to_have_attribute("data-signed", "true")
    await expect(handover).to_contain_text(NEXT.display_name)
    await shot(operator, "walk-06-handover", docs="walk-handover")
    screens.append(("duty log and handover", await operator.inner_text("body")))

    # (7) A nurse finds a fire door blocked and reports it from her phone through the zone's QR code.
    codes = (await stack.api.get("/api/v1/report-codes", params={"place": zone})).json()
    code = next(c for c in codes if c["device_id"] is None and c["place"] == zone)
    nurse = await phone_page(browser)
    await nurse.goto(code["url"])
    await nurse.fill("#description", "护士站旁的防火门被推床挡住，关不上")
    await nurse.set_input_files(
        "#photo", files=[FilePayload(name="door.jpg", mimeType="image/jpeg", buffer=JPEG)]
    )
    await nurse.click("#submit")
    await expect(nurse.locator("#done")).to_be_visible()
    number = (await nurse.locator("#number").text_content()) or ""
    await shot(nurse, "walk-07-phone-report", docs="walk-phone-report")
    screens.append(("phone report", await nurse.inner_text("body")))
    items = (await stack.api.get("/api/v1/tickets", params={"source": "staff_report"})).json()["items"]
    (ticket,) = [t for t in items if t["number"] == number]
    assert ticket["place"] == zone
    await nurse.context.close()

    # (8) The history search finds the drill's incident; the safety office's QR codes.
    await operator.goto(f"{stack.base_url}/console#/history")
    await expect(operator.locator("#view-history")).to_be_visible()
    await operator.wait_for_load_state("networkidle")
    screens.append(("history", await operator.inner_text("body")))
    await operator.context.close()
    await page.goto(f"{stack.base_url}/console")
    await sign_in_page(page, CHIEF)
    await page.click("#tab-qr")
    await page.select_option("#qr-place", zone)
    await page.click("#qr-list")
    await expect(page.locator("#qr-table tbody tr").first).to_be_visible()
    screens.append(("QR codes", await page.inner_text("body")))

    # What the walk read, and the documents of the shift, have no machine text in them (the scan of
    # tests/untranslated.py; the board, tickets and their exports are tests/test_untranslated.py's).
    drill_id = incident["drill_id"]
    handover_id = (await stack.api.get("/api/v1/handovers")).json()["items"][0]["id"]
    window = {"start": now - HOUR, "end": stack.service.clock() + 60}
    documents: dict[str, tuple[str, dict[str, Any]]] = {
        "drill report PDF": (f"/api/v1/drills/{drill_id}/report.pdf", {}),
        "handover PDF": (f"/api/v1/handovers/{handover_id}/report.pdf", {}),
        "duty log PDF": ("/api/v1/duty-log/report.pdf", window),
        "QR sheet PDF": ("/api/v1/report-codes/sheet.pdf", {"place": zone}),
        "roster XLSX": ("/api/v1/roster/export.xlsx", window),
        "incident history XLSX": ("/api/v1/incidents/history.xlsx", {}),
    }
    for name, (path, params) in documents.items():
        r = await stack.api.get(path, params=params)
        assert r.status_code == 200, f"{name}: {r.text}"
        text = pdf_text(r.content, tmp_path) if path.endswith(".pdf") else cells(xlsx_text(r.content))
        assert text.strip(), name
        screens.append((name, text))
    found = Scanner().scan_all(screens)
    assert found == {}, "\n".join(f"{where}: {f}" for where, fs in found.items() for f in fs)
