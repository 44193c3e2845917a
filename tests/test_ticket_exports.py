"""Exports of hazard-rectification tickets: the printable seed form 隐患自查(督查)整改表 (PDF) and the
ledger (台账, XLSX), rendered in memory and served by the API over a real SQLite store.

The PDFs are read back the way a person or an archive search would: `pdftotext -layout` (poppler)
for the text, `pdffonts` for the embedded font, `pdftoppm` for a page image. The files are kept
under tests/artifacts/ for review. poppler-utils and fonts-wqy-microhei are required (scripts/test
installs them): without them these tests fail, saying so."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from openpyxl import load_workbook
from sqlalchemy import select, update

from alarms.service import AlarmService
from api.routes import ticket_exports
from core import cjk_font
from core.domain import AlarmCategory, DetectorEvent, DetectorEventKind
from storage.models import TicketCommentRow, TicketEventRow, TicketEvidenceRow, TicketRow
from tests.conftest import ApiClient, alarm_service, asgi_api
from tickets import export
from tickets.export import EvidenceMeta, FontUnavailableError, render_ledger_xlsx, render_ticket_pdf

ARTIFACTS = Path(__file__).parent / "artifacts"
CST = timezone(timedelta(hours=8))


def at(text: str) -> float:
    """Epoch seconds of a China Standard Time `YYYY-MM-DD HH:MM` (the tests run in that zone)."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=CST).timestamp()


