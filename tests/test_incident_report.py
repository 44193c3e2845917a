"""The incident report (事件报告 / 火警处置记录): what a safety office files after a fire. A fire is
handled through the real alarm service on a SQLite store, each step at a known time of a fake
clock; the report is then read back as a person or an archive search would: the PDF with poppler's
`pdftotext -layout` and `pdffonts`, the spreadsheet with openpyxl, and both through the API.

Times print in local time: the tests pin it to China Standard Time (tests/test_ticket_exports.py).
poppler-utils and fonts-wqy-microhei are required (scripts/test installs them)."""

from __future__ import annotations

import io
import re
import subprocess
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from alarms.incident_report import (
    IncidentReport,
    Names,
    build_report,
    duration_zh,
    render_report_pdf,
    render_report_xlsx,
)
from alarms.service import AlarmService
from core import cjk_font
from core.domain import AlarmCategory, DetectorEvent, DetectorEventKind, FalseAlarmCause, Verification
from storage.models import AlarmRow, IncidentEventRow, IncidentRow
from tests.conftest import ApiClient, FakeClock, alarm_service, asgi_api
from tests.test_ticket_exports import at, layout_text, reads, save, squash, tool
from tests.test_ticket_exports import china_standard_time as china_standard_time  # autouse: local time is CST

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
START = "2026-11-23 14:00"
T0 = at(START)

OPERATOR = "消控室 张三"
VERIFIER = "微型消防站 王五"


def clock_of(alarms: AlarmService) -> FakeClock:
    assert isinstance(alarms.clock, FakeClock)
    return alarms.clock


def raise_(
    alarms: AlarmService, device: str, seconds: float, category: AlarmCategory = AlarmCategory.FIRE
) -> None:
    """A detector raises at T0 + seconds (the clock moves there too)."""
    clock_of(alarms).now = T0 + seconds
    alarm_type = "smoke.alarm" if category is AlarmCategory.FIRE else "smoke.pre_alarm"
    event = DetectorEvent(
        device, alarm_type, DetectorEventKind.RAISE, category, T0 + seconds, 0.3, "smoke", "", ""
    )
    alarms.apply([event])


def at_second(alarms: AlarmService, seconds: float) -> None:
    clock_of(alarms).now = T0 + seconds


def handled_fire(alarms: AlarmService, operator: str = OPERATOR, verifier: str = VERIFIER) -> int:
    """A fire in 住院楼 1F, handled by the book:

    14:00:00 smk-1-1 pre-alarm (1区 101病房)      14:01:30 张三 acknowledges
    14:00:20 smk-1-1 fire: the incident upgrades   14:01:50 张三 sends 王五 to check
    14:00:40 smk-2-1 fire: it spreads to 2区       14:02:50 王五 confirms a real fire
    14:01:20 nobody has acknowledged: escalated    14:03:10 张三 records the 119 call
                                                   14:25:00 张三 resets: the alarms end, it closes
    """
    raise_(alarms, "smk-1-1", 0, AlarmCategory.PRE_ALARM)
    raise_(alarms, "smk-1-1", 20)
    raise_(alarms, "smk-2-1", 40)
    at_second(alarms, 80)
    alarms.tick()
    with alarms.sessions() as s:
        incident_id = s.scalars(select(IncidentRow.id)).one()
    at_second(alarms, 90)
    alarms.acknowledge_incident(incident_id, actor=operator, note="已通知微型消防站")
    at_second(alarms, 110)
    alarms.verify_incident(incident_id, actor=operator, verifier=verifier)
    at_second(alarms, 170)
    alarms.decide_incident(
        incident_id, actor=verifier, verdict=Verification.CONFIRMED, note="101病房窗帘起火"
    )
    at_second(alarms, 190)
    alarms.record_119_call(incident_id, actor=operator, note="接警员 0231")
    at_second(alarms, 1500)
    alarms.reset_incident(incident_id, actor=operator, note="明火已扑灭，现场清理完毕")
    return incident_id


