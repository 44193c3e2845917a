"""Printable exports of hazard-rectification tickets: one ticket as the seed hospital's paper form
隐患自查(督查)整改表 (PDF, to print, sign by hand and file), and the ticket ledger (台账) as a
spreadsheet. Pure rendering: the caller loads the rows; nothing here opens a database session.

Times are epoch seconds and are shown in the server's local time, as `YYYY-MM-DD HH:MM`.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from xml.sax.saxutils import escape

from openpyxl import Workbook
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import PageBreak, Paragraph, Spacer, Table, TableStyle

from accounts.display_names import person_zh
from alarms.labels import CATEGORY_ZH, TICKET_ACTION_ZH, TICKET_SOURCE_ZH, TICKET_STATUS_ZH, alarm_type_zh
from core import xlsx_cells as xlsx
from core.cjk_font import FontUnavailableError as FontUnavailableError  # re-exported
from core.cjk_font import embedded_font
from core.cjk_font import find_cjk_font as find_cjk_font  # re-exported
from core.domain import AlarmCategory
from core.pdf_pages import build_a4
from storage.models import TicketCommentRow, TicketEventRow, TicketRow

Lang = Literal["zh", "en"]

# --- labels ---------------------------------------------------------------------------------------

# The console's words for statuses, sources and actions (alarms/labels.py): one term per thing.
STATUS_ZH: dict[str, str] = TICKET_STATUS_ZH
SOURCE_ZH: dict[str, str] = TICKET_SOURCE_ZH
ACTION_ZH: dict[str, str] = TICKET_ACTION_ZH

# The form's own words (zh) and their English equivalents, keyed by what they label.
LABELS: dict[Lang, dict[str, str]] = {
    "zh": {
        "title": "隐患自查(督查)整改表",
        "number": "编号",
        "department": "科室",
        "responsible": "责任人",
        "inspection_time": "检查时间",
        "inspectors": "检查人员",
        "problem": "检查发现问题",
        "measures": "整改措施与意见",
        "deadline": "整改时限",
        "feedback": "整改落实情况反馈和负责人签字",
        "confirmed": "整改确认签字",
        "leader": "分管领导签字",
        "responsible_sign": "负责人签字",
        "sign": "签字",
        "date": "日期",
        "record": "工单处理记录",
        "info": "工单信息",
        "status": "状态",
        "source": "来源",
        "category": "类别",
        "hazard_type": "隐患类型",
        "device": "设备",
        "site": "院区",
        "place": "位置",
        "assignee": "整改人",
        "created_at": "生成时间",
        "rectified_at": "整改完成时间",
        "closed_at": "关闭时间",
        "occurrences": "发生次数",
        "continued": "（续）",
        "blank_date": "______年____月____日",
        "list_sep": "、",
        "colon": "：",
        "overdue": "是否超期",
        "yes": "是",
        "no": "否",
        "history": "状态记录",
        "time": "时间",
        "action": "操作",
        "actor": "操作人",
        "note": "说明",
        "comments": "备注",
        "author": "备注人",
        "text": "内容",
        "alarms": "关联报警",
        "evidence": "附件",
        "filename": "文件名",
        "size": "大小",
        "content_type": "类型",
        "uploaded_by": "上传人",
        "none": "无",
        "page": "第 {page} 页",
        "ledger": "台账",
        "summary": "汇总",
        "by_status": "按状态",
        "by_department": "按科室",
        "count": "数量",
        "total": "合计",
        "no_department": "（未填科室）",
    },
    "en": {
        "title": "Hazard Self-inspection (Supervision) Rectification Form",
        "number": "No.",
        "department": "Department",
        "responsible": "Responsible person",
        "inspection_time": "Inspection time",
        "inspectors": "Inspectors",
        "problem": "Problems found",
        "measures": "Rectification measures and opinions",
        "deadline": "Rectification deadline",
        "feedback": "Rectification feedback and signature of the person responsible",
        "confirmed": "Rectification confirmed (signature)",
        "leader": "Supervising leader (signature)",
        "responsible_sign": "Signature of the person responsible",
        "sign": "Signature",
        "date": "Date",
        "record": "Ticket record",
        "info": "Ticket",
        "status": "Status",
        "source": "Source",
        "category": "Category",
        "hazard_type": "Hazard type",
        "device": "Device",
        "site": "Site",
        "place": "Place",
        "assignee": "Assignee",
        "created_at": "Created",
        "rectified_at": "Rectified",
        "closed_at": "Closed",
        "occurrences": "Occurrences",
        "continued": "(continued)",
        "blank_date": "________-____-____",
        "list_sep": ", ",
        "colon": ": ",
        "overdue": "Overdue",
        "yes": "yes",
        "no": "no",
        "history": "Status history",
        "time": "Time",
        "action": "Action",
        "actor": "By",
        "note": "Note",
        "comments": "Comments",
        "author": "Author",
        "text": "Text",
        "alarms": "Linked alarms",
        "evidence": "Evidence",
        "filename": "File",
        "size": "Size",
        "content_type": "Type",
        "uploaded_by": "Uploaded by",
        "none": "none",
        "page": "page {page}",
        "ledger": "Ledger",
        "summary": "Summary",
        "by_status": "By status",
        "by_department": "By department",
        "count": "Count",
        "total": "Total",
        "no_department": "(no department)",
    },
}


def status_label(status: str, lang: Lang) -> str:
    return STATUS_ZH.get(status, status) if lang == "zh" else status


def source_label(source: str, lang: Lang) -> str:
    return SOURCE_ZH.get(source, source) if lang == "zh" else source


def category_label(category: str, lang: Lang) -> str:
    known = {c.value: c for c in AlarmCategory}
    return CATEGORY_ZH[known[category]] if lang == "zh" and category in known else category


def hazard_label(hazard_type: str, lang: Lang) -> str:
    return alarm_type_zh(hazard_type) if lang == "zh" else hazard_type


def action_label(action: str, lang: Lang) -> str:
    return ACTION_ZH.get(action, action) if lang == "zh" else action


def local_time(ts: float | None) -> str:
    """Epoch seconds as local `YYYY-MM-DD HH:MM`; empty for a time not (yet) set."""
    return "" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def file_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / (1024 * 1024):.1f} MB"


@dataclass(frozen=True, slots=True)
class EvidenceMeta:
    """What the form lists of an attached file: its metadata, never its bytes (up to the site's
    evidence size limit each, which the form has no use for)."""

    filename: str
    content_type: str
    size: int
    uploaded_by: str
    ts: float
    note: str = ""


# --- the form (PDF) -------------------------------------------------------------------------------

PAGE_W, PAGE_H = A4
MARGIN = 18 * mm
BODY_W = PAGE_W - 2 * MARGIN
GRID = colors.black
SHADE = colors.Color(0.93, 0.93, 0.93)
BLANK_NAME = "_" * 20  # a line to sign on by hand
CELL_PAD = 6.0
INNER_LINE, OUTER_LINE = 0.8, 1.6  # ruling widths, in points
PIECE_H = 0.75 * (PAGE_H - 2 * MARGIN)  # the most of a text in one row: a row must fit on a page
LONG_ROW_H = 42 * mm  # problem, measures, feedback: room to write, and page one filled like the paper form
SIGN_ROW_H = 18 * mm


@dataclass(frozen=True, slots=True)
class _Styles:
    title: ParagraphStyle
    heading: ParagraphStyle
    label: ParagraphStyle
    value: ParagraphStyle
    small: ParagraphStyle


def _styles(font: str, lang: Lang) -> _Styles:
    # wordWrap="CJK" breaks between any two Chinese characters (which have no spaces to break at).
    # Values are Chinese whatever the language of the labels; English labels wrap at spaces only.
    value = ParagraphStyle("value", fontName=font, fontSize=10.5, leading=15, wordWrap="CJK")
    return _Styles(
        title=ParagraphStyle("title", fontName=font, fontSize=18, leading=24, alignment=TA_CENTER),
        heading=ParagraphStyle(
            "heading", fontName=font, fontSize=13, leading=18, spaceBefore=8, spaceAfter=4
        ),
        label=ParagraphStyle(
            "label", parent=value, alignment=TA_CENTER, wordWrap="CJK" if lang == "zh" else None
        ),
        value=value,
        small=ParagraphStyle("small", parent=value, fontSize=9, leading=12),
    )


def _text(value: str) -> str:
    """User text as Paragraph markup: escaped, line breaks kept."""
    return escape(value).replace("\n", "<br/>")


def _signature(name: str | None, at: float | None, sign: str, lb: dict[str, str]) -> str:
    """`签字：name    日期：date`, with blank lines to sign on while not signed."""
    gap = "&nbsp;" * 6
    who = _text(name) if name else BLANK_NAME
    when = local_time(at) if at is not None else lb["blank_date"]
    return f"{_text(sign + lb['colon'])}{who}{gap}{_text(lb['date'] + lb['colon'])}{when}"


def _pieces(paragraph: Paragraph, width: float, height: float) -> list[Paragraph]:
    """A paragraph cut into pieces of at most `height` each. A table row cannot continue on the next
    page (reportlab's in-row splitting misplaces text beside a label or in a spanned cell), so a
    text longer than a page becomes several rows."""
    pieces = []
    while paragraph.wrap(width, height)[1] > height:
        parts = paragraph.split(width, height)
        if len(parts) < 2:
            break
        pieces.append(parts[0])
        paragraph = parts[1]
    return [*pieces, paragraph]


def ticket_people(
    tickets: Iterable[TicketRow],
    events: Iterable[TicketEventRow] = (),
    comments: Iterable[TicketCommentRow] = (),
    evidence: Iterable[EvidenceMeta] = (),
) -> set[str]:
    """The user names the form or ledger of `tickets` may show: read their display names once."""
    names: set[str | None] = set()
    for t in tickets:
        names |= {t.assignee, t.feedback_signed_by, t.confirmed_by, t.leader_signed_by}
    names |= {e.actor for e in events} | {c.author for c in comments} | {m.uploaded_by for m in evidence}
    return {n for n in names if n}


def _form(
    ticket: TicketRow, st: _Styles, lb: dict[str, str], lang: Lang, people: Mapping[str, str]
) -> list[Any]:
    """The seed form: its rows in its order, label on the left, value on the right."""
    label_w = (34 if lang == "zh" else 42) * mm  # English labels are longer
    value_w = (BODY_W - 2 * label_w) / 2
    wide_w = BODY_W - label_w - 2 * CELL_PAD  # the text width of a value spanning the row
    rows: list[list[Any]] = []
    min_heights: list[float] = []
    text_at: list[int] = []  # rows of written text: it starts at the top of its box, like handwriting

    def label(key: str, continued: bool = False) -> Paragraph:
        more = "<br/>" + _text(lb["continued"]) if continued else ""
        return Paragraph(_text(lb[key]) + more, st.label)

    def value(text: str) -> Paragraph:
        return Paragraph(_text(text), st.value)

    def signature(name: str | None, at: float | None, sign: str) -> Paragraph:
        return Paragraph(_signature(person_zh(name, people), at, sign, lb), st.value)

    def row(cells: list[Any], min_height: float = 0.0) -> None:
        rows.append(cells)
        min_heights.append(min_height)

    def text_rows(key: str, text: str, min_height: float, tail: Sequence[Any] = ()) -> None:
        """One box of text (plus `tail` under it), continued on as many rows as it takes. The box
        keeps room to write in by hand, as on paper: a box shrunk to its text leaves none for the
        next hand-written step. `tail` (a sign-off) sits at the bottom of the box."""
        pieces = _pieces(value(text), wide_w, PIECE_H)
        for i, piece in enumerate(pieces):
            first, last = i == 0, i == len(pieces) - 1
            cell: list[Any] = [piece]
            if last and tail:
                used = sum(f.wrap(wide_w, PAGE_H)[1] for f in [piece, *tail])
                cell += [Spacer(1, max(4 * mm, min_height - used)), *tail]
            text_at.append(len(rows))
            row([label(key, continued=not first), cell, "", ""], min_height if first else 0.0)

    row([label("department"), value(ticket.department), label("responsible"), value(ticket.responsible)])
    row(
        [
            label("inspection_time"),
            value(local_time(ticket.inspection_time)),
            label("inspectors"),
            value(ticket.inspectors),
        ]
    )
    text_rows("problem", ticket.problem, LONG_ROW_H)
    text_rows("measures", ticket.measures, LONG_ROW_H)
    row([label("deadline"), value(local_time(ticket.deadline)), "", ""])
    responsible_sign = signature(ticket.feedback_signed_by, ticket.feedback_signed_at, lb["responsible_sign"])
    text_rows("feedback", ticket.feedback, LONG_ROW_H, tail=[responsible_sign])
    row(
        [label("confirmed"), signature(ticket.confirmed_by, ticket.confirmed_at, lb["sign"]), "", ""],
        SIGN_ROW_H,
    )
    row(
        [label("leader"), signature(ticket.leader_signed_by, ticket.leader_signed_at, lb["sign"]), "", ""],
        SIGN_ROW_H,
    )

    table = Table(rows, colWidths=[label_w, value_w, label_w, value_w], minRowHeights=min_heights)
    table.setStyle(
        TableStyle(
            [
                ("FONTNAME", (0, 0), (-1, -1), st.value.fontName),  # the spanned-over empty cells too
                ("GRID", (0, 0), (-1, -1), INNER_LINE, GRID),
                ("BOX", (0, 0), (-1, -1), OUTER_LINE, GRID),
                ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                ("BACKGROUND", (0, 0), (0, -1), SHADE),
                ("BACKGROUND", (2, 0), (2, 1), SHADE),
                ("TOPPADDING", (0, 0), (-1, -1), CELL_PAD),
                ("BOTTOMPADDING", (0, 0), (-1, -1), CELL_PAD),
                ("LEFTPADDING", (0, 0), (-1, -1), CELL_PAD),
                ("RIGHTPADDING", (0, 0), (-1, -1), CELL_PAD),
                # From the third row on the value spans the width: long text and the sign-offs.
                *[("SPAN", (1, r), (3, r)) for r in range(2, len(rows))],
                *[("VALIGN", (1, r), (3, r), "TOP") for r in text_at],
            ]
        )
    )
    number = Paragraph(_text(f"{lb['number']}{lb['colon']}{ticket.number}"), st.value)
    return [Paragraph(_text(lb["title"]), st.title), Spacer(1, 4 * mm), number, Spacer(1, 2 * mm), table]


def _grid(rows: list[list[Any]], widths_mm: Sequence[float], font: str, header: bool = True) -> Table:
    scale = BODY_W / (sum(widths_mm) * mm)  # the given widths are proportions of the page width
    table = Table(
        rows, colWidths=[w * mm * scale for w in widths_mm], repeatRows=1 if header else 0, splitInRow=1
    )
    style = [
        ("FONTNAME", (0, 0), (-1, -1), font),
        ("GRID", (0, 0), (-1, -1), 0.5, GRID),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
    ]
    if header:
        style.append(("BACKGROUND", (0, 0), (-1, 0), SHADE))
    table.setStyle(TableStyle(style))
    return table


def _record(
    ticket: TicketRow,
    events: Sequence[TicketEventRow],
    comments: Sequence[TicketCommentRow],
    evidence: Sequence[EvidenceMeta],
    alarm_ids: Sequence[int],
    st: _Styles,
    lb: dict[str, str],
    lang: Lang,
    people: Mapping[str, str],
    place_label: Callable[[str], str],
) -> list[Any]:
    """The second section: what the paper form has no room for, from the ticket's own records."""
    font = st.value.fontName

    def cell(text: str) -> Paragraph:
        return Paragraph(_text(text), st.small)

    def header(*keys: str) -> list[Any]:
        return [cell(lb[k]) for k in keys]

    def none() -> Paragraph:
        return Paragraph(_text(lb["none"]), st.small)

    # (label, value) pairs, two to a row.
    facts = [
        ("number", ticket.number),
        ("status", status_label(ticket.status, lang)),
        ("source", source_label(ticket.source, lang)),
        ("category", category_label(ticket.category, lang)),
        ("hazard_type", hazard_label(ticket.hazard_type, lang)),
        ("device", ticket.device_id or ""),
        ("site", place_label(ticket.site) if ticket.site else ""),
        ("place", place_label(ticket.place) if ticket.place else ""),
        ("assignee", person_zh(ticket.assignee, people)),
        ("overdue", lb["yes"] if ticket.overdue else lb["no"]),
        ("created_at", local_time(ticket.created_at)),
        ("rectified_at", local_time(ticket.rectified_at)),
        ("closed_at", local_time(ticket.closed_at)),
        ("occurrences", str(ticket.occurrences)),
    ]
    info = [
        [cell(lb[k1]), cell(v1), cell(lb[k2]), cell(v2)]
        for (k1, v1), (k2, v2) in zip(facts[::2], facts[1::2], strict=True)
    ]
    info_table = _grid(info, [25, 60, 25, 60], font, header=False)
    info_table.setStyle(
        TableStyle([("BACKGROUND", (0, 0), (0, -1), SHADE), ("BACKGROUND", (2, 0), (2, -1), SHADE)])
    )

    out: list[Any] = [
        Paragraph(_text(f"{lb['record']}  {ticket.number}"), st.heading),
        Paragraph(_text(lb["info"]), st.heading),
        info_table,
        Paragraph(_text(lb["history"]), st.heading),
    ]
    if events:
        history = [header("time", "action", "actor", "note")]
        for e in events:
            change = status_label(e.status_after, lang)
            if e.status_before is not None and e.status_before != e.status_after:
                change = f"{status_label(e.status_before, lang)} → {change}"
            note = f"{e.note}（{change}）" if e.note else change
            history.append(
                [
                    cell(local_time(e.ts)),
                    cell(action_label(e.action, lang)),
                    cell(person_zh(e.actor, people)),
                    cell(note),
                ]
            )
        out.append(_grid(history, [30, 25, 30, 95], font))
    else:
        out.append(none())

    out.append(Paragraph(_text(lb["comments"]), st.heading))
    if comments:
        rows = [header("time", "author", "text")]
        rows += [[cell(local_time(c.ts)), cell(person_zh(c.author, people)), cell(c.text)] for c in comments]
        out.append(_grid(rows, [30, 30, 120], font))
    else:
        out.append(none())

    out.append(Paragraph(_text(lb["alarms"]), st.heading))
    out.append(cell(lb["list_sep"].join(f"#{a}" for a in sorted(alarm_ids))) if alarm_ids else none())

    out.append(Paragraph(_text(lb["evidence"]), st.heading))
    if evidence:
        rows = [header("filename", "size", "content_type", "uploaded_by", "time", "note")]
        rows += [
            [
                cell(m.filename),
                cell(file_size(m.size)),
                cell(m.content_type),
                cell(person_zh(m.uploaded_by, people)),
                cell(local_time(m.ts)),
                cell(m.note),
            ]
            for m in evidence
        ]
        out.append(_grid(rows, [45, 16, 30, 20, 30, 40], font))
    else:
        out.append(none())
    return out


def render_ticket_pdf(
    ticket: TicketRow,
    events: Sequence[TicketEventRow],
    comments: Sequence[TicketCommentRow],
    evidence_meta: Sequence[EvidenceMeta],
    alarm_ids: Sequence[int],
    lang: Lang = "zh",
    font_path: Path | None = None,
    people: Mapping[str, str] | None = None,
    place_label: Callable[[str], str] = str,
) -> bytes:
    """The ticket as a printable A4 form: page one is the seed form to sign; the ticket's history,
    comments, linked alarms and evidence follow on a page of their own.

    People show by display name (`people`: user name -> display name, for `ticket_people`), places
    by their names (`place_label`: a place path -> 住院楼 2F 西区 …).
    Raises FontUnavailableError when no CJK font can be embedded (see `find_cjk_font`)."""
    who = people or {}
    font = embedded_font(font_path)
    st = _styles(font, lang)
    lb = LABELS[lang]

    story = [
        *_form(ticket, st, lb, lang, who),
        PageBreak(),
        *_record(ticket, events, comments, evidence_meta, alarm_ids, st, lb, lang, who, place_label),
    ]
    return build_a4(
        story,
        font=font,
        title=f"{lb['title']} {ticket.number}",
        footer_left=f"{lb['title']}  {ticket.number}",
        page_label=lb["page"],
        margin=MARGIN,
    )


# --- the ledger (XLSX) ----------------------------------------------------------------------------

# (zh header, en header, column width in characters); the order is the ledger's.
LEDGER_COLUMNS: tuple[tuple[str, str, float], ...] = (
    ("序号", "#", 6),
    ("编号", "No.", 18),
    ("科室", "Department", 12),
    ("责任人", "Responsible", 10),
    ("检查时间", "Inspection time", 17),
    ("检查人员", "Inspectors", 14),
    ("检查发现问题", "Problems found", 40),
    ("整改措施与意见", "Measures", 40),
    ("整改时限", "Deadline", 17),
    ("状态", "Status", 9),
    ("整改完成时间", "Rectified", 17),
    ("是否超期", "Overdue", 8),
    ("整改落实情况反馈", "Feedback", 40),
    ("负责人签字", "Responsible's signature", 22),
    ("整改确认签字", "Confirmed by", 22),
    ("分管领导签字", "Leader's signature", 22),
    ("来源", "Source", 8),
    ("类别", "Category", 8),
    ("设备", "Device", 14),
    ("位置", "Place", 28),
)
DATETIME_FORMAT = "yyyy-mm-dd hh:mm"
OVERDUE_FONT = Font(color="C00000", bold=True)


def _as_datetime(ts: float | None) -> datetime | None:
    # Naive local time: spreadsheet date cells have no time zone, and the form shows local time too.
    return None if ts is None else datetime.fromtimestamp(ts).replace(second=0, microsecond=0)


def render_ledger_xlsx(
    tickets: Sequence[TicketRow],
    lang: Lang = "zh",
    people: Mapping[str, str] | None = None,
    place_label: Callable[[str], str] = str,
) -> bytes:
    """The ledger (台账): one row per ticket in the given order, and a summary sheet of counts by
    status and by department. Signatures show by display name (`people`, for `ticket_people`),
    places by their names (`place_label`)."""
    who = people or {}

    def _signed(name: str | None, at: float | None) -> str:
        return " ".join(part for part in (person_zh(name, who), local_time(at)) if part)

    lb = LABELS[lang]
    # Write-only: a ledger of tens of thousands of tickets is streamed, not held as cell objects.
    wb = Workbook(write_only=True)
    ws = xlsx.sheet(wb, lb["ledger"], [width for _zh, _en, width in LEDGER_COLUMNS])
    last_col = get_column_letter(len(LEDGER_COLUMNS))
    ws.auto_filter.ref = f"A1:{last_col}{len(tickets) + 1}"

    ws.append(xlsx.header(ws, [zh if lang == "zh" else en for zh, en, _w in LEDGER_COLUMNS]))

    for n, t in enumerate(tickets, start=1):
        overdue = lb["yes"] if t.overdue else lb["no"]
        ws.append(
            [
                xlsx.cell(ws, n),
                xlsx.cell(ws, t.number),
                xlsx.cell(ws, t.department),
                xlsx.cell(ws, t.responsible),
                xlsx.cell(ws, _as_datetime(t.inspection_time), DATETIME_FORMAT),
                xlsx.cell(ws, t.inspectors),
                xlsx.cell(ws, t.problem),
                xlsx.cell(ws, t.measures),
                xlsx.cell(ws, _as_datetime(t.deadline), DATETIME_FORMAT),
                xlsx.cell(ws, status_label(t.status, lang)),
                xlsx.cell(ws, _as_datetime(t.rectified_at), DATETIME_FORMAT),
                xlsx.cell(ws, overdue, font=OVERDUE_FONT if t.overdue else None),
                xlsx.cell(ws, t.feedback),
                xlsx.cell(ws, _signed(t.feedback_signed_by, t.feedback_signed_at)),
                xlsx.cell(ws, _signed(t.confirmed_by, t.confirmed_at)),
                xlsx.cell(ws, _signed(t.leader_signed_by, t.leader_signed_at)),
                xlsx.cell(ws, source_label(t.source, lang)),
                xlsx.cell(ws, category_label(t.category, lang)),
                xlsx.cell(ws, t.device_id or ""),
                xlsx.cell(ws, place_label(t.place) if t.place else ""),
            ]
        )

    _summary(wb, tickets, lb, lang)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _summary(wb: Any, tickets: Sequence[TicketRow], lb: dict[str, str], lang: Lang) -> None:
    ws = wb.create_sheet(lb["summary"])
    ws.column_dimensions["A"].width = 24
    ws.column_dimensions["B"].width = 10
    by_status = Counter(t.status for t in tickets)
    by_department = Counter(t.department for t in tickets)
    # Every status of the loop is listed, in the loop's order, a zero included: a ledger summary
    # that omits "closed: 0" reads as if closing were not tracked.
    statuses = [*STATUS_ZH, *sorted(s for s in by_status if s not in STATUS_ZH)]

    ws.append(
        [
            xlsx.cell(ws, lb["by_status"], font=xlsx.HEADER_FONT),
            xlsx.cell(ws, lb["count"], font=xlsx.HEADER_FONT),
        ]
    )
    for status in statuses:
        ws.append([xlsx.cell(ws, status_label(status, lang)), xlsx.cell(ws, by_status[status])])
    ws.append([xlsx.cell(ws, lb["overdue"]), xlsx.cell(ws, sum(1 for t in tickets if t.overdue))])
    ws.append(
        [
            xlsx.cell(ws, lb["total"], font=xlsx.HEADER_FONT),
            xlsx.cell(ws, len(tickets), font=xlsx.HEADER_FONT),
        ]
    )
    ws.append([])
    ws.append(
        [
            xlsx.cell(ws, lb["by_department"], font=xlsx.HEADER_FONT),
            xlsx.cell(ws, lb["count"], font=xlsx.HEADER_FONT),
        ]
    )
    for department, count in sorted(by_department.items(), key=lambda item: (-item[1], item[0])):
        ws.append([xlsx.cell(ws, department or lb["no_department"]), xlsx.cell(ws, count)])
