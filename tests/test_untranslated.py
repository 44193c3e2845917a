"""Nothing a Chinese user reads shows an internal identifier (tests/untranslated.py).

The real service (mosquitto, ingest, detection, alarms, tickets, accounts, uvicorn) runs the
simulated hospital with a realistic mix: a fire with its pre-alarms, a device fault, an offline
device, a fire door held open (supervisory), a malformed message (rejected), and a ticket worked
with a comment by people with display names. Then, in Chinese, the scan reads the console's visible
text (board with an incident's alarms open, the incident dialog, places, a device, the ticket list
and a ticket), the incident report PDF, the ticket form PDF, both XLSX exports and the pushes as
rendered for the people on duty.
"""

from __future__ import annotations

import io
import re
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect
from sqlalchemy import select

from alarms.model import IncidentUpdate, Transition, incident_snapshot, snapshot
from alarms.outbox import render, render_incident
from core.domain import AlarmAction, DeviceEventKind, IncidentAction
from simulators.devices import Malformed
from storage.models import AlarmRow, IncidentRow
from tests.test_console import (  # noqa: F401 - the console tests' fixtures
    CHROMIUM,
    MAINTENANCE,
    OPERATOR,
    Stack,
    browser,
    open_alarms,
    page,
    sign_in_page,
    stack,
    until,
)
from tests.untranslated import Scanner, scan_console

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
]


def test_the_scanner_flags_identifiers_templates_and_enum_values() -> None:
    scanner = Scanner()
    for sample in (
        "烟雾报警 — smoke >= 0.15 dB/m (clears below 0.1)",
        "设备故障 — device reported fault (code 3)",
        "设备离线 — no message for 90 s (limit 90 s)",
        "类型 smoke",
        "系统 fire_alarm",
        "报警类型 device.offline",
        "状态 active_unacknowledged",
        "型号 smoke-photoelectric 的 temp_l1",
        "核实结果 false_alarm",
        "位置 s1/b1/f1/z1/r101",
        "位置 hosp/inpatient/2F",
    ):
        assert scanner.findings(sample), sample


def test_the_scanner_lets_chinese_with_ids_units_and_numbers_pass() -> None:
    text = (
        "住院楼 / 2F / 西区病区 · b2-f2-z2-corr-smk-1 烟雾 ≥ 0.15 dB/m（低于 0.1 dB/m 恢复）；读数 0.18 dB/m "
        "2026-12-05 20:33:08 已拨打119 GB/T 26875.3 部件地址 0x90001 整改单 YH-20261123-00001 "
        "L1相线缆温度 55 °C 管网压力 0.35 MPa 可燃气体浓度 25 %LEL English"
    )
    assert Scanner().findings(text) == []


def pdf_text(data: bytes, tmp: Path) -> str:
    path = tmp / "doc.pdf"
    path.write_bytes(data)
    command = ["pdftotext", "-layout", str(path), "-"]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return done.stdout