def report_of(alarms: AlarmService, incident_id: int) -> IncidentReport:
    with alarms.sessions() as s:
        inc = s.get(IncidentRow, incident_id)
        assert inc is not None
        events = s.scalars(select(IncidentEventRow).where(IncidentEventRow.incident_id == incident_id)).all()
        members = s.scalars(select(AlarmRow).where(AlarmRow.incident_id == incident_id)).all()
        return build_report(inc, events, members, Names.of(alarms.index))


@pytest.fixture
def alarms(tmp_path: Path) -> AlarmService:
    return alarm_service(tmp_path / "state.sqlite", T0)


@pytest.fixture
def fire(alarms: AlarmService) -> int:
    return handled_fire(alarms)


def pdf_text(alarms: AlarmService, incident_id: int, name: str) -> str:
    return layout_text(render_report_pdf(report_of(alarms, incident_id)), name)


def line_with(text: str, *parts: str) -> str:
    """The one layout line that holds every part, in order (cells of one row print on one line)."""
    found = [line for line in text.splitlines() if re.search(".*".join(map(re.escape, parts)), line)]
    assert len(found) == 1, (parts, found, text)
    return found[0]


# Every step of the fire, in the order taken: (step, who, to whom).
FIRE_TIMELINE = [
    ("报警", "系统", ""),
    ("升级为火警", "系统", "消防控制室"),
    ("蔓延至新区域", "系统", "消防控制室"),
    ("未受理，已升级", "系统", "微型消防站"),
    ("已受理", OPERATOR, "消防控制室、微型消防站"),
    ("核实中", OPERATOR, "消防控制室、微型消防站"),
    ("确认为真实火警", VERIFIER, "消防控制室、微型消防站、值班领导"),
    ("已拨打119", OPERATOR, "消防控制室、微型消防站"),
    ("已复位", OPERATOR, "消防控制室、微型消防站"),
    ("报警已全部恢复", "系统", "消防控制室、微型消防站"),
    ("已结束", "系统", ""),
]


# --- the PDF ---------------------------------------------------------------------------------------


def test_durations_read_as_the_people_on_duty_say_them() -> None:
    assert [duration_zh(s) for s in (0, 45, 90, 150, 1500, 3725, 90061)] == [
        "0秒",
        "45秒",
        "1分30秒",
        "2分30秒",
        "25分0秒",
        "1小时2分5秒",
        "25小时1分1秒",
    ]
    assert duration_zh(-30) == "提前30秒"  # a 119 call recorded as made before the alarm arrived


def test_the_report_heads_with_what_burned_where_and_who_handled_it(alarms: AlarmService, fire: int) -> None:
    text = pdf_text(alarms, fire, "incident-report.pdf")
    assert "事件报告（火警处置记录）" in text
    for heading in ("一、事件概要", "二、关键用时", "三、处置时间线", "四、报警明细"):
        assert heading in text, text
    assert line_with(text, "事件编号", str(fire), "事件类型", "火情")
    assert line_with(text, "类别", "火警", "状态", "已结束")
    # The place is where all its alarms are: the floor, as the registry names it; then each zone.
    assert line_with(text, "位置", "住院楼 1F", "涉及区域", "住院楼 1F 1区、住院楼 1F 2区")
    assert line_with(text, "首次报警时间", "2026-11-23 14:00:00", "首个火警时间", "2026-11-23 14:00:20")
    assert line_with(text, "核实结论", "真实火警", "结论人", f"{VERIFIER}（2026-11-23 14:02:50）")
    assert line_with(text, "受理人", OPERATOR, "核实人", VERIFIER)
    assert line_with(text, "拨打119", f"{OPERATOR}（2026-11-23 14:03:10）", "复位人", OPERATOR)
    assert line_with(text, "报警数", "3 条（2 台设备）", "结束时间", "2026-11-23 14:25:00")