@pytest.fixture(autouse=True)
def china_standard_time() -> Iterator[None]:
    """Times print in local time: pin it to the hospital's zone so the expected strings are exact."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "CST-8"  # POSIX form: needs no tzdata
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = before
        time.tzset()


def seed_ticket(**changes: Any) -> TicketRow:
    """A ticket with every field of the seed form filled, as a closed loop leaves it."""
    fields: dict[str, Any] = {
        "id": 12,
        "number": "YH-20261123-00012",
        "source": "inspection",
        "status": "closed",
        "category": "hazard",
        "hazard_type": "device.fault",
        "device_id": "smk-3-2",
        "site": "s1",
        "place": "s1/b1/f3/z2/r302",
        "department": "心内科",
        "responsible": "张建国",
        "inspection_time": at("2026-11-23 09:30"),
        "inspectors": "保卫科 李卫东、王晓红",
        "problem": (
            "住院楼三楼心内科护士站旁安全出口被医疗推车和杂物堵塞，疏散指示标志被遮挡；"
            "走廊东侧灭火器压力表指针处于红区，已失效；302病房感烟探测器报故障。"
        ),
        "measures": (
            "立即清理安全出口通道，推车集中停放至指定区域；更换失效灭火器并建立每月检查记录；"
            "检修302病房感烟探测器并完成功能测试；科室每日交班时检查疏散通道。"
        ),
        "deadline": at("2026-11-26 17:00"),
        "feedback": (
            "已清理通道并更换灭火器2具，张贴禁止堵塞标识，探测器已更换并测试正常，科室指定专人每日检查。"
        ),
        "feedback_signed_by": "张建国",
        "feedback_signed_at": at("2026-11-25 16:20"),
        "confirmed_by": "李卫东",
        "confirmed_at": at("2026-11-26 10:05"),
        "leader_signed_by": "陈志强",
        "leader_signed_at": at("2026-11-27 08:45"),
        "occurrences": 1,
        "assignee": "孙师傅",
        "overdue": False,
        "created_at": at("2026-11-23 09:40"),
        "updated_at": at("2026-11-27 08:45"),
        "rectified_at": at("2026-11-25 16:20"),
        "closed_at": at("2026-11-27 08:45"),
    }
    fields.update(changes)
    return TicketRow(**fields)


def seed_record() -> tuple[list[TicketEventRow], list[TicketCommentRow], list[EvidenceMeta], list[int]]:
    events = [
        TicketEventRow(
            ts=at("2026-11-23 09:40"),
            action="opened",
            actor="李卫东",
            note="季度消防检查发现",
            status_before=None,
            status_after="open",
        ),
        TicketEventRow(
            ts=at("2026-11-25 16:20"),
            action="rectify",
            actor="张建国",
            note="整改完成，申请复检",
            status_before="rectifying",
            status_after="rectified",
        ),
    ]
    comments = [TicketCommentRow(ts=at("2026-11-24 11:00"), author="王晓红", text="灭火器已到货")]
    evidence = [
        EvidenceMeta("安全出口整改后.jpg", "image/jpeg", 3 * 1024 * 1024, "张建国", at("2026-11-25 16:18")),
        EvidenceMeta("灭火器检查记录.pdf", "application/pdf", 2048, "张建国", at("2026-11-25 16:19"), "记录"),
    ]
    return events, comments, evidence, [1207, 1198]


# --- reading a PDF back -------------------------------------------------------------------------


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: apt-get install poppler-utils (scripts/test installs it)")
    return path


def save(pdf: bytes, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    path.write_bytes(pdf)
    return path


def layout_text(pdf: bytes, name: str) -> str:
    path = save(pdf, name)
    result = subprocess.run(
        [tool("pdftotext"), "-layout", str(path), "-"], capture_output=True, check=True, text=True
    )
    return result.stdout


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def line_with(text: str, *parts: str) -> str:
    """The one layout line that holds every part, in order (cells of one row print on one line)."""
    found = [line for line in text.splitlines() if re.search(".*".join(map(re.escape, parts)), line)]
    assert len(found) == 1, (parts, found, text)
    return found[0]


def reads(value: str, layout: str) -> bool:
    """Whether `value` reads back whole from `pdftotext -layout` output, wrapped or not.

    The layout prints a wrapped cell's lines beside its neighbours' (the label column), so from
    each line keep the pieces (runs of text between wide gaps) that belong to the value, and check
    that, in order and without whitespace, they spell the value."""
    target = squash(value)
    pieces = (squash(p) for line in layout.splitlines() for p in re.split(r"\s{2,}", line.strip()))
    return target in "".join(p for p in pieces if p and p in target)


ZH_FORM_LABELS = [  # the seed form's rows, in its order
    "科室",
    "责任人",
    "检查时间",
    "检查人员",
    "检查发现问题",
    "整改措施与意见",
    "整改时限",
    "整改落实情况反馈和负责人签字",
    "整改确认签字",
    "分管领导签字",
]


# --- the form (PDF) -----------------------------------------------------------------------------


def test_the_form_pdf_contains_every_field_of_the_seed_form() -> None:
    ticket = seed_ticket()
    pdf = render_ticket_pdf(ticket, *seed_record())
    assert pdf.startswith(b"%PDF-")
    text = layout_text(pdf, "ticket-form-zh.pdf")

    assert "隐患自查(督查)整改表" in text
    assert "编号：YH-20261123-00012" in text
    for label in ZH_FORM_LABELS:
        assert reads(label, text), f"label {label} missing from the form:\n{text}"
    # The rows come in the form's order (first occurrences, all on page one).
    flat = squash(text)
    positions = [flat.index(squash(label)[:4]) for label in ZH_FORM_LABELS]
    assert positions == sorted(positions), ZH_FORM_LABELS

    for value in [
        ticket.number,
        ticket.department,
        ticket.responsible,
        "2026-11-23 09:30",  # 检查时间
        ticket.inspectors,
        ticket.problem,  # long texts wrap over several lines
        ticket.measures,
        "2026-11-26 17:00",  # 整改时限
        ticket.feedback,
    ]:
        assert reads(value, text), f"{value!r} missing from the form:\n{text}"
    # The three sign-offs, each with its name and date.
    assert "负责人签字：张建国" in text
    assert "日期：2026-11-25 16:20" in text
    assert "签字：李卫东" in text
    assert "日期：2026-11-26 10:05" in text
    assert "签字：陈志强" in text
    assert "日期：2026-11-27 08:45" in text


def test_an_unsigned_form_leaves_lines_to_sign_by_hand() -> None:
    ticket = seed_ticket(
        status="assigned",
        feedback="",
        feedback_signed_by=None,
        feedback_signed_at=None,
        confirmed_by=None,
        confirmed_at=None,
        leader_signed_by=None,
        leader_signed_at=None,
        rectified_at=None,
        closed_at=None,
    )
    text = layout_text(render_ticket_pdf(ticket, [], [], [], []), "ticket-form-unsigned.pdf")

    blank = r"签字：_{8,}\s+日期：_+年_+月_+日"
    assert re.search("负责人" + blank, text), text
    assert len(re.findall("(?<!负责人)" + blank, text)) == 2, text
    assert "None" not in text
    # The second section says there is nothing rather than leaving a gap.
    assert text.count("无") >= 3


def test_the_form_in_english_uses_english_labels() -> None:
    ticket = seed_ticket()
    text = layout_text(render_ticket_pdf(ticket, *seed_record(), lang="en"), "ticket-form-en.pdf")

    for label in [
        "Hazard Self-inspection (Supervision) Rectification Form",
        "No.: YH-20261123-00012",
        "Department",
        "Responsible person",
        "Inspection time",
        "Inspectors",
        "Problems found",
        "Rectification measures and opinions",
        "Rectification deadline",
        "Rectification feedback and signature of the person responsible",
        "Rectification confirmed (signature)",
        "Supervising leader (signature)",
        "Status history",
        "Linked alarms",
        "Evidence",
    ]:
        assert reads(label, text), f"label {label!r} missing:\n{text}"
    for zh in ["检查发现问题", "整改措施与意见", "分管领导签字", "状态记录"]:
        assert zh not in text
    # The values stay as they were written.
    assert reads(ticket.problem, text)
    assert "Signature: 陈志强" in text
    assert "Date: 2026-11-27 08:45" in text


def test_the_second_section_lists_the_history_the_linked_alarms_and_the_evidence() -> None:
    text = layout_text(render_ticket_pdf(seed_ticket(), *seed_record()), "ticket-form-zh.pdf")
    record = text[text.index("工单处理记录") :]  # page two on

    history_headers = ["状态记录", "时间", "操作", "操作人", "说明"]
    other_headers = ["备注", "关联报警", "附件", "文件名", "大小"]
    for header in history_headers + other_headers:
        assert header in record
    assert re.search(r"2026-11-23 09:40\s+创建\s+李卫东\s+季度消防检查发现（待派单）", record), record
    assert re.search(r"整改完成\s+张建国\s+整改完成，申请复检（整改中 → 已整改）", record), record
    assert re.search(r"2026-11-24 11:00\s+王晓红\s+灭火器已到货", record), record
    assert "#1198、#1207" in record  # in order
    assert re.search(r"安全出口整改后\.jpg\s+3\.0 MB\s+image/jpeg\s+张建国", record), record
    assert re.search(r"灭火器检查记录\.pdf\s+2\.0 KB", record), record
    for fact in ["已关闭", "检查", "隐患", "设备故障", "smk-3-2", "s1/b1/f3/z2/r302", "孙师傅"]:
        assert fact in record, fact


def test_the_cjk_font_is_embedded_with_a_unicode_map_so_text_prints_and_extracts() -> None:
    path = save(render_ticket_pdf(seed_ticket(), *seed_record()), "ticket-form-zh.pdf")
    fonts = subprocess.run([tool("pdffonts"), str(path)], capture_output=True, check=True, text=True).stdout
    # name, type, encoding, emb, sub, uni, object: embedded, subset, with a ToUnicode map.
    listed = fonts.splitlines()[2:]
    assert listed, fonts
    for line in listed:  # every font, none left for the viewer to substitute
        assert re.search(r"TrueType\s+.*\byes\s+yes\s+yes\b", line), fonts


def test_the_first_page_renders_to_an_image_for_review() -> None:
    path = save(render_ticket_pdf(seed_ticket(), *seed_record()), "ticket-form-zh.pdf")
    prefix = ARTIFACTS / "ticket-form-zh"  # -singlefile: written as ticket-form-zh.png
    png_path = prefix.with_suffix(".png")
    png_path.unlink(missing_ok=True)
    subprocess.run(
        [tool("pdftoppm"), "-png", "-r", "80", "-f", "1", "-l", "1", "-singlefile", str(path), str(prefix)],
        check=True,
    )
    assert png_path.is_file(), "pdftoppm produced no image"
    png = png_path.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) > 20_000  # a page of ruled text, not a blank sheet


def test_a_problem_longer_than_a_page_continues_on_the_next_with_nothing_cut() -> None:
    problem = "".join(f"第{i}处：消防通道被占用，需清理并设置警示标识。" for i in range(1, 201))
    ticket = seed_ticket(problem=problem)
    text = layout_text(render_ticket_pdf(ticket, *seed_record()), "ticket-form-long.pdf")
    assert reads(problem, text)
    assert "第 2 页" in text.replace("第2页", "第 2 页")
    assert reads(ticket.measures, text)
    assert "分管领导签字" in text


def test_text_is_printed_as_written_never_read_as_markup() -> None:
    ticket = seed_ticket(problem="配电箱<b>未上锁</b> & 周边堆放纸箱 <br/>")
    text = layout_text(render_ticket_pdf(ticket, [], [], [], []), "ticket-form-markup.pdf")
    assert reads("配电箱<b>未上锁</b> & 周边堆放纸箱 <br/>", text)


def test_without_a_cjk_font_rendering_fails_saying_how_to_install_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(cjk_font, "KNOWN_CJK_FONTS", ())
    with pytest.raises(FontUnavailableError) as raised:
        render_ticket_pdf(seed_ticket(), [], [], [], [])
    assert "apt-get install fonts-wqy-microhei" in str(raised.value)
    assert "exports.font_path / FIREWATCH_EXPORTS__FONT_PATH" in str(raised.value)

    with pytest.raises(FontUnavailableError, match="is not a file"):
        render_ticket_pdf(seed_ticket(), [], [], [], [], font_path=tmp_path / "missing.ttf")
    not_a_font = tmp_path / "not-a-font.ttf"
    not_a_font.write_bytes(b"hello")
    with pytest.raises(FontUnavailableError, match="cannot use font"):
        render_ticket_pdf(seed_ticket(), [], [], [], [], font_path=not_a_font)


def test_a_configured_font_path_is_used() -> None:
    font = export.find_cjk_font()  # the installed one, given explicitly
    pdf = render_ticket_pdf(seed_ticket(), [], [], [], [], font_path=font.path)
    assert reads("检查发现问题", layout_text(pdf, "ticket-form-font-path.pdf"))


# --- the ledger (XLSX) --------------------------------------------------------------------------

LEDGER_HEADERS = [
    "序号",
    "编号",
    "科室",
    "责任人",
    "检查时间",
    "检查人员",
    "检查发现问题",
    "整改措施与意见",
    "整改时限",
    "状态",
    "整改完成时间",
    "是否超期",
    "整改落实情况反馈",
    "负责人签字",
    "整改确认签字",
    "分管领导签字",
    "来源",
    "类别",
    "设备",
    "位置",
]


def ledger_tickets() -> list[TicketRow]:
    return [
        seed_ticket(),
        seed_ticket(
            id=13,
            number="YH-20261124-00013",
            source="alarm",
            status="rectifying",
            category="fault",
            department="急诊科",
            responsible="周敏",
            problem='=HYPERLINK("http://x") 急诊楼一层手动报警按钮损坏',  # text, never a formula
            feedback="",
            feedback_signed_by=None,
            feedback_signed_at=None,
            confirmed_by=None,
            confirmed_at=None,
            leader_signed_by=None,
            leader_signed_at=None,
            rectified_at=None,
            closed_at=None,
            overdue=True,
            device_id=None,
        ),
        seed_ticket(id=14, number="YH-20261125-00014", department="心内科", status="closed"),
    ]


def test_the_ledger_has_one_row_per_ticket_under_the_chinese_headers() -> None:
    tickets = ledger_tickets()
    data = render_ledger_xlsx(tickets)
    (ARTIFACTS / "ticket-ledger.xlsx").parent.mkdir(exist_ok=True)
    (ARTIFACTS / "ticket-ledger.xlsx").write_bytes(data)
    wb = load_workbook(io.BytesIO(data))
    ws = wb["台账"]

    rows = list(ws.iter_rows(values_only=True))
    assert list(rows[0]) == LEDGER_HEADERS
    assert len(rows) == 1 + len(tickets)
    first = dict(zip(LEDGER_HEADERS, rows[1], strict=True))
    assert first == {
        "序号": 1,
        "编号": "YH-20261123-00012",
        "科室": "心内科",
        "责任人": "张建国",
        "检查时间": datetime(2026, 11, 23, 9, 30),
        "检查人员": "保卫科 李卫东、王晓红",
        "检查发现问题": tickets[0].problem,
        "整改措施与意见": tickets[0].measures,
        "整改时限": datetime(2026, 11, 26, 17, 0),
        "状态": "已关闭",
        "整改完成时间": datetime(2026, 11, 25, 16, 20),
        "是否超期": "否",
        "整改落实情况反馈": tickets[0].feedback,
        "负责人签字": "张建国 2026-11-25 16:20",
        "整改确认签字": "李卫东 2026-11-26 10:05",
        "分管领导签字": "陈志强 2026-11-27 08:45",
        "来源": "检查",
        "类别": "隐患",
        "设备": "smk-3-2",
        "位置": "s1/b1/f3/z2/r302",
    }
    second = dict(zip(LEDGER_HEADERS, rows[2], strict=True))
    assert second["检查发现问题"] == tickets[1].problem
    assert ws.cell(row=3, column=LEDGER_HEADERS.index("检查发现问题") + 1).data_type == "s"
    assert second["整改完成时间"] is None
    assert second["是否超期"] == "是"
    assert second["负责人签字"] is None  # not signed: an empty cell
    assert second["状态"] == "整改中"
    assert (second["来源"], second["类别"], second["设备"]) == ("报警", "故障", None)


def test_the_ledger_is_a_working_spreadsheet() -> None:
    ws = load_workbook(io.BytesIO(render_ledger_xlsx(ledger_tickets())))["台账"]
    inspected = ws.cell(row=2, column=LEDGER_HEADERS.index("检查时间") + 1)
    assert inspected.is_date
    assert inspected.number_format == "yyyy-mm-dd hh:mm"
    assert ws.freeze_panes == "A2"
    assert ws.auto_filter.ref == "A1:T4"
    assert ws.column_dimensions["G"].width >= 30  # 检查发现问题: wide, wrapped
    assert ws.cell(row=2, column=7).alignment.wrap_text


def test_the_ledger_summary_counts_by_status_and_by_department() -> None:
    ws = load_workbook(io.BytesIO(render_ledger_xlsx(ledger_tickets())))["汇总"]
    counts = {row[0]: row[1] for row in ws.iter_rows(values_only=True) if row and row[0] is not None}
    assert counts["已关闭"] == 2
    assert counts["整改中"] == 1
    assert counts["待派单"] == 0
    assert counts["是否超期"] == 1
    assert counts["合计"] == 3
    assert counts["心内科"] == 2
    assert counts["急诊科"] == 1


def test_the_ledger_in_english() -> None:
    wb = load_workbook(io.BytesIO(render_ledger_xlsx(ledger_tickets(), lang="en")))
    ws = wb["Ledger"]
    header = next(ws.iter_rows(values_only=True))
    assert header[:5] == ("#", "No.", "Department", "Responsible", "Inspection time")
    assert "Summary" in wb.sheetnames


def test_an_empty_ledger_still_has_its_headers() -> None:
    ws = load_workbook(io.BytesIO(render_ledger_xlsx([])))["台账"]
    assert [list(r) for r in ws.iter_rows(values_only=True)] == [LEDGER_HEADERS]


# --- the API over a real SQLite store -----------------------------------------------------------

T0 = at("2026-11-23 09:40")


@pytest.fixture
def alarms(tmp_path: Path) -> AlarmService:
    return alarm_service(tmp_path / "state.sqlite", T0)


@pytest.fixture
async def api(alarms: AlarmService, tmp_path: Path) -> AsyncIterator[ApiClient]:
    async with asgi_api(alarms, tmp_path) as client:
        # exports are for reading: a leader, not an admin, downloads them
        client.headers.update(client.as_("zhengyi", "leader", display_name="分管副院长 郑一"))
        yield client


def stored_ticket(alarms: AlarmService) -> int:
    """A ticket opened by a real fault alarm, then worked through the seed form's fields."""
    _, (change,) = alarms.apply(
        [DetectorEvent("smk-1-1", "device.fault", DetectorEventKind.RAISE, AlarmCategory.FAULT, T0, 1.0)]
    )
    seed = seed_ticket()
    form_fields = [
        "department",
        "responsible",
        "inspectors",
        "measures",
        "feedback",
        "feedback_signed_by",
        "feedback_signed_at",
        "confirmed_by",
        "confirmed_at",
        "leader_signed_by",
        "leader_signed_at",
        "deadline",
        "inspection_time",
    ]
    with alarms.sessions.begin() as s:
        s.execute(
            update(TicketRow)
            .where(TicketRow.id == change.ticket_id)
            .values({f: getattr(seed, f) for f in form_fields} | {"status": "closed"})
        )
        s.add(
            TicketEvidenceRow(
                ticket_id=change.ticket_id,
                ts=T0,
                uploaded_by="张建国",
                filename="探测器更换后.jpg",
                content_type="image/jpeg",
                size=5000,
                sha256="0" * 64,
                note="",
                data=b"\xff\xd8" + b"0" * 4998,
            )
        )
        s.add(TicketCommentRow(ticket_id=change.ticket_id, ts=T0 + 60, author="王晓红", text="已通知厂家"))
    return change.ticket_id


