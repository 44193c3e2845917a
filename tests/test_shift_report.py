"""The shift report (值班记录 / 交接班记录) as a person files it: a shift with a fire, a fault, the
duty log and a handover countersigned at the shared screen, served as a PDF by the API and read back
with poppler's `pdftotext -layout`: the window, both signatures and their times, what was open at
the handover, the shift's incidents and alarms with place names, the log and the notes, all in
Chinese with no internal identifier showing through.

Times print in local time: the tests pin it to China Standard Time (tests/test_ticket_exports.py).
poppler-utils and fonts-wqy-microhei are required (scripts/test installs them)."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest
from sqlalchemy import select

from core.domain import AlarmCategory, DetectorEvent, DetectorEventKind
from storage.models import IncidentRow
from tests.conftest import TEST_PASSWORD
from tests.test_duty_log import Duty
from tests.test_duty_log import duty as duty  # the API over the real services
from tests.test_ticket_exports import at, layout_text, reads, save, squash, tool
from tests.test_ticket_exports import china_standard_time as china_standard_time  # autouse: CST

NIGHT_STARTS = at("2026-11-22 20:00")
MORNING = at("2026-11-23 08:00")


@pytest.fixture
def store_url(tmp_path: Any) -> str:
    """The report reads what the other tests write on both stores: SQLite is enough here."""
    return f"sqlite:///{tmp_path / 'state.sqlite'}"


def line_with(text: str, *parts: str) -> str:
    found = [line for line in text.splitlines() if re.search(".*".join(map(re.escape, parts)), line)]
    assert len(found) == 1, (parts, found, text)
    return found[0]


def raise_alarm(duty: Duty, device: str, alarm_type: str, category: AlarmCategory, when: str) -> None:
    duty.clock.now = at(when)
    event = DetectorEvent(device, alarm_type, DetectorEventKind.RAISE, category, duty.clock.now, 0.3, "", "")
    duty.alarms.apply([event])


async def night_shift(duty: Duty) -> int:
    """20:00 the night shift begins (the last handover was countersigned then, by 张三 taking over)
    23:10 a fire in 1区 101病房, acknowledged by 张三 at 23:11; 张三 logs it
    02:00 张三 patrols and logs it       03:30 a fault at 2区 201病房, left for maintenance
    08:00 张三 hands over with notes; 李四 countersigns at 08:05 with her password at his screen"""
    zhang = duty.api.as_("zhangsan", "operator", display_name="值班员 张三")
    wang = duty.api.as_("wangwu", "operator", display_name="值班员 王五")
    duty.clock.now = at("2026-11-22 19:50")
    first = (await duty.api.post("/api/v1/handovers", json={}, headers=wang)).json()
    duty.clock.now = NIGHT_STARTS
    r = await duty.api.post(f"/api/v1/handovers/{first['id']}/countersign", json={}, headers=zhang)
    assert r.status_code == 200, r.text

    raise_alarm(duty, "smk-1-1", "smoke.alarm", AlarmCategory.FIRE, "2026-11-22 23:10")
    with duty.alarms.sessions() as s:
        incident_id = s.scalars(select(IncidentRow.id)).one()
    duty.clock.now = at("2026-11-22 23:11")
    r = await duty.api.post(
        f"/api/v1/incidents/{incident_id}/acknowledge", json={"note": "已派人"}, headers=zhang
    )
    assert r.status_code == 200, r.text
    for when, kind, text in (
        ("2026-11-22 23:20", "alarm_handling", "1区101病房火警，微型消防站核实为吸烟所致，已教育"),
        ("2026-11-23 02:00", "patrol", "夜间巡查住院楼1F，疏散通道畅通"),
    ):
        duty.clock.now = at(when)
        r = await duty.api.post("/api/v1/duty-log", json={"kind": kind, "text": text}, headers=zhang)
        assert r.status_code == 201, r.text
    raise_alarm(duty, "smk-2-2", "device.fault", AlarmCategory.FAULT, "2026-11-23 03:30")

    duty.clock.now = MORNING
    body = {"notes": "2区201病房探测器故障待维保；1区火警已处理完毕"}
    h = (await duty.api.post("/api/v1/handovers", json=body, headers=zhang)).json()
    duty.api.as_("lisi", "operator", display_name="值班员 李四")
    duty.clock.now = at("2026-11-23 08:05")
    r = await duty.api.post(
        f"/api/v1/handovers/{h['id']}/countersign",
        json={"username": "lisi", "password": TEST_PASSWORD, "note": "已清点，接班"},
        headers=zhang,
    )
    assert r.status_code == 200, r.text
    handover_id: int = h["id"]
    return handover_id


async def pdf_of(duty: Duty, path: str, name: str, **params: Any) -> str:
    r = await duty.api.get(path, params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf"
    return layout_text(r.content, name)


async def test_the_handover_report_shows_the_shift_its_signatures_and_what_was_open(duty: Duty) -> None:
    handover_id = await night_shift(duty)
    text = await pdf_of(duty, f"/api/v1/handovers/{handover_id}/report.pdf", "handover-report.pdf")
    assert "消防控制室交接班记录" in text
    for heading in (
        "一、值班时段与签字",
        "二、交接班时未处理事项",
        "三、本班事件",
        "四、本班报警",
        "五、值班记录",
        "六、交接班说明",
    ):
        assert heading in text, heading
    assert line_with(text, "值班时段", "2026-11-22 20:00:00 至 2026-11-23 08:05:00")
    assert line_with(text, "交班人签字", "值班员 张三（2026-11-23 08:00:00）")
    assert line_with(text, "接班人签字", "值班员 李四（2026-11-23 08:05:00）")
    assert line_with(text, "接班确认方式", "本人输入密码确认")
    # What was open at 08:00, as taken: the fire's incident (acknowledged, not closed: its alarm is
    # latched until reset) and the fault.
    open_part = text[text.index("二、交接班时未处理事项") : text.index("三、本班事件")]
    assert line_with(open_part, "未结束事件", "2起")
    assert line_with(open_part, "未确认报警", "1条")
    assert line_with(open_part, "故障", "1个")
    assert line_with(open_part, "超期整改单", "0张")
    assert line_with(open_part, "火情", "火警", "住院楼 1F 1区 101病房", "值班员 张三")
    # The fault is listed twice: unacknowledged, and a fault present.
    fault_rows = re.findall(
        r"2026-11-23 03:30:00\s+设备故障\s+故障\s+住院楼 1F 2区 201病房\s+smk-2-2\s+报警中·未确认", open_part
    )
    assert len(fault_rows) == 2, open_part
    assert reads("住院楼 1F 2区 201病房", open_part)
    # The shift's own incidents and alarms, in words.
    shift = text[text.index("三、本班事件") : text.index("五、值班记录")]
    assert line_with(shift, "2026-11-22 23:10:00", "火情", "火警", "住院楼 1F 1区 101病房")
    assert line_with(shift, "2026-11-22 23:10:00", "测试感烟探测器 火警", "火警", "smk-1-1", "报警中·已确认")
    log = text[text.index("五、值班记录") : text.index("六、交接班说明")]
    assert line_with(log, "2026-11-23 02:00:00", "巡查", "值班员 张三", "夜间巡查住院楼1F，疏散通道畅通")
    assert reads("1区101病房火警，微型消防站核实为吸烟所致，已教育", log)
    assert line_with(log, "2026-11-22 23:20:00", "报警处理", "值班员 张三")
    assert line_with(log, "2026-11-23 08:00:00", "交接班", "值班员 张三")
    assert line_with(log, "2026-11-23 08:05:00", "交接班", "值班员 李四")
    notes = text[text.index("六、交接班说明") :]
    assert reads("2区201病房探测器故障待维保；1区火警已处理完毕", notes)
    assert reads("已清点，接班", notes)
    for raw in (
        "zhangsan",
        "lisi",
        "smoke.alarm",
        "device.fault",
        "s1/b1",
        "active_",
        "password",
        "fire",
        "fault",
    ):
        assert raw not in text, raw


async def test_a_time_window_report_lists_the_handovers_in_it(duty: Duty) -> None:
    await night_shift(duty)
    text = await pdf_of(
        duty,
        "/api/v1/duty-log/report.pdf",
        "duty-log-report.pdf",
        start=at("2026-11-22 18:00"),
        end=at("2026-11-23 09:00"),
    )
    assert "消防控制室值班记录" in text
    assert line_with(text, "值班时段", "2026-11-22 18:00:00 至 2026-11-23 09:00:00")
    # Both handovers of the window: the evening's (王五 to 张三) and the morning's (张三 to 李四).
    assert line_with(text, "交班人签字", "值班员 王五（2026-11-22 19:50:00）")
    assert line_with(text, "接班人签字", "值班员 张三（2026-11-22 20:00:00）")
    assert line_with(text, "接班确认方式", "本人登录确认")
    assert line_with(text, "接班人签字", "值班员 李四（2026-11-23 08:05:00）")
    assert "夜间巡查住院楼1F，疏散通道畅通" in squash(text)
    quiet = await pdf_of(
        duty,
        "/api/v1/duty-log/report.pdf",
        "duty-log-quiet.pdf",
        start=at("2026-11-20 08:00"),
        end=at("2026-11-20 20:00"),
    )
    assert line_with(quiet, "交接班", "本时段内无交接班")
    assert squash(quiet).count("无") >= 4  # no incidents, alarms, entries or notes


async def test_the_report_embeds_its_font_and_refuses_a_bad_window(duty: Duty) -> None:
    handover_id = await night_shift(duty)
    r = await duty.api.get(f"/api/v1/handovers/{handover_id}/report.pdf")
    path = save(r.content, "handover-report-fonts.pdf")
    fonts = subprocess.run(  # noqa: ASYNC221 - a test reading a file it wrote
        [tool("pdffonts"), str(path)], capture_output=True, check=True, text=True
    ).stdout
    for line in fonts.splitlines()[2:]:
        assert re.search(r"TrueType\s+.*\byes\s+yes\s+yes\b", line), fonts
    for params in (
        {"start": MORNING, "end": MORNING},
        {"start": MORNING, "end": MORNING - 1},
        {"start": MORNING, "end": MORNING + 32 * 86400},
        {"start": MORNING},
    ):
        r = await duty.api.get("/api/v1/duty-log/report.pdf", params=params)
        assert r.status_code == 422, (params, r.text)
    assert (await duty.api.get("/api/v1/handovers/999/report.pdf")).status_code == 404