def test_the_key_durations_count_from_the_first_alarm_and_the_footnote_says_so(
    alarms: AlarmService, fire: int
) -> None:
    text = pdf_text(alarms, fire, "incident-report.pdf")
    assert line_with(text, "受理用时", "1分30秒", "首次报警 2026-11-23 14:00:00", "受理 2026-11-23 14:01:30")
    # Confirmation counts from the first fire alarm (14:00:20), not the pre-alarm before it.
    assert line_with(
        text, "确认用时", "2分30秒", "首个火警 2026-11-23 14:00:20", "核实结论 2026-11-23 14:02:50"
    )
    assert line_with(text, "报警119用时", "3分10秒", "首次报警 2026-11-23 14:00:00")
    assert line_with(text, "复位用时", "25分0秒", "复位 2026-11-23 14:25:00")
    footnote = squash(text)
    assert "用时自首次报警（系统收到首个报警的时间2026-11-2314:00:00）起算" in footnote
    assert "确认用时自首个火警报警（2026-11-2314:00:20）起算" in footnote


def test_the_timeline_lists_every_step_in_order_with_who_took_it_and_whom_it_reached(
    alarms: AlarmService, fire: int
) -> None:
    text = pdf_text(alarms, fire, "incident-report.pdf")
    timeline = text[text.index("三、处置时间线") : text.index("四、报警明细")]
    rows = [
        line for line in timeline.splitlines() if re.match(r"\s*2026-11-23\s", line) and "+" in line
    ]  # a row's first line: its date, then the time since the first alarm
    assert len(rows) == len(FIRE_TIMELINE), timeline
    roles = ("消防控制室", "微型消防站", "值班领导")
    for line, (step, actor, targets) in zip(rows, FIRE_TIMELINE, strict=True):
        cells = re.split(r"\s{2,}", line.strip())
        assert cells[2] == step, (line, step)
        # Long names and several roles wrap in their cells: their first line starts them.
        assert squash(actor).startswith(squash(cells[3])), (line, actor)
        after = cells[4] if len(cells) > 4 else ""  # whom it reached, else the note, else nothing
        assert squash(targets).startswith(after) if targets else not after.startswith(roles), line
    # Cells that wrap read whole, line by line (the leader on call hears of a real fire).
    assert reads("消防控制室、微型消防站、值班领导", timeline)
    # An alarm's step says which alarm, where, in words; a person's step keeps their note.
    assert reads("测试感烟探测器 预警：住院楼 1F 1区 101病房（设备 smk-1-1）", timeline)
    assert reads("测试感烟探测器 火警：住院楼 1F 2区 201病房（设备 smk-2-1）", timeline)
    for note in (f"{VERIFIER} 前往现场核实", "101病房窗帘起火", "接警员 0231", "明火已扑灭，现场清理完毕"):
        assert reads(note, timeline), note


def test_the_alarms_are_listed_with_their_type_category_place_and_state_in_chinese(
    alarms: AlarmService, fire: int
) -> None:
    text = pdf_text(alarms, fire, "incident-report.pdf")
    listed = text[text.index("四、报警明细") :]
    assert line_with(listed, "设备", "报警类型", "类别", "位置", "首次报警", "状态", "次数")
    assert line_with(listed, "smk-1-1", "测试感烟探测器 预警", "预警", "住院楼 1F 1区 101病房", "已关闭", "1")
    assert line_with(
        listed, "smk-1-1", "测试感烟探测器 火警", "火警", "住院楼 1F 1区 101病房", "已恢复·已确认"
    )
    assert line_with(
        listed, "smk-2-1", "测试感烟探测器 火警", "火警", "住院楼 1F 2区 201病房", "已恢复·已确认"
    )


def test_no_internal_identifier_is_shown_raw(alarms: AlarmService, fire: int) -> None:
    text = pdf_text(alarms, fire, "incident-report.pdf")
    for raw in (
        "firewatch",
        "control_room",
        "micro_fire_station",
        "leader_on_call",
        "smoke.alarm",
        "smoke.pre_alarm",
        "s1/b1",
        "acknowledged",
        "confirmed",
        "upgraded",
        "closed",
        "cleared",
        "pre_alarm",
    ):
        assert raw not in text, raw