async def test_the_form_pdf_endpoint_prints_the_stored_ticket(
    api: httpx.AsyncClient, alarms: AlarmService
) -> None:
    ticket_id = stored_ticket(alarms)
    with alarms.sessions() as s:
        ticket = s.get(TicketRow, ticket_id)
        assert ticket is not None
        number, problem = ticket.number, ticket.problem

    r = await api.get(f"/api/v1/tickets/{ticket_id}/form.pdf")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf"
    assert f'filename="{number}.pdf"' in r.headers["content-disposition"]
    text = layout_text(r.content, "ticket-form-from-store.pdf")
    for value in [number, problem, "心内科", "张建国", "2026-11-23 09:30", "2026-11-26 17:00"]:
        assert reads(value, text), f"{value!r} missing:\n{text}"
    for signed in ["负责人签字：张建国", "签字：李卫东", "签字：陈志强", "日期：2026-11-27 08:45"]:
        assert signed in text
    assert "#1" in text  # the alarm that opened it
    assert "由报警 #1 自动生成" in text
    assert re.search(r"探测器更换后\.jpg\s+4\.9 KB", text), text
    assert "已通知厂家" in text
    # Its site and place by their names, never their paths (s1, s1/b1/f1/z1/r101).
    assert reads("测试医院", text)
    assert reads("住院楼 1F 1区 101病房", text), text
    assert "s1/" not in text

    ledger = await api.get("/api/v1/tickets/ledger.xlsx")
    assert ledger.status_code == 200
    sheet = load_workbook(io.BytesIO(ledger.content)).worksheets[0]
    values = [str(c.value) for row in sheet.iter_rows() for c in row if c.value is not None]
    assert "住院楼 1F 1区 101病房" in values
    assert not [v for v in values if v.startswith("s1/")]

    r = await api.get(f"/api/v1/tickets/{ticket_id}/form.pdf", params={"lang": "en"})
    assert r.status_code == 200
    assert reads("Problems found", layout_text(r.content, "ticket-form-from-store-en.pdf"))


