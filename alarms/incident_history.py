"""The history search's result as a spreadsheet (事件历史查询): one row an incident, in Chinese, for
the safety office's records and its monthly count of false alarms by cause."""

from __future__ import annotations

import io
from collections.abc import Sequence

from openpyxl import Workbook

from alarms.incident_report import (
    DATETIME_FORMAT,
    Names,
    _as_datetime,
    _enum_zh,
    verdict_zh,
)
from alarms.labels import INCIDENT_KIND_ZH, INCIDENT_STATE_ZH
from core import xlsx_cells as xlsx
from core.domain import IncidentKind, IncidentState
from storage.models import IncidentRow

COLUMNS: tuple[tuple[str, float], ...] = (
    ("事件编号", 10),
    ("首报时间", 20),
    ("结束时间", 20),
    ("类型", 12),
    ("位置", 30),
    ("状态", 12),
    ("核实结果", 18),
    ("设备数", 8),
    ("报警数", 8),
    ("受理人", 14),
    ("受理时间", 20),
    ("备注", 40),
)


def render_history_xlsx(incidents: Sequence[IncidentRow], names: Names) -> bytes:
    wb = Workbook(write_only=True)
    ws = xlsx.sheet(wb, "事件历史查询", [w for _label, w in COLUMNS])
    ws.append(xlsx.header(ws, [label for label, _w in COLUMNS]))

    def when(ts: float | None) -> object:
        return xlsx.cell(ws, _as_datetime(ts), DATETIME_FORMAT)

    for inc in incidents:
        notes = "；".join(n for n in (inc.ack_note, inc.verdict_note, inc.call_119_note) if n)
        ws.append(
            [
                xlsx.cell(ws, inc.id),
                when(inc.first_ts),
                when(inc.ended_ts),
                xlsx.cell(ws, _enum_zh(INCIDENT_KIND_ZH, IncidentKind, inc.kind)),
                xlsx.cell(ws, names.place(inc.place)),
                xlsx.cell(ws, _enum_zh(INCIDENT_STATE_ZH, IncidentState, inc.state)),
                xlsx.cell(ws, verdict_zh(inc)),
                xlsx.cell(ws, inc.device_count),
                xlsx.cell(ws, inc.alarm_count),
                xlsx.cell(ws, names.person(inc.acked_by)),
                when(inc.acked_ts),
                xlsx.cell(ws, notes),
            ]
        )
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