def test_the_cjk_font_is_embedded_so_the_report_prints_anywhere(alarms: AlarmService, fire: int) -> None:
    path = save(render_report_pdf(report_of(alarms, fire)), "incident-report.pdf")
    fonts = subprocess.run([tool("pdffonts"), str(path)], capture_output=True, check=True, text=True).stdout
    listed = fonts.splitlines()[2:]
    assert listed, fonts
    for line in listed:  # name, type, encoding, emb, sub, uni: embedded, subset, with a ToUnicode map
        assert re.search(r"TrueType\s+.*\byes\s+yes\s+yes\b", line), fonts


def test_the_same_incident_renders_to_the_same_bytes(alarms: AlarmService, fire: int) -> None:
    report = report_of(alarms, fire)
    assert render_report_pdf(report) == render_report_pdf(report)


def test_a_false_alarm_reads_with_its_cause_and_steps_it_did_not_need_say_so(alarms: AlarmService) -> None:
    raise_(alarms, "smk-1-2", 0, AlarmCategory.PRE_ALARM)
    with alarms.sessions() as s:
        incident_id = s.scalars(select(IncidentRow.id)).one()
    at_second(alarms, 45)
    alarms.decide_incident(
        incident_id, actor=OPERATOR, verdict=Verification.FALSE_ALARM, cause=FalseAlarmCause.COOKING
    )
    text = pdf_text(alarms, incident_id, "incident-report-false-alarm.pdf")
    assert line_with(text, "核实结论", "误报（油烟）")
    assert "事件报告（火警处置记录）" in text  # a pre-alarm of the fire alarm system is a fire incident
    # Deciding is acknowledging: both at once. Without a fire alarm, confirmation counts from the first.
    assert line_with(text, "受理用时", "45秒")
    assert line_with(text, "确认用时", "45秒", "首次报警 2026-11-23 14:00:00")
    assert line_with(text, "报警119用时", "无需拨打")
    assert line_with(text, "复位用时", "不适用")  # nothing latched: nothing to reset
    assert "确认用时同样自首次报警起算（本事件无火警报警）" in squash(text)


def test_an_incident_nobody_has_handled_yet_says_what_is_outstanding(alarms: AlarmService) -> None:
    raise_(alarms, "smk-1-3", 0)
    with alarms.sessions() as s:
        incident_id = s.scalars(select(IncidentRow.id)).one()
    text = pdf_text(alarms, incident_id, "incident-report-open.pdf")
    assert line_with(text, "状态", "处置中")
    assert line_with(text, "核实结论", "待核实")
    assert line_with(text, "受理人", "未受理")
    assert line_with(text, "结束时间", "未结束")
    for label, outstanding in (("受理用时", "未受理"), ("确认用时", "未核实"), ("报警119用时", "未拨打")):
        assert line_with(text, label, outstanding)
    assert line_with(text, "复位用时", "未复位")


# --- the spreadsheet ---------------------------------------------------------------------------------


