"""The shift report (值班记录 / 交接班记录): a control-room shift as the record GB 25506-2010 asks
for, printable as a PDF in Chinese. For a handover (the shift it ends) or for any time window:

一、值班时段与签字  the window, and each handover in it with both signatures and their times
二、交接班时未处理事项  what each handover's snapshot found open, as it was taken
三、本班事件  the incidents of the window (place names, kinds, categories and states in Chinese)
四、本班报警  the alarms of the window
五、值班记录  the duty log's entries of the window
六、交接班说明  the outgoing and incoming people's notes

`collect` reads the rows (one read transaction); `render_shift_pdf` is pure. Times are the service's
clock shown in local time (alarms/incident_report.py's `local_time`). An incident or alarm belongs to
the window when its first alarm came before the window's end and its last at or after its start (as
the lists' `since`/`until` select them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, Spacer, Table, TableStyle
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from accounts.display_names import person_zh
from alarms.duty_log import kind_zh
from alarms.incident_report import NONE_ZH, Names, alarm_type_label, local_time, verdict_zh
from alarms.labels import ALARM_STATE_ZH, CATEGORY_ZH, INCIDENT_KIND_ZH, INCIDENT_STATE_ZH, TICKET_STATUS_ZH
from core.cjk_font import embedded_font
from core.domain import AlarmCategory, AlarmState, IncidentKind, IncidentState
from core.pdf_pages import PAGE_W, build_a4, report_styles
from storage.duty_models import DutyLogRow, HandoverRow
from storage.models import AlarmRow, IncidentRow, UserRow

E = TypeVar("E", bound=StrEnum)

# The most rows a report lists of each; the counts are always whole and the report says how many
# were left out (a site-wide outage can raise hundreds of alarms in a shift).
INCIDENT_ROWS = 500
ALARM_ROWS = 1000
ENTRY_ROWS = 2000

VIA_ZH = {"password": "本人输入密码确认", "session": "本人登录确认"}
COUNT_LABELS = (
    ("incidents", "未结束事件", "起"),
    ("unacknowledged", "未确认报警", "条"),
    ("disabled", "屏蔽点位", "个"),
    ("faults", "故障", "个"),
    ("overdue_tickets", "超期整改单", "张"),
)


def zh(labels: dict[E, str], enum: type[E], value: str | None) -> str:
    """A stored code's Chinese label (未知 for a code no label knows, never the code)."""
    if value is None:
        return NONE_ZH
    try:
        return labels.get(enum(value), "未知")
    except ValueError:
        return "未知"


@dataclass(frozen=True, slots=True)
class HandoverPart:
    id: int
    started_ts: float
    outgoing_name: str
    incoming_name: str | None
    countersigned_ts: float | None
    via: str | None
    notes: str
    incoming_note: str
    snapshot: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ShiftReport:
    title: str
    start: float
    end: float
    handovers: tuple[HandoverPart, ...]
    incidents: tuple[tuple[str, ...], ...]  # 首报时间, 事件类型, 类别, 位置, 状态, 核实结论, 受理人
    incidents_total: int
    alarms: tuple[tuple[str, ...], ...]  # 首次报警, 报警类型, 类别, 位置, 设备, 状态
    alarms_total: int
    entries: tuple[tuple[str, ...], ...]  # 时间, 类别, 记录人, 内容
    entries_total: int
    people: dict[str, str]  # user name -> display name: a person is shown by their signature

    def person(self, name: str | None) -> str:
        """Who acknowledged, by their signature (未受理: nobody yet)."""
        return person_zh(name, self.people) or "未受理"


def part_of(row: HandoverRow) -> HandoverPart:
    return HandoverPart(
        id=row.id,
        started_ts=row.started_ts,
        outgoing_name=row.outgoing_name or row.outgoing,
        incoming_name=row.incoming_name or row.incoming,
        countersigned_ts=row.countersigned_ts,
        via=row.countersigned_via,
        notes=row.notes,
        incoming_note=row.incoming_note,
        snapshot=row.snapshot,
    )