async def test_people_are_named_by_their_display_names_on_the_form_and_in_the_ledger(
    api: ApiClient, alarms: AlarmService
) -> None:
    """Whoever acted on the ticket (assigned, signed, commented, uploaded, took a step) reads as the
    console names them: their display name, never their user name."""
    api.as_("jianguo", "safety", display_name="设备科 张建国")
    ticket_id = stored_ticket(alarms)
    with alarms.sessions.begin() as s:
        s.execute(
            update(TicketRow)
            .where(TicketRow.id == ticket_id)
            .values(assignee="jianguo", feedback_signed_by="jianguo", confirmed_by="jianguo")
        )
        s.execute(update(TicketEvidenceRow).values(uploaded_by="jianguo"))
        s.execute(update(TicketCommentRow).values(author="jianguo"))
        s.add(
            TicketEventRow(
                ticket_id=ticket_id,
                ts=T0 + 120,
                action="start",
                actor="jianguo",
                role="safety",
                note="",
                status_before="assigned",
                status_after="rectifying",
            )
        )

    r = await api.get(f"/api/v1/tickets/{ticket_id}/form.pdf")
    assert r.status_code == 200, r.text
    text = layout_text(r.content, "ticket-form-display-names.pdf")
    assert "负责人签字：设备科 张建国" in text
    assert "签字：设备科 张建国" in text
    assert line_with(text, "整改人", "设备科 张建国")
    assert line_with(text, "开始整改", "设备科 张建国")  # a step in the history
    assert line_with(text, "设备科 张建国", "已通知厂家")  # a comment
    assert re.search(r"image/jpeg\s+设备科 张", text)  # the evidence's uploader (wrapped)
    assert "jianguo" not in text

    r = await api.get("/api/v1/tickets/ledger.xlsx")
    assert r.status_code == 200, r.text
    ws = load_workbook(io.BytesIO(r.content))["台账"]
    header, *rows = ws.iter_rows(values_only=True)
    (row,) = [row for row in rows if row[header.index("负责人签字")]]
    assert str(row[header.index("负责人签字")]).startswith("设备科 张建国 ")
    assert str(row[header.index("整改确认签字")]).startswith("设备科 张建国 ")
    assert not any("jianguo" in str(cell) for row in rows for cell in row)