def test_the_spreadsheet_has_the_summary_the_timeline_and_the_alarms(alarms: AlarmService, fire: int) -> None:
    data = render_report_xlsx(report_of(alarms, fire))
    (Path(__file__).parent / "artifacts").mkdir(exist_ok=True)
    (Path(__file__).parent / "artifacts" / "incident-report.xlsx").write_bytes(data)
    wb = load_workbook(io.BytesIO(data))
    assert wb.sheetnames == ["概要", "时间线", "报警"]

    summary = [row for row in wb["概要"].iter_rows(values_only=True) if any(v is not None for v in row)]
    facts = {
        row[0]: row[1] for row in summary[1 : summary.index(next(r for r in summary if r[0] == "关键用时"))]
    }
    assert facts["事件类型"] == "火情"
    assert facts["位置"] == "住院楼 1F"
    assert facts["首次报警时间"] == datetime(2026, 11, 23, 14, 0, 0)
    assert facts["核实结论"] == "真实火警"
    assert facts["受理人"] == OPERATOR
    assert facts["核实人"] == VERIFIER
    durations = {row[0]: row[1:3] for row in summary if str(row[0]).endswith("用时") and row[0] != "关键用时"}
    assert durations == {
        "受理用时": ("1分30秒", 90),
        "确认用时": ("2分30秒", 150),
        "报警119用时": ("3分10秒", 190),
        "复位用时": ("25分0秒", 1500),
    }
    assert str(summary[-1][0]).startswith("注：用时自首次报警")

    timeline = list(wb["时间线"].iter_rows(values_only=True))
    assert list(timeline[0]) == [
        "序号",
        "时间",
        "距首报",
        "距首报（秒）",
        "步骤",
        "操作人",
        "通知对象",
        "说明",
    ]
    assert [(r[4], r[5], r[6] or "") for r in timeline[1:]] == FIRE_TIMELINE
    assert timeline[1][1] == datetime(2026, 11, 23, 14, 0, 0)
    assert [r[3] for r in timeline[1:]] == sorted(r[3] for r in timeline[1:])
    acked = next(r for r in timeline if r[4] == "已受理")
    assert (acked[2], acked[3], acked[7]) == ("+1分30秒", 90, "已通知微型消防站")

    listed = list(wb["报警"].iter_rows(values_only=True))
    assert list(listed[0]) == [
        "序号",
        "设备",
        "设备类型",
        "报警类型",
        "类别",
        "位置",
        "首次报警",
        "最后报警",
        "状态",
        "次数",
    ]
    assert [r[1:6] + r[8:10] for r in listed[1:]] == [
        ("smk-1-1", "测试感烟探测器", "测试感烟探测器 预警", "预警", "住院楼 1F 1区 101病房", "已关闭", 1),
        (
            "smk-1-1",
            "测试感烟探测器",
            "测试感烟探测器 火警",
            "火警",
            "住院楼 1F 1区 101病房",
            "已恢复·已确认",
            1,
        ),
        (
            "smk-2-1",
            "测试感烟探测器",
            "测试感烟探测器 火警",
            "火警",
            "住院楼 1F 2区 201病房",
            "已恢复·已确认",
            1,
        ),
    ]
    assert listed[2][6] == datetime(2026, 11, 23, 14, 0, 20)


def test_a_note_in_the_spreadsheet_is_text_never_a_formula(alarms: AlarmService) -> None:
    raise_(alarms, "smk-1-1", 0)
    with alarms.sessions() as s:
        incident_id = s.scalars(select(IncidentRow.id)).one()
    alarms.acknowledge_incident(incident_id, actor=OPERATOR, note='=HYPERLINK("http://x")')
    ws = load_workbook(io.BytesIO(render_report_xlsx(report_of(alarms, incident_id))))["时间线"]
    cell = next(row[7] for row in ws.iter_rows(min_row=2) if row[4].value == "已受理")
    assert cell.value == '=HYPERLINK("http://x")'
    assert cell.data_type == "s"


# --- the API -----------------------------------------------------------------------------------------


@pytest.fixture
async def api(alarms: AlarmService, tmp_path: Path) -> AsyncIterator[ApiClient]:
    async with asgi_api(alarms, tmp_path) as client:
        client.headers.update(client.as_("viewer", "viewer", display_name="值班人员"))  # reading is enough
        yield client