def collect(
    s: Session, names: Names, start: float, end: float, handovers: Sequence[HandoverRow], title: str
) -> ShiftReport:
    """The report of [start, end) with these handovers, read from the store."""

    def count(q: Any) -> int:
        return int(s.scalar(select(func.count()).select_from(q.subquery())) or 0)

    people = {
        name: display for name, display in s.execute(select(UserRow.name, UserRow.display_name)) if display
    }
    incidents = select(IncidentRow).where(IncidentRow.first_ts < end, IncidentRow.last_ts >= start)
    alarms = select(AlarmRow).where(AlarmRow.first_ts < end, AlarmRow.last_ts >= start)
    entries = select(DutyLogRow).where(DutyLogRow.ts >= start, DutyLogRow.ts < end)
    incident_rows = s.scalars(incidents.order_by(IncidentRow.first_ts, IncidentRow.id).limit(INCIDENT_ROWS))
    alarm_rows = s.scalars(alarms.order_by(AlarmRow.first_ts, AlarmRow.id).limit(ALARM_ROWS))
    entry_rows = s.scalars(entries.order_by(DutyLogRow.ts, DutyLogRow.id).limit(ENTRY_ROWS))
    return ShiftReport(
        title=title,
        start=start,
        end=end,
        handovers=tuple(part_of(h) for h in handovers),
        incidents=tuple(
            (
                local_time(i.first_ts),
                zh(INCIDENT_KIND_ZH, IncidentKind, i.kind),
                zh(CATEGORY_ZH, AlarmCategory, i.category),
                names.place(i.place) if i.place else NONE_ZH,
                zh(INCIDENT_STATE_ZH, IncidentState, i.state),
                verdict_zh(i) if i.kind in (IncidentKind.FIRE.value, IncidentKind.GAS.value) else NONE_ZH,
                person_zh(i.acked_by, people) or "未受理",
            )
            for i in incident_rows
        ),
        incidents_total=count(incidents),
        alarms=tuple(
            (
                local_time(a.first_ts),
                alarm_type_label(a, names),
                zh(CATEGORY_ZH, AlarmCategory, a.category),
                names.place(a.place) if a.place else NONE_ZH,
                a.device_id,
                zh(ALARM_STATE_ZH, AlarmState, a.state),
            )
            for a in alarm_rows
        ),
        alarms_total=count(alarms),
        entries=tuple(
            (local_time(e.ts), kind_zh(e.kind), e.author_name or e.author, e.text) for e in entry_rows
        ),
        entries_total=count(entries),
        people=people,
    )


# --- PDF ------------------------------------------------------------------------------------------

MARGIN = 16 * mm
BODY_W = PAGE_W - 2 * MARGIN
SHADE = colors.Color(0.93, 0.93, 0.93)


def _text(value: str) -> str:
    return escape(value).replace("\n", "<br/>")


def _signed(name: str | None, at: float | None) -> str:
    if not name:
        return "未签字"
    return f"{name}（{local_time(at)}）" if at is not None else name