async def test_the_ledger_endpoint_is_not_taken_for_a_ticket_id_and_filters(
    api: httpx.AsyncClient, alarms: AlarmService
) -> None:
    stored_ticket(alarms)
    with alarms.sessions.begin() as s:
        for t in ledger_tickets()[1:]:
            t.id = None  # type: ignore[assignment]  # let the store number them
            s.add(t)

    r = await api.get("/api/v1/tickets/ledger.xlsx")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/vnd.openxmlformats-officedocument.spreadsheetml")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(load_workbook(io.BytesIO(r.content))["台账"].iter_rows(values_only=True))
    assert len(rows) == 1 + 3
    assert [row[0] for row in rows[1:]] == [1, 2, 3]

    async def numbers(**params: Any) -> list[str]:
        r = await api.get("/api/v1/tickets/ledger.xlsx", params=params)
        assert r.status_code == 200, r.text
        ws = load_workbook(io.BytesIO(r.content))["台账"]
        return [str(row[1]) for row in list(ws.iter_rows(values_only=True))[1:]]

    assert await numbers(department="急诊科") == ["YH-20261124-00013"]
    assert await numbers(status="rectifying") == ["YH-20261124-00013"]
    assert len(await numbers(site="s1")) == 3
    assert await numbers(site="s9") == []
    # since/until bound created_at: [since, until)
    assert len(await numbers(since=T0, until=T0 + 1)) == 3
    assert await numbers(since=T0 + 1) == []
    assert await numbers(until=T0) == []