async def test_the_report_endpoints_serve_the_pdf_and_the_spreadsheet(
    api: httpx.AsyncClient, alarms: AlarmService, fire: int
) -> None:
    r = await api.get(f"/api/v1/incidents/{fire}/report.pdf")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf"
    name = quote(f"事件报告-{fire}.pdf")
    assert r.headers["content-disposition"] == (
        f"inline; filename=\"incident-report-{fire}.pdf\"; filename*=UTF-8''{name}"
    )
    assert r.content == render_report_pdf(report_of(alarms, fire))
    text = layout_text(r.content, "incident-report-api.pdf")
    assert line_with(text, "受理用时", "1分30秒")

    r = await api.get(f"/api/v1/incidents/{fire}/report.xlsx")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == XLSX
    assert r.headers["content-disposition"] == (
        f'attachment; filename="incident-report-{fire}.xlsx"; '
        f"filename*=UTF-8''{quote(f'事件报告-{fire}.xlsx')}"
    )
    assert load_workbook(io.BytesIO(r.content)).sheetnames == ["概要", "时间线", "报警"]


async def test_people_are_named_by_their_display_names_in_the_report_and_the_history(
    api: ApiClient, alarms: AlarmService
) -> None:
    """Who acknowledged, checked, called 119 and reset read as the console names them: by display
    name, never by user name; the service's own steps as 系统."""
    api.as_("zhangsan", "operator", display_name=OPERATOR)
    api.as_("wangwu", "operator", display_name=VERIFIER)
    fire = handled_fire(alarms, operator="zhangsan", verifier="wangwu")

    r = await api.get(f"/api/v1/incidents/{fire}/report.pdf")
    assert r.status_code == 200, r.text
    text = layout_text(r.content, "incident-report-display-names.pdf")
    assert line_with(text, "核实结论", "真实火警", "结论人", f"{VERIFIER}（2026-11-23 14:02:50）")
    assert line_with(text, "受理人", OPERATOR, "核实人", VERIFIER)
    assert line_with(text, "拨打119", f"{OPERATOR}（2026-11-23 14:03:10）", "复位人", OPERATOR)
    assert line_with(text, "+1分30秒", "已受理", OPERATOR)  # the timeline
    assert line_with(text, "+1分50秒", "核实中", OPERATOR, f"{VERIFIER} 前往现场核实")
    assert line_with(text, "+1分20秒", "未受理，已升级", "系统")  # the service escalated it
    for user_name in ("zhangsan", "wangwu", "firewatch"):
        assert user_name not in text

    r = await api.get(f"/api/v1/incidents/{fire}/report.xlsx")
    assert r.status_code == 200, r.text
    wb = load_workbook(io.BytesIO(r.content))
    cells = [str(v) for ws in wb for row in ws.iter_rows(values_only=True) for v in row if v is not None]
    assert OPERATOR in cells
    assert VERIFIER in cells
    assert not [c for c in cells if "zhangsan" in c or "wangwu" in c]

    r = await api.get("/api/v1/incidents/history.xlsx", params={"order": "oldest"})
    assert r.status_code == 200, r.text
    ws = load_workbook(io.BytesIO(r.content)).active
    assert ws is not None
    header, row = ws.iter_rows(values_only=True)
    assert row[header.index("受理人")] == OPERATOR


async def test_a_missing_incident_is_404_and_a_caller_not_signed_in_is_401(
    api: httpx.AsyncClient, fire: int
) -> None:
    for suffix in ("pdf", "xlsx"):
        r = await api.get(f"/api/v1/incidents/{fire + 1}/report.{suffix}")
        assert r.status_code == 404, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert (await api.get(f"/api/v1/incidents/abc/report.{suffix}")).status_code == 404
        r = await api.get(f"/api/v1/incidents/{fire}/report.{suffix}", headers={"Authorization": ""})
        assert r.status_code == 401


async def test_without_a_font_the_pdf_is_503_with_what_to_do_and_the_spreadsheet_still_works(
    api: httpx.AsyncClient, fire: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cjk_font, "KNOWN_CJK_FONTS", ())
    r = await api.get(f"/api/v1/incidents/{fire}/report.pdf")
    assert r.status_code == 503
    assert "apt-get install fonts-wqy-microhei" in r.json()["detail"]
    assert (await api.get(f"/api/v1/incidents/{fire}/report.xlsx")).status_code == 200
