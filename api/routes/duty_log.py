"""The duty log (值班记录) of the fire control room: the people on duty write it, everyone signed in
reads and searches it (GB 25506-2010 asks for duty records). Entries are never edited or deleted."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response
from sqlalchemy import select

from accounts.model import Principal
from alarms import duty_log
from alarms.duty_log import DutyLogKind, LogFilter
from alarms.handover import DUTY_ROLES
from alarms.incident_report import Names
from alarms.shift_report import collect, render_shift_pdf
from api.auth import READING, roles
from api.deps import Ctx, DbSession, PageParams, page_of
from api.downloads import disposition
from api.duty_schemas import DutyLogIn, DutyLogOut
from api.problems import responses
from api.schemas import Page
from core.cjk_font import FontUnavailableError
from storage.db import IMMEDIATE
from storage.duty_models import HandoverRow

router = APIRouter(prefix="/duty-log", tags=["duty"])

DutyKeeper = Annotated[Principal, roles(*DUTY_ROLES)]
Time = Annotated[float | None, Query(ge=0, le=1e11)]
REPORT_SPAN_MAX_S = 31 * 86400.0  # a month of shifts at most in one report
PDF_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {"application/pdf": {}}, "description": "the shift report 值班记录"},
    503: {"description": "no CJK font to print the report with"},
}


@router.get("", operation_id="list_duty_log", dependencies=[READING], responses=responses(401, 403))
def list_duty_log(
    db: DbSession,
    page: PageParams,
    q: Annotated[str | None, Query(min_length=1, max_length=200, description="the text contains")] = None,
    since: Annotated[Time, Query(description="written at or after (epoch s)")] = None,
    until: Annotated[Time, Query(description="written before (epoch s)")] = None,
    author: Annotated[str | None, Query(min_length=1, max_length=100, description="user name")] = None,
    kind: DutyLogKind | None = None,
) -> Page[DutyLogOut]:
    """The duty log, newest first, searched by text, time window, author and kind."""
    search = duty_log.search(LogFilter(text=q, since=since, until=until, author=author, kind=kind))
    return page_of(db, search, page, DutyLogOut)


@router.post("", operation_id="write_duty_log", status_code=201, responses=responses(401, 403, 422))
async def write_duty_log(body: DutyLogIn, who: DutyKeeper, ctx: Ctx) -> DutyLogOut:
    """Write an entry: its time is the service's clock now, its author the caller (their display
    name as the signature)."""

    def work() -> DutyLogOut:
        with ctx.sessions.begin() as s:
            s.connection(execution_options=IMMEDIATE)
            row = duty_log.write(
                s,
                kind=DutyLogKind(body.kind),
                text=body.text,
                author=who.name,
                author_name=who.signature,
                now=ctx.clock(),
            )
            return DutyLogOut.model_validate(row)

    return await asyncio.to_thread(work)


@router.get(
    "/report.pdf",
    operation_id="duty_log_report_pdf",
    response_class=Response,
    dependencies=[READING],
    responses={**PDF_RESPONSES, **responses(401, 403, 422)},
)
def duty_log_report_pdf(
    db: DbSession,
    ctx: Ctx,
    start: Annotated[float, Query(ge=0, le=1e11, description="the window's start (epoch s)")],
    end: Annotated[float, Query(ge=0, le=1e11, description="its end, excluded (epoch s)")],
) -> Response:
    """The shift report of a time window, in Chinese: the handovers started in it with both
    signatures and what each found open, the incidents and alarms of the window, the duty log's
    entries and the handover notes. 422 unless start is before end, at most 31 days apart."""
    if start >= end:
        raise HTTPException(422, f"start ({start:g}) must be before end ({end:g})")
    if end - start > REPORT_SPAN_MAX_S:
        raise HTTPException(422, "a report covers at most 31 days: ask for a shorter window")
    handovers = db.scalars(
        select(HandoverRow)
        .where(HandoverRow.started_ts >= start, HandoverRow.started_ts < end)
        .order_by(HandoverRow.started_ts, HandoverRow.id)
    ).all()
    report = collect(db, Names.of(ctx.alarms.index), start, end, handovers, "消防控制室值班记录")
    try:
        body = render_shift_pdf(report, font_path=ctx.export_font)
    except FontUnavailableError as exc:
        raise HTTPException(503, str(exc)) from exc
    name = disposition("inline", "值班记录.pdf", fallback="duty-log.pdf")
    return Response(body, media_type="application/pdf", headers={"Content-Disposition": name})