async def test_a_missing_ticket_is_404_and_bad_input_is_422_never_500(
    api: httpx.AsyncClient, alarms: AlarmService
) -> None:
    r = await api.get("/api/v1/tickets/999/form.pdf")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"] == "ticket 999 does not exist"

    ticket_id = stored_ticket(alarms)
    for url, params in [
        (f"/api/v1/tickets/{ticket_id}/form.pdf", {"lang": "fr"}),
        ("/api/v1/tickets/ledger.xlsx", {"since": "-1"}),
        ("/api/v1/tickets/ledger.xlsx", {"until": "1e12"}),
        ("/api/v1/tickets/ledger.xlsx", {"since": "yesterday"}),
        ("/api/v1/tickets/ledger.xlsx", {"status": "done"}),
        ("/api/v1/tickets/ledger.xlsx", {"lang": "fr"}),
    ]:
        r = await api.get(url, params=params)
        assert r.status_code == 422, (url, params, r.text)
        assert r.headers["content-type"] == "application/problem+json"
    # A path segment that is not a number names no ticket (ids are routed as integers).
    assert (await api.get("/api/v1/tickets/abc/form.pdf")).status_code == 404


async def test_without_a_font_the_form_endpoint_is_503_with_what_to_do(
    api: httpx.AsyncClient, alarms: AlarmService, monkeypatch: pytest.MonkeyPatch
) -> None:
    ticket_id = stored_ticket(alarms)
    monkeypatch.setattr(cjk_font, "KNOWN_CJK_FONTS", ())
    r = await api.get(f"/api/v1/tickets/{ticket_id}/form.pdf")
    assert r.status_code == 503
    assert "apt-get install fonts-wqy-microhei" in r.json()["detail"]


