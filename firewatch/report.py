"""`firewatch report`'s output: the KPI report as rich tables or CSV, in Chinese or English."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:  # only for the types: `firewatch --help` need not load the ticket store
    from tickets.kpi import KpiReport, TicketKpis


class ReportFormat(StrEnum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"


class ReportLang(StrEnum):
    ZH = "zh"
    EN = "en"


# The report's words, per language: headers of the department table and CSV, and the summary lines.
_REPORT_WORDS: dict[ReportLang, dict[str, str]] = {
    ReportLang.ZH: {
        "title": "隐患整改 KPI",
        "as_of": "截至",
        "department": "科室",
        "found": "发现隐患",
        "rectified": "已整改",
        "rectification_rate": "整改率",
        "on_time_rate": "按时整改率",
        "overdue": "逾期",
        "mttr": "平均整改时长",
        "total": "合计",
        "no_department": "（未指定）",
        "hours": "小时",
        "minutes": "分钟",
        "tickets_line": (
            "已关闭 {closed}，未整改 {outstanding}（其中逾期 {overdue}），超时整改 {rectified_late}；"
            "平均派单时长 {mtt_assign}"
        ),
        "alarms_line": (
            "报警 {alarms} 条，已确认 {acknowledged} 条，平均确认时长 {mtta}；误报 {false_alarms} 次"
        ),
        "false_alarms_title": "误报（按设备）",
        "device": "设备",
        "alarms": "报警次数",
        "false_alarms": "误报次数",
        "false_alarm_rate": "误报率",
    },
    ReportLang.EN: {
        "title": "Hazard rectification KPIs",
        "as_of": "as of",
        "department": "department",
        "found": "found",
        "rectified": "rectified",
        "rectification_rate": "rectification rate",
        "on_time_rate": "on-time rate",
        "overdue": "overdue",
        "mttr": "mean time to rectify",
        "total": "total",
        "no_department": "(none)",
        "hours": "h",
        "minutes": "min",
        "tickets_line": (
            "closed {closed}, outstanding {outstanding} (overdue {overdue}), rectified late "
            "{rectified_late}; mean time to assign {mtt_assign}"
        ),
        "alarms_line": (
            "alarms {alarms}, acknowledged {acknowledged}, mean time to acknowledge {mtta}; "
            "false alarms {false_alarms}"
        ),
        "false_alarms_title": "False alarms per device",
        "device": "device",
        "alarms": "alarms",
        "false_alarms": "false alarms",
        "false_alarm_rate": "false-alarm rate",
    },
}


def percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f}%"


def span(seconds: float | None, unit_s: float, unit: str) -> str:
    return "—" if seconds is None else f"{seconds / unit_s:.1f} {unit}"


def when(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def print_kpi_tables(out: Console, report: KpiReport, lang: ReportLang) -> None:
    w = _REPORT_WORDS[lang]
    period = f"{when(report.since) if report.since is not None else '…'} — "
    period += when(report.until) if report.until is not None else f"{w['as_of']} {when(report.as_of)}"
    scope = " ".join(x for x in (report.site, report.department) if x)
    table = Table(title=f"{w['title']} {scope} {period}".replace("  ", " "))
    table.add_column(w["department"], no_wrap=True)
    for key in ("found", "rectified", "rectification_rate", "on_time_rate", "overdue", "mttr"):
        table.add_column(w[key], justify="right", no_wrap=True)

    def cells(k: TicketKpis) -> list[str]:
        return [
            str(k.found),
            str(k.rectified),
            percent(k.rectification_rate),
            percent(k.on_time_rate),
            str(k.overdue),
            span(k.mean_time_to_rectify_s, 3600.0, w["hours"]),
        ]

    for d in report.by_department:
        table.add_row(escape(d.department or w["no_department"]), *cells(d))
    table.add_section()
    table.add_row(w["total"], *cells(report.tickets), style="bold")
    out.print(table)
    t, a = report.tickets, report.alarms
    out.print(
        w["tickets_line"].format(
            closed=t.closed,
            outstanding=t.outstanding,
            overdue=t.overdue,
            rectified_late=t.rectified_late,
            mtt_assign=span(t.mean_time_to_assign_s, 3600.0, w["hours"]),
        )
    )
    out.print(
        w["alarms_line"].format(
            alarms=a.alarms,
            acknowledged=a.alarms_acknowledged,
            mtta=span(a.mean_time_to_acknowledge_s, 60.0, w["minutes"]),
            false_alarms=a.false_alarms,
        )
    )
    if report.false_alarms_by_device:
        devices = Table(title=w["false_alarms_title"])
        devices.add_column(w["device"], no_wrap=True)
        for key in ("alarms", "false_alarms", "false_alarm_rate"):
            devices.add_column(w[key], justify="right", no_wrap=True)
        for dev in report.false_alarms_by_device:
            devices.add_row(
                escape(dev.device_id), str(dev.alarms), str(dev.false_alarms), percent(dev.false_alarm_rate)
            )
        out.print(devices)


def kpi_csv(report: KpiReport, lang: ReportLang) -> str:
    """One row per department and a total row; plain numbers (rates in %, times in hours) so a
    spreadsheet can compute with them."""
    w = _REPORT_WORDS[lang]
    header = [
        w["department"],
        w["found"],
        w["rectified"],
        f"{w['rectification_rate']}(%)",
        f"{w['on_time_rate']}(%)",
        w["overdue"],
        f"{w['mttr']}({w['hours']})",
    ]

    def row(name: str, k: TicketKpis) -> list[str]:
        def pct(r: float | None) -> str:
            return "" if r is None else f"{r * 100:.1f}"

        hours = "" if k.mean_time_to_rectify_s is None else f"{k.mean_time_to_rectify_s / 3600:.2f}"
        return [
            name,
            str(k.found),
            str(k.rectified),
            pct(k.rectification_rate),
            pct(k.on_time_rate),
            str(k.overdue),
            hours,
        ]

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")  # RFC 4180 line ends, what Excel writes
    writer.writerow(header)
    for d in report.by_department:
        writer.writerow(row(d.department or w["no_department"], d))
    writer.writerow(row(w["total"], report.tickets))
    return buffer.getvalue()