def xlsx_text(data: bytes) -> str:
    """Every cell's text: the shared strings and inline strings of every sheet."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return "\n".join(
            z.read(n).decode("utf-8") for n in z.namelist() if n.startswith("xl/") and n.endswith(".xml")
        )


def cells(xml: str) -> str:
    return "\n".join(re.findall(r"<t[^>]*>([^<]*)</t>", xml))


async def stage_the_mix(stack: Stack) -> dict[str, Any]:  # noqa: F811
    fleet, now = stack.sim.fleet, stack.service.clock()
    fleet.flaming_fire(stack.plan.fire_zone, stack.sim.t)
    fleet.device_event(stack.plan.faulty_device, DeviceEventKind.FAULT, now, code=3)
    fleet.silence(stack.plan.silent_device)
    doors = sorted(d.id for d in stack.service.registry.devices.values() if d.profile == "fire-door")
    fleet.door_held_open(doors[0], stack.sim.t)
    fleet.malformed(stack.plan.faulty_device, Malformed.BAD_JSON, stack.sim.t, now)
    fires = await until(lambda: open_alarms(stack, category="fire"), "a fire alarm")

    async def offline() -> list[dict[str, Any]] | None:
        alarms = await open_alarms(stack, device_id=stack.plan.silent_device)
        return [a for a in alarms if a["alarm_type"] == "device.offline"] or None

    await until(offline, "the offline device", 60)

    async def ticket() -> dict[str, Any] | None:
        r = await stack.api.get("/api/v1/tickets", params={"device_id": stack.plan.faulty_device})
        items: list[dict[str, Any]] = r.json()["items"]
        return items[0] if items else None

    tk = await until(ticket, "the fault's ticket")
    return {"fire": fires[0], "ticket": tk}


async def test_what_a_chinese_user_reads_has_no_internal_identifiers(
    stack: Stack, page: Page, tmp_path: Path  # noqa: F811
) -> None:
    mix = await stage_the_mix(stack)
    scanner = Scanner()
    found: dict[str, list[str]] = {}

    # A ticket worked by people with display names: assigned, a comment.
    tk = mix["ticket"]
    await stack.api.post(
        f"/api/v1/tickets/{tk['id']}/transitions",
        json={"action": "assign", "role": "admin", "assignee": MAINTENANCE.display_name},
    )
    await stack.api.post(f"/api/v1/tickets/{tk['id']}/comments", json={"text": "已到现场", "role": "admin"})

    # The console, signed in as the operator, in Chinese.
    await page.goto(f"{stack.base_url}/console")
    await sign_in_page(page, OPERATOR)
    inc = await until(lambda: _incident_of(stack, mix["fire"]["id"]), "the fire's incident")
    card = page.locator(f'#board-list > li[data-incident-id="{inc["id"]}"]')
    await expect(card).to_be_visible()
    await card.locator('[data-role="toggle-alarms"]').click()
    await expect(card.locator("li.alarm").first).to_be_visible()
    board = await page.inner_text("body")
    assert "烟雾报警" in board, board  # the fire's alarms, open
    assert "设备故障" in board, board
    found |= scanner.scan_all([("board", board)])
    await card.locator('[data-role="ack"]').click()
    await expect(page.locator("#inc-dialog")).to_be_visible()
    found |= scanner.scan_all([("incident dialog", await page.inner_text("#inc-dialog"))])
    await page.click("#inc-cancel")
    fire_device = mix["fire"]["device_id"]
    zone = "/".join(mix["fire"]["place"].split("/")[:4])
    found |= await scan_console(
        page,
        stack.base_url,
        [
            f"places/{zone}",
            f"device/{fire_device}",
            f"device/{stack.plan.faulty_device}",
            "tickets",
            f"tickets/{tk['id']}",
        ],
        scanner,
    )

    # The incident report, the ticket form and both spreadsheets.
    report = await stack.api.get(f"/api/v1/incidents/{inc['id']}/report.pdf")
    form = await stack.api.get(f"/api/v1/tickets/{tk['id']}/form.pdf")
    ledger = await stack.api.get("/api/v1/tickets/ledger.xlsx")
    report_xlsx = await stack.api.get(f"/api/v1/incidents/{inc['id']}/report.xlsx")
    for r in (report, form, ledger, report_xlsx):
        assert r.status_code == 200, r.text
    report_text = pdf_text(report.content, tmp_path)
    assert "事件报告" in report_text
    found |= scanner.scan_all(
        [
            ("incident report PDF", report_text),
            ("ticket form PDF", pdf_text(form.content, tmp_path)),
            ("ticket ledger XLSX", cells(xlsx_text(ledger.content))),
            ("incident report XLSX", cells(xlsx_text(report_xlsx.content))),
        ]
    )

    # The pushes, as rendered for the people on duty from the recorded alarms and incidents.
    index = stack.service.index
    with stack.service.sessions() as s:
        alarms = list(s.scalars(select(AlarmRow)))
        incidents = list(s.scalars(select(IncidentRow)))
        pushes = []
        for a in alarms:
            after = snapshot(a)
            duty = ("control_room",)
            t = Transition(0, a.id, AlarmAction.RAISED, None, after, "firewatch", a.last_ts, targets=duty)
            msg = render(t, index.place_label(a.place))
            pushes.append((f"push of {a.alarm_type}", f"{msg['title']}\n{msg['body']}"))
        for i in incidents:
            u = IncidentUpdate(0, i.id, IncidentAction.OPENED, incident_snapshot(i), "firewatch", i.first_ts)
            msg = render_incident(u, index.place_label(i.place), i.first_ts)
            pushes.append((f"push of incident {i.id}", f"{msg['title']}\n{msg['body']}"))
    assert {a.alarm_type for a in alarms} >= {"device.fault", "device.offline"}
    found |= scanner.scan_all(pushes)

    assert found == {}, "\n".join(f"{where}: {f}" for where, fs in found.items() for f in fs)


async def _incident_of(stack: Stack, alarm_id: int) -> dict[str, Any] | None:  # noqa: F811
    r = await stack.api.get("/api/v1/incidents", params={"open": True, "limit": 100})
    for i in r.json()["items"]:
        if any(a["id"] == alarm_id for a in i["alarms"]):
            return dict(i)
    return None