async def test_a_ledger_wider_than_the_cap_is_refused_with_how_to_narrow_it(
    api: httpx.AsyncClient, alarms: AlarmService, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored_ticket(alarms)
    with alarms.sessions.begin() as s:
        t = ledger_tickets()[1]
        t.id = None  # type: ignore[assignment]
        s.add(t)
    monkeypatch.setattr(ticket_exports, "LEDGER_MAX_ROWS", 1)
    r = await api.get("/api/v1/tickets/ledger.xlsx")
    assert r.status_code == 422
    assert "narrow it" in r.json()["detail"]
    r = await api.get("/api/v1/tickets/ledger.xlsx", params={"department": "急诊科"})
    assert r.status_code == 200


def test_rows_loaded_from_the_store_render_like_rows_built_in_memory(alarms: AlarmService) -> None:
    ticket_id = stored_ticket(alarms)
    with alarms.sessions() as s:
        ticket = s.get(TicketRow, ticket_id)
        assert ticket is not None
        events = s.scalars(select(TicketEventRow).where(TicketEventRow.ticket_id == ticket_id)).all()
        pdf = render_ticket_pdf(ticket, events, [], [], [1])
        xlsx = render_ledger_xlsx([ticket])
    assert reads(seed_ticket().measures, layout_text(pdf, "ticket-form-store-direct.pdf"))
    row = list(load_workbook(io.BytesIO(xlsx))["台账"].iter_rows(values_only=True))[1]
    assert row[1] == ticket.number
    assert row[3] == "张建国"
