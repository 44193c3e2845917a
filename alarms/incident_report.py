"""The incident report (事件报告 / 火警处置记录): one incident as the record a safety office files
after a fire, a false alarm or a drill. Its header (what, where, when, the verdict and who took
which step), the key durations (time to acknowledge, to confirm, to call 119, to reset), its
timeline from the first alarm to reset and close, and its alarms; as a printable PDF and as a
spreadsheet (sheets 概要, 时间线, 报警).

Pure: the caller loads the rows (the incident, its IncidentEventRow timeline, its alarms) and
names the places and devices (`Names`, usually `Names.of(index)`); nothing here opens a database
session. Every value shown is in Chinese: enum values go through alarms/labels.py, place paths
through the registry's names, and the system's own steps show as 系统.

Times are the server's clock, on which every step is recorded, shown in local time as
`YYYY-MM-DD HH:MM:SS`. Durations count from the incident's opening (`opened_ts`: firewatch received
its first alarm), except the time to confirm, which counts from its first fire alarm (`fire_ts`;
from the opening when it never held one). The report's footnote says so.

>>> duration_zh(90), duration_zh(45), duration_zh(180), duration_zh(3725), duration_zh(-30)
('1分30秒', '45秒', '3分0秒', '1小时2分5秒', '提前30秒')
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar
from xml.sax.saxutils import escape

from openpyxl import Workbook
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, Spacer, Table, TableStyle

from accounts.display_names import person_zh
from alarms.labels import (
    ALARM_STATE_ZH,
    CATEGORY_ZH,
    CAUSE_ZH,
    INCIDENT_ACTION_ZH,
    INCIDENT_KIND_ZH,
    INCIDENT_STATE_ZH,
    VERIFICATION_ZH,
    alarm_type_zh,
    duty_role_zh,
)
from alarms.type_names import ALARM_TYPE_ZH
from core import xlsx_cells as xlsx
from core.cjk_font import embedded_font
from core.domain import (
    AlarmCategory,
    AlarmState,
    FalseAlarmCause,
    IncidentAction,
    IncidentKind,
    IncidentState,
    Verification,
)
from core.pdf_pages import build_a4, report_styles
from ingest.index import DeviceIndex
from storage.models import AlarmRow, IncidentEventRow, IncidentRow

E = TypeVar("E", bound=StrEnum)

NONE_ZH = "—"
ROLE_SEP = "、"

# Steps whose note is the system's description of the alarm that caused them (alarm type, place
# path, device id): the report describes that alarm in words instead.
ALARM_STEPS = frozenset(
    {
        IncidentAction.OPENED,
        IncidentAction.JOINED,
        IncidentAction.UPGRADED,
        IncidentAction.SPREAD,
        IncidentAction.REOPENED,
    }
)
CALLABLE_KINDS = frozenset({IncidentKind.FIRE, IncidentKind.GAS})  # 119 is called for these


# --- formatting -----------------------------------------------------------------------------------


def local_time(ts: float | None) -> str:
    """Epoch seconds as local `YYYY-MM-DD HH:MM:SS`; empty for a time not set."""
    return "" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def duration_zh(seconds: float) -> str:
    """A duration as the people on duty say it, to the second: 45秒, 1分30秒, 1小时2分5秒. A time
    before its reference (a 119 call recorded as made just before the alarm reached firewatch)
    reads 提前…."""
    total = round(seconds)
    if total < 0:
        return "提前" + duration_zh(-total)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}小时{minutes}分{secs}秒"
    if minutes:
        return f"{minutes}分{secs}秒"
    return f"{secs}秒"


def _enum_zh(labels: dict[E, str], enum: type[E], value: str | None) -> str:
    """The Chinese label of a stored enum value (a value no label knows: 未知, never the value)."""
    if value is None:
        return NONE_ZH
    member = _member(enum, value)
    return labels.get(member, "未知") if member is not None else "未知"


def _member(enum: type[E], value: str | None) -> E | None:
    try:
        return None if value is None else enum(value)
    except ValueError:
        return None


def people_of(inc: IncidentRow, events: Sequence[IncidentEventRow] = ()) -> set[str]:
    """The user names the report of `inc` mentions: read their display names once for it."""
    named = {inc.acked_by, inc.verdict_by, inc.call_119_by, inc.reset_by, inc.verifier}
    return {n for n in named if n} | {e.actor for e in events}


def verdict_zh(inc: IncidentRow) -> str:
    """真实火警, 误报（油烟）, 测试, 核实中 or 待核实."""
    verdict = _enum_zh(VERIFICATION_ZH, Verification, inc.verification)
    if inc.verification == Verification.FALSE_ALARM.value and inc.cause:
        verdict += f"（{_enum_zh(CAUSE_ZH, FalseAlarmCause, inc.cause)}）"
    return verdict


# --- names ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Names:
    """How places, devices and people read: a place path in words (住院楼 3F 东区), a device's kind
    in Chinese (its profile's name_zh; empty when the device is not in the registry), and the people
    by their display names (`people`: user name -> display name, from read_display_names)."""

    place: Callable[[str], str]
    device_kind: Callable[[str], str]
    people: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, index: DeviceIndex, people: Mapping[str, str] | None = None) -> Names:
        def device_kind(device_id: str) -> str:
            dev = index.dev_of.get(device_id)
            return "" if dev is None else index.profiles[dev].name_zh

        return cls(index.place_label, device_kind, dict(people or {}))

    def person(self, name: str | None) -> str:
        """A person by display name (保卫科 周九), the service as 系统, else the name as written."""
        return person_zh(name, self.people)


def alarm_type_label(alarm: AlarmRow, names: Names) -> str:
    """The alarm's type in Chinese: its label when alarms/labels.py has one, else the device's kind
    and the alarm's category (点型光电感烟火灾探测器 火警), never the type's code."""
    if alarm.alarm_type in ALARM_TYPE_ZH:
        return ALARM_TYPE_ZH[alarm.alarm_type]
    category = _enum_zh(CATEGORY_ZH, AlarmCategory, alarm.category)
    kind = names.device_kind(alarm.device_id)
    return f"{kind} {category}" if kind else alarm_type_zh(alarm.alarm_type)


# --- the report's model ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fact:
    """One line of the header. `at`: the value is that time (a date cell in the spreadsheet)."""

    label: str
    text: str
    at: float | None = None


@dataclass(frozen=True, slots=True)
class KeyDuration:
    """How long one step took: from `since` (what `since_label` names) to `until` (None: not taken,
    and `missing` says why)."""

    label: str
    since_label: str
    since: float
    until_label: str
    until: float | None
    missing: str

    @property
    def seconds(self) -> float | None:
        return None if self.until is None else self.until - self.since

    @property
    def text(self) -> str:
        return self.missing if self.seconds is None else duration_zh(self.seconds)


@dataclass(frozen=True, slots=True)
class TimelineLine:
    ts: float
    elapsed_s: float  # since the incident opened
    step: str
    actor: str
    targets: str  # the duty roles addressed, in Chinese, 、-separated
    note: str


@dataclass(frozen=True, slots=True)
class AlarmLine:
    device: str
    device_kind: str
    alarm_type: str
    category: str
    place: str
    first_ts: float
    last_ts: float
    state: str
    occurrences: int


@dataclass(frozen=True, slots=True)
class IncidentReport:
    number: int
    title: str
    facts: tuple[Fact, ...]
    durations: tuple[KeyDuration, ...]
    footnote: str
    timeline: tuple[TimelineLine, ...]
    alarms: tuple[AlarmLine, ...]


def _signed(name: str | None, at: float | None, names: Names) -> str:
    if not name:
        return ""
    who = names.person(name)
    return f"{who}（{local_time(at)}）" if at is not None else who


def _first(events: Sequence[IncidentEventRow], action: IncidentAction) -> IncidentEventRow | None:
    return next((e for e in events if e.action == action.value), None)


def _durations(inc: IncidentRow, events: Sequence[IncidentEventRow]) -> tuple[KeyDuration, ...]:
    opened = inc.opened_ts
    kind = _member(IncidentKind, inc.kind)
    verification = _member(Verification, inc.verification)
    # The first acknowledgement: a spread or an upgrade asks for another, which the timeline shows.
    acked = _first(events, IncidentAction.ACKNOWLEDGED)
    acked_ts = acked.ts if acked is not None else inc.acked_ts
    fire_since = inc.fire_ts if inc.fire_ts is not None else opened
    fire_label = "首个火警" if inc.fire_ts is not None else "首次报警"
    unverified = "核实中，未出结论" if verification is Verification.VERIFYING else "未核实"
    if kind not in CALLABLE_KINDS:
        no_call = "不适用"
    elif verification in (Verification.FALSE_ALARM, Verification.TEST):
        no_call = "无需拨打"
    else:
        no_call = "未拨打"
    no_reset = "未复位" if inc.fire_ts is not None else "不适用"
    return (
        KeyDuration("受理用时", "首次报警", opened, "受理", acked_ts, "未受理"),
        KeyDuration("确认用时", fire_label, fire_since, "核实结论", inc.verdict_ts, unverified),
        KeyDuration("报警119用时", "首次报警", opened, "拨打119", inc.call_119_ts, no_call),
        KeyDuration("复位用时", "首次报警", opened, "复位", inc.reset_ts, no_reset),
    )


def _footnote(inc: IncidentRow) -> str:
    text = f"注：用时自首次报警（系统收到首个报警的时间 {local_time(inc.opened_ts)}）起算；"
    if inc.fire_ts is not None:
        text += f"确认用时自首个火警报警（{local_time(inc.fire_ts)}）起算。"
    else:
        text += "确认用时同样自首次报警起算（本事件无火警报警）。"
    text += "受理用时为首次受理。"
    if abs(inc.first_ts - inc.opened_ts) >= 1:
        text += f"探测器报告的首个报警时间为 {local_time(inc.first_ts)}。"
    return text


def _note(e: IncidentEventRow, by_id: dict[int, AlarmRow], names: Names) -> str:
    alarm = by_id.get(e.alarm_id) if e.alarm_id is not None else None
    if alarm is not None and e.action in {a.value for a in ALARM_STEPS}:
        return f"{alarm_type_label(alarm, names)}：{names.place(alarm.place)}（设备 {alarm.device_id}）"
    return e.note


def build_report(
    inc: IncidentRow, events: Sequence[IncidentEventRow], alarms: Sequence[AlarmRow], names: Names
) -> IncidentReport:
    """The report of `inc` from its timeline (in the order taken) and its alarms."""
    events = sorted(events, key=lambda e: (e.ts, e.id or 0))
    by_id = {a.id: a for a in alarms}
    kind = _enum_zh(INCIDENT_KIND_ZH, IncidentKind, inc.kind)
    fire_side = _member(IncidentKind, inc.kind) in CALLABLE_KINDS
    title = "事件报告（火警处置记录）" if inc.kind == IncidentKind.FIRE.value else "事件报告"

    acked_by = list(dict.fromkeys(e.actor for e in events if e.action == IncidentAction.ACKNOWLEDGED.value))
    if not acked_by and inc.acked_by:
        acked_by = [inc.acked_by]
    zones = ROLE_SEP.join(names.place(z) for z in inc.zones)
    ended = inc.closed_ts if inc.closed_ts is not None else inc.ended_ts
    facts = (
        Fact("事件编号", str(inc.id)),
        Fact("事件类型", kind),
        Fact("类别", _enum_zh(CATEGORY_ZH, AlarmCategory, inc.category)),
        Fact("状态", _enum_zh(INCIDENT_STATE_ZH, IncidentState, inc.state)),
        Fact("位置", names.place(inc.place)),
        Fact("涉及区域", zones or NONE_ZH),
        Fact("首次报警时间", local_time(inc.opened_ts), inc.opened_ts),
        Fact(
            "首个火警时间",
            local_time(inc.fire_ts) if inc.fire_ts is not None else NONE_ZH,
            inc.fire_ts,
        ),
        Fact("核实结论", verdict_zh(inc)),
        Fact("结论人", _signed(inc.verdict_by, inc.verdict_ts, names) or NONE_ZH),
        Fact("受理人", ROLE_SEP.join(names.person(n) for n in acked_by) or "未受理"),
        Fact("核实人", names.person(inc.verifier) or NONE_ZH),
        Fact(
            "拨打119",
            _signed(inc.call_119_by, inc.call_119_ts, names) or ("未拨打" if fire_side else "不适用"),
        ),
        Fact("复位人", _signed(inc.reset_by, inc.reset_ts, names) or NONE_ZH),
        Fact("报警数", f"{inc.alarm_count} 条（{inc.device_count} 台设备）"),
        Fact("结束时间", local_time(ended) if ended is not None else "未结束", ended),
    )
    timeline = tuple(
        TimelineLine(
            ts=e.ts,
            elapsed_s=e.ts - inc.opened_ts,
            step=_enum_zh(INCIDENT_ACTION_ZH, IncidentAction, e.action),
            actor=names.person(e.actor),
            targets=ROLE_SEP.join(duty_role_zh(r) for r in e.targets or ()),
            note=_note(e, by_id, names),
        )
        for e in events
    )
    lines = tuple(
        AlarmLine(
            device=a.device_id,
            device_kind=names.device_kind(a.device_id),
            alarm_type=alarm_type_label(a, names),
            category=_enum_zh(CATEGORY_ZH, AlarmCategory, a.category),
            place=names.place(a.place) if a.place else NONE_ZH,
            first_ts=a.first_ts,
            last_ts=a.last_ts,
            state=_enum_zh(ALARM_STATE_ZH, AlarmState, a.state),
            occurrences=a.occurrences,
        )
        for a in sorted(alarms, key=lambda a: (a.first_ts, a.id or 0))
    )
    return IncidentReport(inc.id, title, facts, _durations(inc, events), _footnote(inc), timeline, lines)


# --- PDF ------------------------------------------------------------------------------------------

PAGE_W, PAGE_H = A4
MARGIN = 16 * mm
BODY_W = PAGE_W - 2 * MARGIN
GRID = colors.black
SHADE = colors.Color(0.93, 0.93, 0.93)


def _text(value: str) -> str:
    """User text as Paragraph markup: escaped, line breaks kept."""
    return escape(value).replace("\n", "<br/>")


def _grid(rows: list[list[Any]], widths: Sequence[float], font: str, header: bool = True) -> Table:
    scale = BODY_W / sum(widths)  # the given widths are proportions of the page width
    table = Table(rows, colWidths=[w * scale for w in widths], repeatRows=1 if header else 0, splitInRow=1)
    style = [
        ("FONTNAME", (0, 0), (-1, -1), font),
        ("GRID", (0, 0), (-1, -1), 0.5, GRID),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
    ]
    if header:
        style.append(("BACKGROUND", (0, 0), (-1, 0), SHADE))
    table.setStyle(TableStyle(style))
    return table


def render_report_pdf(report: IncidentReport, font_path: Path | None = None) -> bytes:
    """The report as A4 pages: header, key durations, timeline, alarms.

    Raises core.cjk_font.FontUnavailableError when no CJK font can be embedded."""
    font = embedded_font(font_path)
    styles = report_styles(font)
    value, small, title, heading = styles.value, styles.small, styles.title, styles.heading

    def cell(text: str, style: ParagraphStyle = small) -> Paragraph:
        return Paragraph(_text(text), style)

    def header(*labels: str) -> list[Any]:
        return [cell(label) for label in labels]

    facts = list(report.facts) + ([Fact("", "")] if len(report.facts) % 2 else [])
    info = [
        [cell(a.label, value), cell(a.text, value), cell(b.label, value), cell(b.text, value)]
        for a, b in zip(facts[::2], facts[1::2], strict=True)
    ]
    info_table = _grid(info, [25, 60, 25, 60], font, header=False)
    info_table.setStyle(
        TableStyle([("BACKGROUND", (0, 0), (0, -1), SHADE), ("BACKGROUND", (2, 0), (2, -1), SHADE)])
    )

    durations = [header("项目", "用时", "起算", "截止")]
    for d in report.durations:
        until = f"{d.until_label} {local_time(d.until)}" if d.until is not None else NONE_ZH
        durations.append(
            [
                cell(d.label, value),
                cell(d.text, value),
                cell(f"{d.since_label} {local_time(d.since)}"),
                cell(until),
            ]
        )

    story: list[Any] = [
        Paragraph(_text(report.title), title),
        Spacer(1, 3 * mm),
        Paragraph(_text("一、事件概要"), heading),
        info_table,
        Paragraph(_text("二、关键用时"), heading),
        _grid(durations, [24, 26, 60, 60], font),
        Spacer(1, 1.5 * mm),
        cell(report.footnote),
        Paragraph(_text("三、处置时间线"), heading),
    ]
    if report.timeline:
        rows = [header("时间", "距首报", "步骤", "操作人", "通知对象", "说明")]
        rows += [
            [
                cell(local_time(t.ts)),
                cell("+" + duration_zh(t.elapsed_s)),
                cell(t.step),
                cell(t.actor),
                cell(t.targets),
                cell(t.note),
            ]
            for t in report.timeline
        ]
        story.append(_grid(rows, [24, 19, 27, 22, 24, 56], font))
    else:
        story.append(cell("无", value))

    story.append(Paragraph(_text("四、报警明细"), heading))
    if report.alarms:
        rows = [header("设备", "报警类型", "类别", "位置", "首次报警", "状态", "次数")]
        rows += [
            [
                cell(a.device),
                cell(a.alarm_type),
                cell(a.category),
                cell(a.place),
                cell(local_time(a.first_ts)),
                cell(a.state),
                cell(str(a.occurrences)),
            ]
            for a in report.alarms
        ]
        story.append(_grid(rows, [20, 34, 10, 36, 22, 22, 10], font))
    else:
        story.append(cell("无", value))

    return build_a4(
        story,
        font=font,
        title=f"{report.title} {report.number}",
        footer_left=f"{report.title}  事件编号 {report.number}",
        page_label="第 {page} 页",
        margin=MARGIN,
    )


# --- XLSX -----------------------------------------------------------------------------------------

DATETIME_FORMAT = "yyyy-mm-dd hh:mm:ss"

TIMELINE_COLUMNS: tuple[tuple[str, float], ...] = (
    ("序号", 6),
    ("时间", 20),
    ("距首报", 14),
    ("距首报（秒）", 12),
    ("步骤", 18),
    ("操作人", 16),
    ("通知对象", 24),
    ("说明", 50),
)
ALARM_COLUMNS: tuple[tuple[str, float], ...] = (
    ("序号", 6),
    ("设备", 14),
    ("设备类型", 26),
    ("报警类型", 30),
    ("类别", 8),
    ("位置", 30),
    ("首次报警", 20),
    ("最后报警", 20),
    ("状态", 16),
    ("次数", 8),
)
DURATION_HEADERS = ("关键用时", "用时", "用时（秒）", "起算", "起算时间", "截止", "截止时间")


def _as_datetime(ts: float | None) -> datetime | None:
    # Naive local time: spreadsheet date cells have no time zone, and the PDF shows local time too.
    return None if ts is None else datetime.fromtimestamp(ts).replace(microsecond=0)


def _sheet(wb: Any, name: str, columns: Sequence[tuple[str, float]]) -> Any:
    return xlsx.sheet(wb, name, [width for _label, width in columns])


def _when(ws: Any, ts: float | None) -> Any:
    return xlsx.cell(ws, _as_datetime(ts), DATETIME_FORMAT)


def render_report_xlsx(report: IncidentReport) -> bytes:
    """The report as a workbook: 概要 (the header, the key durations, the footnote), 时间线 (one row a
    step) and 报警 (one row an alarm). Times are date cells, durations also in seconds."""
    wb = Workbook(write_only=True)

    ws = wb.create_sheet("概要")
    for letter, width in zip("ABCDEFG", (16, 40, 12, 12, 20, 12, 20), strict=True):
        ws.column_dimensions[letter].width = width
    ws.append(xlsx.header(ws, ["项目", "内容"]))
    for f in report.facts:
        shown = _when(ws, f.at) if f.at is not None else xlsx.cell(ws, f.text)
        ws.append([xlsx.cell(ws, f.label), shown])
    ws.append([])
    ws.append(xlsx.header(ws, DURATION_HEADERS))
    for d in report.durations:
        seconds = d.seconds
        ws.append(
            [
                xlsx.cell(ws, d.label),
                xlsx.cell(ws, d.text),
                xlsx.cell(ws, None if seconds is None else round(seconds)),
                xlsx.cell(ws, d.since_label),
                _when(ws, d.since),
                xlsx.cell(ws, d.until_label if d.until is not None else ""),
                _when(ws, d.until),
            ]
        )
    ws.append([])
    ws.append([xlsx.cell(ws, report.footnote)])

    ws = _sheet(wb, "时间线", TIMELINE_COLUMNS)
    ws.append(xlsx.header(ws, [label for label, _w in TIMELINE_COLUMNS]))
    for n, t in enumerate(report.timeline, start=1):
        ws.append(
            [
                xlsx.cell(ws, n),
                _when(ws, t.ts),
                xlsx.cell(ws, "+" + duration_zh(t.elapsed_s)),
                xlsx.cell(ws, round(t.elapsed_s)),
                xlsx.cell(ws, t.step),
                xlsx.cell(ws, t.actor),
                xlsx.cell(ws, t.targets),
                xlsx.cell(ws, t.note),
            ]
        )

    ws = _sheet(wb, "报警", ALARM_COLUMNS)
    ws.append(xlsx.header(ws, [label for label, _w in ALARM_COLUMNS]))
    for n, a in enumerate(report.alarms, start=1):
        ws.append(
            [
                xlsx.cell(ws, n),
                xlsx.cell(ws, a.device),
                xlsx.cell(ws, a.device_kind),
                xlsx.cell(ws, a.alarm_type),
                xlsx.cell(ws, a.category),
                xlsx.cell(ws, a.place),
                _when(ws, a.first_ts),
                _when(ws, a.last_ts),
                xlsx.cell(ws, a.state),
                xlsx.cell(ws, a.occurrences),
            ]
        )

    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
