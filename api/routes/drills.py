"""Drills (演练): declared for places and a window; their fire-side alarms are tagged, shown on the
board at once, told to the drill's recipients only and left out of false-alarm figures
(docs/drills.md)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, HTTPException, Response
from sqlalchemy import func, select

from accounts.model import Principal
from alarms.drill_report import DrillReport, build_drill_report, render_drill_pdf
from alarms.drill_service import DrillError, DrillNotFoundError, DrillService, effective_end
from api.auth import READING, roles
from api.context import AppContext
from api.deps import Ctx, DbSession, PageParams, RowId
from api.downloads import disposition
from api.drill_schemas import (
    DrillEndIn,
    DrillIn,
    DrillIncidentOut,
    DrillOut,
    DrillReportOut,
    DrillStatus,
    DrillStepOut,
    DrillStepSummaryOut,
    DrillTestEventOut,
)
from api.problems import responses
from api.schemas import Page
from core.cjk_font import FontUnavailableError
from core.domain import DeviceEventKind, Role
from storage.drill_models import DrillRow
from storage.models import IncidentRow, UserRow

router = APIRouter(prefix="/drills", tags=["drills"])

# GB 25506-2010 §4.2: the fire safety manager organises drills; the leader and admin may too.
DrillDeclarer = Annotated[Principal, roles(Role.SAFETY, Role.LEADER, Role.ADMIN)]


def _service(ctx: AppContext) -> DrillService:
    if ctx.drills is None:
        raise HTTPException(503, "drills are not available in this service")
    return ctx.drills


def status_of(row: DrillRow, now: float) -> DrillStatus:
    if row.ended_ts is not None and row.ended_ts <= row.start_ts:
        return DrillStatus.CANCELLED
    if effective_end(row) <= now:
        return DrillStatus.ENDED
    return DrillStatus.ACTIVE if row.start_ts <= now else DrillStatus.PLANNED


def drill_out(ctx: AppContext, row: DrillRow) -> DrillOut:
    return DrillOut(
        id=row.id,
        name=row.name,
        site=row.site,
        places=list(row.places),
        place_names=[ctx.alarms.index.place_label(p) for p in row.places],
        start_ts=row.start_ts,
        end_ts=row.end_ts,
        ended_ts=row.ended_ts,
        ended_by=row.ended_by,
        end_note=row.end_note,
        status=status_of(row, ctx.alarms.clock()),
        routes=list(row.routes),
        url_count=len(row.urls),
        note=row.note,
        created_by=row.created_by,
        created_ts=row.created_ts,
    )


@router.post("", operation_id="declare_drill", status_code=201, responses=responses(401, 403, 422))
async def declare(body: DrillIn, who: DrillDeclarer, ctx: Ctx) -> DrillOut:
    """Declare a drill: from `start` (default now) to `end` (at most 24 h later), fire and
    pre-alarms raised in its places are drill alarms, told to its `routes` and `urls` instead of the
    people on duty. Unknown places or routes, a window that is over or too long: 422."""
    service = _service(ctx)
    try:
        row = await asyncio.to_thread(
            lambda: service.declare(
                name=body.name,
                places=body.places,
                start=body.start,
                end=body.end,
                routes=body.routes,
                urls=body.urls,
                note=body.note,
                actor=who.name,
            )
        )
    except DrillError as exc:
        raise HTTPException(422, str(exc)) from None
    return drill_out(ctx, row)


@router.get("", operation_id="list_drills", dependencies=[READING], responses=responses(401, 403))
def list_drills(db: DbSession, ctx: Ctx, page: PageParams) -> Page[DrillOut]:
    """Drills, newest first."""
    total = db.scalar(select(func.count()).select_from(DrillRow)) or 0
    rows = db.scalars(
        select(DrillRow)
        .order_by(DrillRow.start_ts.desc(), DrillRow.id.desc())
        .limit(page.limit)
        .offset(page.offset)
    ).all()
    return Page(items=[drill_out(ctx, r) for r in rows], total=total, limit=page.limit, offset=page.offset)


@router.get(
    "/{drill_id}", operation_id="get_drill", dependencies=[READING], responses=responses(401, 403, 404)
)
def get_drill(drill_id: RowId, db: DbSession, ctx: Ctx) -> DrillOut:
    row = db.get(DrillRow, drill_id)
    if row is None:
        raise HTTPException(404, f"drill {drill_id} does not exist")
    return drill_out(ctx, row)


@router.post("/{drill_id}/end", operation_id="end_drill", responses=responses(401, 403, 404, 409))
async def end(drill_id: RowId, body: DrillEndIn, who: DrillDeclarer, ctx: Ctx) -> DrillOut:
    """End a drill now (before its start: cancel it). Alarms raised from now on are real; its
    incidents still open stay drill incidents, on the board until reset. Already over: 409."""
    service = _service(ctx)
    try:
        row = await asyncio.to_thread(lambda: service.end(drill_id, actor=who.name, note=body.note))
    except DrillNotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
    except DrillError as exc:
        raise HTTPException(409, str(exc)) from None
    return drill_out(ctx, row)


TEST_EVENTS_MAX = 1000  # a report lists at most this many test-button events


def _report(db: DbSession, ctx: AppContext, drill_id: int) -> DrillReport:
    drill = db.get(DrillRow, drill_id)
    if drill is None:
        raise HTTPException(404, f"drill {drill_id} does not exist")
    incidents = db.scalars(select(IncidentRow).where(IncidentRow.drill_id == drill_id)).all()
    display = {n: d for n, d in db.execute(select(UserRow.name, UserRow.display_name)) if d}
    index = ctx.alarms.index
    end = min(effective_end(drill), ctx.alarms.clock())
    under = [
        (d, p)
        for d, p in zip(index.device_ids, index.places, strict=True)
        if any(p == q or p.startswith(q + "/") for q in drill.places)
    ]
    place_of = dict(under)
    events = ctx.telemetry.events_of(
        [d for d, _ in under], drill.start_ts, end, [DeviceEventKind.TEST.value], TEST_EVENTS_MAX
    )
    tests = [(d, place_of[d], ts) for d, ts, *_ in events]
    return build_drill_report(drill, effective_end(drill), incidents, display, index.place_label, tests)


@router.get(
    "/{drill_id}/report",
    operation_id="drill_report",
    dependencies=[READING],
    responses=responses(401, 403, 404),
)
def drill_report(drill_id: RowId, db: DbSession, ctx: Ctx) -> DrillReportOut:
    """The drill's response times: per incident its first alarm, 受理, 核实, the verdict, 119 and 复位,
    each with who and its time from the first alarm; per step the count, median and longest; who
    acted (display names); and the devices' own test-button events in its places and window."""
    r = _report(db, ctx, drill_id)
    return DrillReportOut(
        drill=drill_out(ctx, r.drill),
        incidents=[
            DrillIncidentOut(
                incident_id=i.incident_id,
                place_name=i.place_name,
                first_ts=i.first_ts,
                verdict=i.verdict,
                steps=[DrillStepOut(step=s.step, ts=s.ts, by=s.by, seconds=s.seconds) for s in i.steps],
            )
            for i in r.incidents
        ],
        summary=[
            DrillStepSummaryOut(step=s.step, count=s.count, median_s=s.median_s, max_s=s.max_s)
            for s in r.summary
        ],
        actors=list(r.actors),
        test_events=[
            DrillTestEventOut(device_id=e.device_id, place_name=e.place_name, ts=e.ts) for e in r.test_events
        ],
    )


@router.get(
    "/{drill_id}/report.pdf",
    operation_id="drill_report_pdf",
    dependencies=[READING],
    response_class=Response,
    responses={
        200: {"content": {"application/pdf": {}}, "description": "the drill report 演练报告"},
        **responses(401, 403, 404),
        503: {"description": "no CJK font to print the report with"},
    },
)
def drill_report_pdf(drill_id: RowId, db: DbSession, ctx: Ctx) -> Response:
    """The drill report to print and file, in Chinese: the drill, the response times per step and
    per incident, who acted, and the devices' test-button events."""
    report = _report(db, ctx, drill_id)
    try:
        body = render_drill_pdf(report, font_path=ctx.export_font)
    except FontUnavailableError as exc:
        raise HTTPException(503, str(exc)) from exc
    name = disposition("inline", f"演练报告-{drill_id}.pdf", fallback=f"drill-report-{drill_id}.pdf")
    return Response(body, media_type="application/pdf", headers={"Content-Disposition": name})
