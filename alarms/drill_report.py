"""The drill report (演练报告): how fast each of a drill's incidents was handled, step by step, and
the devices' own test-button events in its places during its window (docs/drills.md).

GB 25506-2010 §4.2.2 asks a control room to confirm an alarm at once, call 119 for a real fire and
report to the person in charge; a drill measures those steps. Per incident: its first alarm, then
when it was acknowledged (受理), someone went to verify (核实), the verdict (结论), 119, and reset
(复位), each with who did it (display names) and its time from the first alarm.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from reportlab.platypus import Paragraph, Spacer

from alarms.incident_report import BODY_W, _grid, _text, duration_zh, local_time, verdict_zh
from alarms.incident_service import SYSTEM_ACTOR
from core.cjk_font import embedded_font
from core.pdf_pages import build_a4, report_styles
from storage.drill_models import DrillRow
from storage.models import IncidentRow

SYSTEM_ZH = "系统"


class DrillStep(StrEnum):
    ACKNOWLEDGED = "acknowledged"  # 受理
    VERIFYING = "verifying"  # 核实
    VERDICT = "verdict"  # 结论
    CALLED_119 = "called_119"  # 119
    RESET = "reset"  # 复位


STEP_ZH: dict[DrillStep, str] = {
    DrillStep.ACKNOWLEDGED: "受理",
    DrillStep.VERIFYING: "前往核实",
    DrillStep.VERDICT: "核实结论",
    DrillStep.CALLED_119: "拨打119",
    DrillStep.RESET: "复位",
}


@dataclass(frozen=True)
class StepTime:
    step: DrillStep
    ts: float | None
    by: str  # a display name where the account has one
    seconds: float | None  # from the incident's first alarm


@dataclass(frozen=True)
class DrillIncident:
    incident_id: int
    place_name: str
    first_ts: float
    verdict: str  # in Chinese
    steps: tuple[StepTime, ...]


@dataclass(frozen=True)
class StepSummary:
    step: DrillStep
    count: int
    median_s: float | None
    max_s: float | None


@dataclass(frozen=True)
class TestEvent:
    device_id: str
    place_name: str
    ts: float


@dataclass(frozen=True)
class DrillReport:
    drill: DrillRow
    organizer: str  # who declared it, by display name
    ended_by: str  # who ended it early, by display name ("" if nobody did)
    place_names: tuple[str, ...]
    window_end: float
    incidents: tuple[DrillIncident, ...]
    summary: tuple[StepSummary, ...]
    actors: tuple[str, ...]  # everyone who acted, display names
    test_events: tuple[TestEvent, ...]


def _who(name: str | None, display: Mapping[str, str]) -> str:
    if not name:
        return ""
    if name == SYSTEM_ACTOR:
        return SYSTEM_ZH
    return display.get(name) or name


def _steps(inc: IncidentRow, display: Mapping[str, str]) -> tuple[StepTime, ...]:
    raw = (
        (DrillStep.ACKNOWLEDGED, inc.acked_ts, inc.acked_by),
        (DrillStep.VERIFYING, inc.verifying_ts, inc.verifier),
        (DrillStep.VERDICT, inc.verdict_ts, inc.verdict_by),
        (DrillStep.CALLED_119, inc.call_119_ts, inc.call_119_by),
        (DrillStep.RESET, inc.reset_ts, inc.reset_by),
    )
    return tuple(
        StepTime(
            step, ts, _who(by, display) if ts is not None else "", None if ts is None else ts - inc.first_ts
        )
        for step, ts, by in raw
    )


def build_drill_report(
    drill: DrillRow,
    window_end: float,
    incidents: Sequence[IncidentRow],
    display: Mapping[str, str],
    place_label: Any,
    test_events: Sequence[tuple[str, str, float]],
) -> DrillReport:
    """`display`: user name -> display name; `place_label`: a place path in words; `test_events`:
    (device id, its place path, time) of the devices' own test events in the drill's window."""
    rows = tuple(
        DrillIncident(inc.id, place_label(inc.place), inc.first_ts, verdict_zh(inc), _steps(inc, display))
        for inc in sorted(incidents, key=lambda i: (i.first_ts, i.id))
    )
    summary = []
    for n, step in enumerate(DrillStep):
        seconds = [s for r in rows if (s := r.steps[n].seconds) is not None]
        summary.append(
            StepSummary(
                step,
                len(seconds),
                statistics.median(seconds) if seconds else None,
                max(seconds) if seconds else None,
            )
        )
    actors = tuple(dict.fromkeys(s.by for r in rows for s in r.steps if s.by and s.by != SYSTEM_ZH))
    return DrillReport(
        drill,
        _who(drill.created_by, display),
        _who(drill.ended_by, display),
        tuple(place_label(p) for p in drill.places),
        window_end,
        rows,
        tuple(summary),
        actors,
        tuple(TestEvent(d, place_label(p), ts) for d, p, ts in test_events),
    )


def render_drill_pdf(report: DrillReport, font_path: Path | None = None) -> bytes:
    """The drill report in Chinese on A4. Raises core.cjk_font.FontUnavailableError without a font."""
    font = embedded_font(font_path)
    styles = report_styles(font)
    value, small, title, heading = styles.value, styles.small, styles.title, styles.heading

    def cell(text: str) -> Paragraph:
        return Paragraph(_text(text), small)

    d = report.drill
    story: list[Any] = [Paragraph(_text(f"消防演练报告：{d.name}"), title), Spacer(BODY_W, 4)]
    header = [
        ["演练编号", str(d.id)],
        ["演练范围", "、".join(report.place_names)],
        ["演练时间", f"{local_time(d.start_ts)} 至 {local_time(report.window_end)}"],
        ["组织人", report.organizer],
        ["参与处置人员", "、".join(report.actors) or "无"],
        ["演练事件", f"{len(report.incidents)} 起"],
    ]
    if d.ended_ts is not None:
        header.append(["提前结束", f"{local_time(d.ended_ts)}（{report.ended_by}）"])
    story.append(_grid([[cell(a), cell(b)] for a, b in header], (1, 4), font, header=False))

    story.append(Paragraph("响应时间汇总（自首次报警起）", heading))
    rows = [[cell(x) for x in ("环节", "完成数", "中位数", "最长")]]
    for s in report.summary:
        rows.append(
            [
                cell(STEP_ZH[s.step]),
                cell(str(s.count)),
                cell(duration_zh(s.median_s) if s.median_s is not None else "—"),
                cell(duration_zh(s.max_s) if s.max_s is not None else "—"),
            ]
        )
    story.append(_grid(rows, (2, 1, 1.5, 1.5), font))

    story.append(Paragraph("各事件处置过程", heading))
    for inc in report.incidents:
        story.append(
            Paragraph(
                _text(
                    f"事件 #{inc.incident_id} {inc.place_name}，"
                    f"首次报警 {local_time(inc.first_ts)}，结论：{inc.verdict}"
                ),
                value,
            )
        )
        rows = [[cell(x) for x in ("环节", "时间", "用时", "处置人")]]
        for st in inc.steps:
            rows.append(
                [
                    cell(STEP_ZH[st.step]),
                    cell(local_time(st.ts) or "未完成"),
                    cell(duration_zh(st.seconds) if st.seconds is not None else "—"),
                    cell(st.by),
                ]
            )
        story.append(_grid(rows, (1.5, 2.2, 1.3, 2), font))
        story.append(Spacer(BODY_W, 4))
    if not report.incidents:
        story.append(Paragraph("本次演练无报警事件。", value))

    story.append(Paragraph("设备自检（测试按钮）记录", heading))
    if report.test_events:
        rows = [[cell(x) for x in ("时间", "设备", "位置")]]
        rows += [[cell(local_time(e.ts)), cell(e.device_id), cell(e.place_name)] for e in report.test_events]
        story.append(_grid(rows, (2, 2, 3), font))
    else:
        story.append(Paragraph("演练期间无设备自检记录。", value))
    return build_a4(
        story,
        font=font,
        title=f"消防演练报告 {d.name}",
        footer_left=f"firewatch 消防演练报告 #{d.id}",
        page_label="第 {page} 页",
    )
