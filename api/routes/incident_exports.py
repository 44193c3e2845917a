"""The incident report (事件报告 / 火警处置记录): one incident's header, key durations, timeline and
alarms, as a printable PDF or a spreadsheet (alarms/incident_report.py renders both).

Mounted before api/routes/incidents.py, as the ticket exports are before the tickets."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response
from sqlalchemy import func, select

from accounts.display_names import read_display_names
from alarms.incident_history import render_history_xlsx
from alarms.incident_report import (
    IncidentReport,
    Names,
    build_report,
    people_of,
    render_report_pdf,
    render_report_xlsx,
)
from api.auth import READING
from api.deps import Ctx, DbSession, RowId
from api.downloads import XLSX, disposition
from api.incident_filters import Search
from api.problems import responses
from core.cjk_font import FontUnavailableError
from storage.models import AlarmRow, IncidentEventRow, IncidentRow

router = APIRouter(
    prefix="/incidents", tags=["incidents"], dependencies=[READING], responses=responses(401, 403)
)


def _report(db: DbSession, ctx: Ctx, incident_id: int) -> IncidentReport:
    inc = db.get(IncidentRow, incident_id)
    if inc is None:
        raise HTTPException(404, f"incident {incident_id} does not exist")
    events = db.scalars(
        select(IncidentEventRow)
        .where(IncidentEventRow.incident_id == incident_id)
        .order_by(IncidentEventRow.id)
    ).all()
    members = select(AlarmRow).where(AlarmRow.incident_id == incident_id).order_by(AlarmRow.id)
    alarms = db.scalars(members).all()
    people = read_display_names(db, people_of(inc, events))
    return build_report(inc, events, alarms, Names.of(ctx.alarms.index, people))


@router.get(
    "/{incident_id:int}/report.pdf",
    operation_id="incident_report_pdf",
    response_class=Response,
    responses={
        200: {"content": {"application/pdf": {}}, "description": "the incident report 事件报告"},
        **responses(404),
        503: {"description": "no CJK font to print the report with"},
    },
)
def incident_report_pdf(incident_id: RowId, db: DbSession, ctx: Ctx) -> Response:
    """The incident report to print and file: its header (kind, place, verdict, who acknowledged,
    verified, called 119 and reset), the key durations, its timeline and its alarms, in Chinese."""
    report = _report(db, ctx, incident_id)
    try:
        body = render_report_pdf(report, font_path=ctx.export_font)
    except FontUnavailableError as exc:
        raise HTTPException(503, str(exc)) from exc
    name = disposition("inline", f"事件报告-{incident_id}.pdf", fallback=f"incident-report-{incident_id}.pdf")
    return Response(body, media_type="application/pdf", headers={"Content-Disposition": name})


@router.get(
    "/{incident_id:int}/report.xlsx",
    operation_id="incident_report_xlsx",
    response_class=Response,
    responses={
        200: {"content": {XLSX: {}}, "description": "the incident report as a spreadsheet"},
        **responses(404),
    },
)
def incident_report_xlsx(incident_id: RowId, db: DbSession, ctx: Ctx) -> Response:
    """The incident report as a spreadsheet: sheets 概要 (header and key durations), 时间线 (one row
    a step) and 报警 (one row an alarm)."""
    body = render_report_xlsx(_report(db, ctx, incident_id))
    name = disposition(
        "attachment", f"事件报告-{incident_id}.xlsx", fallback=f"incident-report-{incident_id}.xlsx"
    )
    return Response(body, media_type=XLSX, headers={"Content-Disposition": name})


# One spreadsheet holds this many incidents at most; a wider search is refused with how to narrow it
# rather than cut short without anyone noticing missing rows.
HISTORY_MAX_ROWS = 50_000


@router.get(
    "/history.xlsx",
    operation_id="incident_history_xlsx",
    response_class=Response,
    responses={
        200: {"content": {XLSX: {}}, "description": "the incidents the search found, as a spreadsheet"},
        **responses(422),
    },
)
def incident_history_xlsx(db: DbSession, ctx: Ctx, search: Search) -> Response:
    """The history search's result (the filters of `list_incidents`), one row an incident, in
    Chinese: 首报时间, 结束时间, 类型, 位置, 状态, 核实结果, 设备数, 报警数, 受理, 核实结果备注."""
    rows = search.query()
    total = db.scalar(select(func.count()).select_from(rows.order_by(None).subquery())) or 0
    if total > HISTORY_MAX_ROWS:
        raise HTTPException(
            422, f"{total} incidents match: more than {HISTORY_MAX_ROWS}; narrow the time window"
        )
    incidents = db.scalars(rows).all()
    people = read_display_names(db, {inc.acked_by for inc in incidents})
    body = render_history_xlsx(incidents, Names.of(ctx.alarms.index, people))
    name = disposition("attachment", "事件历史查询.xlsx", fallback="incident-history.xlsx")
    return Response(body, media_type=XLSX, headers={"Content-Disposition": name})