def render_shift_pdf(report: ShiftReport, font_path: Path | None = None) -> bytes:
    """The report as A4 pages. Raises core.cjk_font.FontUnavailableError without a CJK font."""
    font = embedded_font(font_path)
    styles = report_styles(font)
    value, small, title, heading = styles.value, styles.small, styles.title, styles.heading
    subheading = styles.subheading

    def cell(text: str, style: ParagraphStyle = small) -> Paragraph:
        return Paragraph(_text(text), style)

    def grid(rows: list[list[str]], widths: Sequence[float], header: bool = True) -> Table:
        scale = BODY_W / sum(widths)
        table = Table(
            [[cell(v) for v in row] for row in rows],
            colWidths=[w * scale for w in widths],
            repeatRows=1 if header else 0,
            splitInRow=1,
        )
        style: list[Any] = [
            ("FONTNAME", (0, 0), (-1, -1), font),
            ("GRID", (0, 0), (-1, -1), 0.5, colors.black),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ]
        style.append(
            ("BACKGROUND", (0, 0), (-1, 0), SHADE) if header else ("BACKGROUND", (0, 0), (0, -1), SHADE)
        )
        table.setStyle(TableStyle(style))
        return table

    def none() -> Paragraph:
        return cell("无", value)

    def more(shown: int, total: int) -> list[Any]:
        return [cell(f"另有 {total - shown} 条未列出（共 {total} 条）。")] if total > shown else []

    story: list[Any] = [Paragraph(_text(report.title), title), Spacer(1, 3 * mm)]

    story.append(Paragraph("一、值班时段与签字", heading))
    rows = [["值班时段", f"{local_time(report.start)} 至 {local_time(report.end)}"]]
    for h in report.handovers:
        rows += [
            ["交接班编号", str(h.id)],
            ["交班人签字", _signed(h.outgoing_name, h.started_ts)],
            ["接班人签字", _signed(h.incoming_name, h.countersigned_ts)],
            ["接班确认方式", VIA_ZH.get(h.via or "", NONE_ZH)],
        ]
    if not report.handovers:
        rows.append(["交接班", "本时段内无交接班"])
    story.append(grid(rows, [30, 140], header=False))

    story.append(Paragraph("二、交接班时未处理事项", heading))
    if not report.handovers:
        story.append(none())
    for h in report.handovers:
        snap = h.snapshot
        story.append(Paragraph(_text(f"交接班 {h.id}（{local_time(snap['taken_ts'])} 记录）"), subheading))
        counts = snap["counts"]
        story.append(
            grid(
                [["项目", "数量"]] + [[label, f"{counts[k]} {unit}"] for k, label, unit in COUNT_LABELS],
                [60, 40],
            )
        )
        if snap["incidents"]:
            story.append(Paragraph("未结束事件", subheading))
            story.append(
                grid(
                    [["首报时间", "事件类型", "类别", "位置", "状态", "受理人"]]
                    + [
                        [
                            local_time(i["opened_ts"]),
                            zh(INCIDENT_KIND_ZH, IncidentKind, i["kind"]),
                            zh(CATEGORY_ZH, AlarmCategory, i["category"]),
                            i["place_name"] or NONE_ZH,
                            zh(INCIDENT_STATE_ZH, IncidentState, i["state"]),
                            report.person(i["acked_by"]),
                        ]
                        for i in snap["incidents"]
                    ],
                    [36, 18, 12, 56, 24, 30],
                )
            )
        for key, label in (("unacknowledged", "未确认报警"), ("disabled", "屏蔽点位"), ("faults", "故障")):
            if not snap[key]:
                continue
            story.append(Paragraph(_text(label), subheading))
            story.append(
                grid(
                    [["首次报警", "报警类型", "类别", "位置", "设备", "状态"]]
                    + [
                        [
                            local_time(a["first_ts"]),
                            a["type_name"],
                            zh(CATEGORY_ZH, AlarmCategory, a["category"]),
                            a["place_name"] or NONE_ZH,
                            a["device_id"],
                            zh(ALARM_STATE_ZH, AlarmState, a["state"]),
                        ]
                        for a in snap[key]
                    ],
                    [36, 34, 11, 50, 20, 25],
                )
            )
        if snap["overdue_tickets"]:
            story.append(Paragraph("超期整改单", subheading))
            story.append(
                grid(
                    [["编号", "位置", "检查发现问题", "整改时限", "状态"]]
                    + [
                        [
                            t["number"],
                            t["place_name"] or NONE_ZH,
                            t["problem"],
                            local_time(t["deadline"]),
                            TICKET_STATUS_ZH.get(t["status"], "未知"),
                        ]
                        for t in snap["overdue_tickets"]
                    ],
                    [28, 36, 60, 36, 16],
                )
            )
        if snap.get("truncated"):
            story.append(cell("注：清单每类最多列出 500 项，数量为全部。"))

    story.append(Paragraph("三、本班事件", heading))
    if report.incidents:
        header = ["首报时间", "事件类型", "类别", "位置", "状态", "核实结论", "受理人"]
        story.append(grid([header, *map(list, report.incidents)], [36, 16, 11, 48, 20, 20, 25]))
        story += more(len(report.incidents), report.incidents_total)
    else:
        story.append(none())

    story.append(Paragraph("四、本班报警", heading))
    if report.alarms:
        header = ["首次报警", "报警类型", "类别", "位置", "设备", "状态"]
        story.append(grid([header, *map(list, report.alarms)], [36, 34, 11, 50, 20, 25]))
        story += more(len(report.alarms), report.alarms_total)
    else:
        story.append(none())

    story.append(Paragraph("五、值班记录", heading))
    if report.entries:
        story.append(grid([["时间", "类别", "记录人", "内容"], *map(list, report.entries)], [36, 22, 22, 96]))
        story += more(len(report.entries), report.entries_total)
    else:
        story.append(none())

    story.append(Paragraph("六、交接班说明", heading))
    notes = [
        row
        for h in report.handovers
        for row in (
            [f"交接班 {h.id} 交班说明（{h.outgoing_name}）", h.notes or "无"],
            [f"交接班 {h.id} 接班说明（{h.incoming_name or '未接班'}）", h.incoming_note or "无"],
        )
    ]
    story.append(grid(notes, [50, 120], header=False) if notes else none())

    return build_a4(
        story,
        font=font,
        title=report.title,
        footer_left=f"{report.title}  {local_time(report.start)} 至 {local_time(report.end)}",
        page_label="第 {page} 页",
        margin=MARGIN,
    )
