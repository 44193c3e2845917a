"""The duty roster view (#/roster) in Debian's Chromium against the real service (the console tests'
stack): who is on duty now at the top (phone numbers only for roles that call them), the week's
shifts, and for the safety office a refused shift's rule errors, a saved one, and an imported sheet's
row errors listed; Chinese first, English on the toggle."""

from __future__ import annotations

import io
from datetime import datetime

import openpyxl
from playwright.async_api import FilePayload, Page, expect

from tests.test_console import CHIEF, MAINTENANCE, OPERATOR, VIEWER, Stack, browser, page, sign_in_page, stack

__all__ = ["browser", "page", "stack"]  # the console tests' fixtures, used here as they are
HOUR = 3600.0


def local_input(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%dT%H:%M")


def sheet(*rows: tuple[str, ...]) -> bytes:
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(["日期", "班次", "开始", "结束", "岗位", "姓名"])
    for row in rows:
        ws.append(list(row))
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


async def open_roster(page: Page, stack: Stack, user: object) -> None:
    await page.goto(f"{stack.base_url}/console#/roster")
    await sign_in_page(page, user)  # type: ignore[arg-type]
    await expect(page.locator("#roster-now")).to_be_visible()


async def test_the_roster_view_shows_who_is_on_duty_and_the_safety_office_edits_it(
    stack: Stack, page: Page
) -> None:
    now = stack.service.clock()
    end = now // 60 * 60 + 20 * HOUR  # on a whole minute: the form's time fields hold minutes
    people = [
        {"user": OPERATOR.name, "role": "control_room"},
        {"user": MAINTENANCE.name, "role": "control_room"},
        {"user": CHIEF.name, "role": "leader_on_call"},
    ]
    saved = await stack.api.put(f"/api/v1/roster/contacts/{OPERATOR.name}", json={"phone": "13800000001"})
    assert saved.status_code == 200
    created = await stack.api.post(
        "/api/v1/roster", json={"name": "白班", "start_ts": now - HOUR, "end_ts": end, "members": people}
    )
    assert created.status_code == 201, created.text

    # A viewer: the people on duty by name and role, no phone number, no editing.
    await open_roster(page, stack, VIEWER)
    on_duty = page.locator("#roster-now .roster-people > li")
    await expect(on_duty).to_have_count(3)
    await expect(on_duty.first).to_have_text(f"消防控制室 {OPERATOR.display_name}")
    await expect(on_duty.nth(2)).to_have_text(f"值班领导 {CHIEF.display_name}")
    await expect(page.locator(".roster-phone")).to_have_count(0)
    await expect(page.locator("#roster-add")).to_have_count(0)
    await expect(page.locator("#roster-table tbody tr")).to_have_count(1)
    await page.click("#signout")

    # The safety office: the phone shows; an overlapping shift is refused with the rule's words.
    await open_roster(page, stack, CHIEF)
    await expect(page.locator("#roster-now .roster-phone")).to_have_text(" 13800000001")
    await page.click("#roster-add")
    await page.fill("#roster-name", "加班")
    await page.fill("#roster-start", local_input(now + HOUR))
    await page.fill("#roster-end", local_input(now + 2 * HOUR))
    await page.select_option("#roster-pick-control_room", [OPERATOR.name])
    await page.click("#roster-save")
    problems = page.locator("#roster-problems li")
    await expect(problems.first).to_contain_text("消防控制室每班至少 2 人")
    await expect(problems.nth(1)).to_contain_text("值班领导须恰好 1 人")
    await expect(problems.nth(2)).to_contain_text("时间重叠")

    # A good shift after it: saved, in the table (when it falls in this week's window).
    await page.fill("#roster-name", "夜班")
    await page.fill("#roster-start", local_input(end))
    await page.fill("#roster-end", local_input(end + 8 * 3600))
    await page.select_option("#roster-pick-control_room", [OPERATOR.name, MAINTENANCE.name])
    await page.select_option("#roster-pick-leader_on_call", [CHIEF.name])
    await page.click("#roster-save")
    await expect(page.locator("#roster-form")).to_have_count(0)
    listed = await stack.api.get("/api/v1/roster", params={"start": now, "end": end + 9 * 3600})
    assert [s["name"] for s in listed.json()["shifts"]] == ["白班", "夜班"]

    # An imported sheet with a stranger in it: its row and column, nothing saved.
    await page.set_input_files(
        "#roster-file",
        FilePayload(
            name="值班表.xlsx",
            mimeType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            buffer=sheet(("2030-01-01", "白班", "08:00", "20:00", "消防控制室", "查无此人")),
        ),
    )
    await page.click("#roster-import")
    await expect(page.locator("#roster-problems li")).to_have_text(
        ["第 2 行，姓名：没有这个人员（或账号已停用）：「查无此人」"]
    )

    # English on the toggle: the tab, the headings, the roles.
    await page.click("#lang")
    await expect(page.locator("#tab-roster")).to_have_text("Duty roster")
    await expect(page.locator("#roster-now h2")).to_have_text("On duty now")
    await expect(on_duty.first).to_have_text(f"Fire control room {OPERATOR.display_name} 13800000001")
