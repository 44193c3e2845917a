"""Handovers (交接班) of the fire control room's duty: the outgoing person starts one (the service
takes a snapshot of what is open), the incoming person countersigns it with their own credentials.
A countersigned handover never changes (alarms/handover.py)."""

from __future__ import annotations

import asyncio
import math
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from sqlalchemy import func, select

from accounts.model import AuthError, DemoAccountRefusedError, Principal, TooManyAttemptsError
from alarms import handover
from alarms.handover import (
    DUTY_ROLES,
    HandoverConflictError,
    HandoverInputError,
    HandoverNotFoundError,
    NotOnDutyError,
)
from alarms.incident_report import Names
from alarms.shift_report import collect, render_shift_pdf
from api.auth import READING, accounts_of, roles
from api.deps import Ctx, DbSession, PageParams, RowId
from api.downloads import disposition
from api.duty_schemas import CountersignIn, HandoverOut, HandoverStartIn, HandoverSummaryOut, SnapshotOut
from api.problems import responses
from api.routes.duty_log import PDF_RESPONSES
from api.schemas import Page
from core.cjk_font import FontUnavailableError
from storage.duty_models import HandoverRow

router = APIRouter(prefix="/handovers", tags=["duty"])

DutyKeeper = Annotated[Principal, roles(*DUTY_ROLES)]


def handover_out(row: HandoverRow) -> HandoverOut:
    return HandoverOut.model_validate(
        {**_fields(row), "snapshot": row.snapshot, "counts": row.snapshot["counts"]}
    )


def summary_out(row: HandoverRow) -> HandoverSummaryOut:
    return HandoverSummaryOut.model_validate({**_fields(row), "counts": row.snapshot["counts"]})


def _fields(row: HandoverRow) -> dict[str, Any]:
    names = HandoverSummaryOut.model_fields.keys() - {"counts"}
    return {name: getattr(row, name) for name in names}


@router.get(
    "/snapshot", operation_id="handover_snapshot", dependencies=[READING], responses=responses(401, 403)
)
def handover_snapshot(db: DbSession, ctx: Ctx) -> SnapshotOut:
    """What a handover started now would record as open (shown before the outgoing person signs;
    nothing is stored)."""
    return SnapshotOut.model_validate(handover.take_snapshot(db, Names.of(ctx.alarms.index), ctx.clock()))


@router.get("", operation_id="list_handovers", dependencies=[READING], responses=responses(401, 403))
def list_handovers(
    db: DbSession,
    page: PageParams,
    signed: Annotated[bool | None, Query(description="true: countersigned; false: waiting for it")] = None,
) -> Page[HandoverSummaryOut]:
    """Handovers, newest first, with the counts of what each found open (`signed=false`: those
    still waiting for the incoming person's countersignature)."""
    q = select(HandoverRow)
    if signed is not None:
        column = HandoverRow.countersigned_ts
        q = q.where(column.is_not(None) if signed else column.is_(None))
    total = db.scalar(select(func.count()).select_from(q.subquery())) or 0
    rows = db.scalars(q.order_by(HandoverRow.id.desc()).limit(page.limit).offset(page.offset)).all()
    return Page(items=[summary_out(r) for r in rows], total=total, limit=page.limit, offset=page.offset)


@router.post("", operation_id="start_handover", status_code=201, responses=responses(401, 403, 422))
async def start_handover(body: HandoverStartIn, who: DutyKeeper, ctx: Ctx) -> HandoverOut:
    """The outgoing person (the caller) starts a handover: the snapshot of what is open now is
    stored with their notes, and the duty log records it. 422 when the shift's start is not before
    now, or the incoming person named is the caller."""
    try:
        row = await asyncio.to_thread(
            handover.start,
            ctx.sessions,
            who,
            notes=body.notes,
            incoming=body.incoming,
            shift_start=body.shift_start,
            names=Names.of(ctx.alarms.index),
            now=ctx.clock(),
        )
    except NotOnDutyError as exc:
        raise HTTPException(403, str(exc)) from None
    except HandoverInputError as exc:
        raise HTTPException(422, str(exc)) from None
    return handover_out(row)


@router.get(
    "/{handover_id:int}",
    operation_id="get_handover",
    dependencies=[READING],
    responses=responses(401, 403, 404),
)
def get_handover(handover_id: RowId, db: DbSession) -> HandoverOut:
    """One handover with its snapshot as it was taken."""
    row = db.get(HandoverRow, handover_id)
    if row is None:
        raise HTTPException(404, f"handover {handover_id} does not exist")
    return handover_out(row)


@router.post(
    "/{handover_id:int}/countersign",
    operation_id="countersign_handover",
    responses=responses(401, 403, 404, 409, 422, 429),
)
async def countersign_handover(
    handover_id: RowId, body: CountersignIn, who: DutyKeeper, request: Request, ctx: Ctx
) -> HandoverOut:
    """The incoming person countersigns (接班签字). At the shared control-room screen they type their
    own user name and password (checked as a sign-in is, throttled alike; a wrong one is 403, so
    the screen's own session stays signed in); from their own session they send neither. 409 when
    it is already countersigned, when the signer started it, or when it is to someone else; 403
    when the signer holds no duty role."""
    signer: Principal = who
    via = "session"
    if body.username is not None and body.password is not None:
        address = request.client.host if request.client else ""
        try:
            signer = await asyncio.to_thread(
                accounts_of(ctx).check_credentials,
                body.username,
                body.password.get_secret_value(),
                address,
            )
        except TooManyAttemptsError as exc:
            wait = max(1, math.ceil(exc.retry_after_s))
            raise HTTPException(429, str(exc), headers={"Retry-After": str(wait)}) from None
        except DemoAccountRefusedError as exc:
            raise HTTPException(403, str(exc)) from None
        except AuthError as exc:
            raise HTTPException(403, f"the incoming person's signature is refused: {exc}") from None
        via = "password"
    try:
        row = await asyncio.to_thread(
            handover.countersign, ctx.sessions, handover_id, signer, via=via, note=body.note, now=ctx.clock()
        )
    except HandoverNotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
    except HandoverConflictError as exc:
        raise HTTPException(409, str(exc)) from None
    except NotOnDutyError as exc:
        raise HTTPException(403, str(exc)) from None
    return handover_out(row)


@router.get(
    "/{handover_id:int}/report.pdf",
    operation_id="handover_report_pdf",
    response_class=Response,
    dependencies=[READING],
    responses={**PDF_RESPONSES, **responses(401, 403, 404)},
)
def handover_report_pdf(handover_id: RowId, db: DbSession, ctx: Ctx) -> Response:
    """The report of the shift this handover ends (from its `shift_start` to the countersignature,
    or to its start while not countersigned), in Chinese, to print and file: both signatures and
    their times, the snapshot as taken, the shift's incidents, alarms and duty log, the notes."""
    row = db.get(HandoverRow, handover_id)
    if row is None:
        raise HTTPException(404, f"handover {handover_id} does not exist")
    end = row.countersigned_ts if row.countersigned_ts is not None else row.started_ts
    # The window includes its end here: the handover's own log entries are written at it.
    report = collect(
        db, Names.of(ctx.alarms.index), row.shift_start, end + 1e-3, [row], "消防控制室交接班记录"
    )
    try:
        body = render_shift_pdf(report, font_path=ctx.export_font)
    except FontUnavailableError as exc:
        raise HTTPException(503, str(exc)) from exc
    name = disposition("inline", f"交接班记录-{handover_id}.pdf", fallback=f"handover-{handover_id}.pdf")
    return Response(body, media_type="application/pdf", headers={"Content-Disposition": name})
