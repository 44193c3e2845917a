"""Hazard-rectification tickets: the ledger, the loop's transitions, comments and evidence."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, TypeVar
from urllib.parse import quote

from fastapi import APIRouter, File, Form, HTTPException, Query, UploadFile
from fastapi.responses import Response
from sqlalchemy import select

from accounts.model import Principal
from api.auth import READING, Reader, TicketWorker
from api.context import AppContext
from api.deps import Ctx, DbSession, PageParams, RowId, page_of
from api.problems import responses
from api.schemas import Page
from api.ticket_schemas import (
    CommentIn,
    CommentOut,
    EvidenceOut,
    HazardIn,
    TicketChangeOut,
    TicketDetailOut,
    TicketEditIn,
    TicketEventOut,
    TicketOut,
    TransitionIn,
)
from core.domain import AlarmCategory, Role, TicketAction, TicketSource, TicketStatus
from storage.models import TicketAlarmRow, TicketCommentRow, TicketEventRow, TicketEvidenceRow, TicketRow
from tickets.service import (
    ActionFields,
    HazardReport,
    TicketEdit,
    TicketInputError,
    TicketNotFoundError,
    TicketService,
)
from tickets.workflow import REPORTERS, RULES, RoleNotPermittedError, WrongStatusError

# Ticket ids are routed as integers ({ticket_id:int}): /tickets/ledger.xlsx is then no ticket id,
# so PATCH /tickets/ledger.xlsx is 405 (it takes GET) instead of a 422 for a bad id, and a path
# segment that is not a number is 404, no such ticket.
router = APIRouter(prefix="/tickets", tags=["tickets"])
R = TypeVar("R")
Time = Annotated[float | None, Query(ge=0, le=1e11)]
_WORK_PROBLEMS = responses(401, 403, 404, 409, 422, 503)  # 403: the role may not; 409: not in this status


def ticket_service(ctx: AppContext) -> TicketService:
    if ctx.tickets is None:
        raise HTTPException(503, "the ticket service is not running")
    return ctx.tickets


def acting_role(who: Principal, asked: Role | None, allowed: frozenset[Role]) -> Role:
    """The role a caller acts in: the one asked for, if held (an admin holds every role), else the
    first of theirs the action allows; failing both, their first role (the workflow then says why
    it may not)."""
    if asked is not None:
        if asked not in who.roles and Role.ADMIN not in who.roles:
            raise HTTPException(403, f"{who.name} does not hold the role {asked.value!r}")
        return asked
    held = sorted(who.roles, key=list(Role).index)
    return next((r for r in held if r in allowed), held[0])


async def run_ticket_work(ctx: AppContext, work: Callable[[TicketService], R]) -> R:
    """Run a write off the event loop; map the workflow's refusals to 403/404/409/422."""
    service = ticket_service(ctx)
    try:
        return await asyncio.to_thread(work, service)
    except TicketNotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
    except RoleNotPermittedError as exc:
        raise HTTPException(403, str(exc)) from None
    except WrongStatusError as exc:
        raise HTTPException(409, str(exc)) from None
    except TicketInputError as exc:
        raise HTTPException(422, str(exc)) from None


@router.get("", operation_id="list_tickets", responses=responses(401, 403))
def list_tickets(
    db: DbSession,
    page: PageParams,
    who: Reader,
    status: TicketStatus | None = None,
    site: Annotated[str | None, Query(max_length=64)] = None,
    department: Annotated[str | None, Query(max_length=100)] = None,
    device_id: Annotated[str | None, Query(max_length=64)] = None,
    source: TicketSource | None = None,
    category: AlarmCategory | None = None,
    open: Annotated[bool | None, Query(description="true: not closed; false: closed")] = None,
    overdue: Annotated[bool | None, Query(description="past the deadline and not yet rectified")] = None,
    ready: Annotated[bool | None, Query(description="marked ready for re-inspection by telemetry")] = None,
    since: Annotated[Time, Query(description="created at or after")] = None,
    until: Annotated[Time, Query(description="created before")] = None,
    mine: Annotated[
        bool | None,
        Query(description="true: assigned to the caller (整改人 is their user or display name); false: not"),
    ] = None,
) -> Page[TicketOut]:
    """The ledger (台账), newest first. `mine=true` is 我的整改单: what the caller was assigned."""
    q = select(TicketRow)
    for column, value in (
        (TicketRow.status, status),
        (TicketRow.site, site),
        (TicketRow.department, department),
        (TicketRow.device_id, device_id),
        (TicketRow.source, source),
        (TicketRow.category, category),
    ):
        if value is not None:
            q = q.where(column == str(value))
    if open is not None:
        closed = TicketRow.status == TicketStatus.CLOSED.value
        q = q.where(~closed if open else closed)
    if overdue is not None:
        q = q.where(TicketRow.overdue.is_(overdue))
    if ready is not None:
        q = q.where(TicketRow.ready_at.is_not(None) if ready else TicketRow.ready_at.is_(None))
    if mine is not None:
        # Assign records the name typed in (the console offers the display name): either one is me.
        me = TicketRow.assignee.in_({who.name, who.signature})
        q = q.where(me if mine else (TicketRow.assignee.is_(None) | ~me))
    if since is not None:
        q = q.where(TicketRow.created_at >= since)
    if until is not None:
        q = q.where(TicketRow.created_at < until)
    return page_of(db, q.order_by(TicketRow.id.desc()), page, TicketOut)


@router.post("", operation_id="report_hazard", status_code=201, responses=responses(401, 403, 404, 422, 503))
async def report_hazard(body: HazardIn, who: TicketWorker, ctx: Ctx) -> TicketChangeOut:
    """Open a ticket for a hazard found by an inspection. If the device already has an open ticket
    of this hazard type, the finding is added to it (`action: recurred`) instead."""
    if not body.site and body.device_id is None:
        raise HTTPException(422, "give the site, or the device the hazard is on")
    clock = ticket_service(ctx).clock
    report = HazardReport(
        site=body.site,
        problem=body.problem,
        inspectors=body.inspectors,
        inspection_time=body.inspection_time if body.inspection_time is not None else clock(),
        category=body.category,
        hazard_type=body.hazard_type,
        department=body.department,
        responsible=body.responsible,
        measures=body.measures,
        place=body.place,
        device_id=body.device_id,
        deadline=body.deadline,
    )
    role = acting_role(who, body.role, REPORTERS)
    change = await run_ticket_work(ctx, lambda s: s.report(report, who.name, role))
    ticket = await asyncio.to_thread(_ticket, ctx, change.ticket_id)
    return TicketChangeOut(ticket=ticket, action=change.action)


def _ticket(ctx: AppContext, ticket_id: int) -> TicketOut:
    with ctx.sessions() as s:
        row = s.get(TicketRow, ticket_id)
        if row is None:
            raise HTTPException(404, f"ticket {ticket_id} does not exist")
        return TicketOut.model_validate(row)


@router.get(
    "/{ticket_id:int}", operation_id="get_ticket", dependencies=[READING], responses=responses(401, 403, 404)
)
def get_ticket(ticket_id: RowId, db: DbSession) -> TicketDetailOut:
    row = db.get(TicketRow, ticket_id)
    if row is None:
        raise HTTPException(404, f"ticket {ticket_id} does not exist")

    def of(model: type[TicketEventRow] | type[TicketCommentRow] | type[TicketEvidenceRow]) -> list[object]:
        return list(db.scalars(select(model).where(model.ticket_id == ticket_id).order_by(model.id)))

    alarm_ids = db.scalars(select(TicketAlarmRow.alarm_id).where(TicketAlarmRow.ticket_id == ticket_id)).all()
    return TicketDetailOut(
        **TicketOut.model_validate(row).model_dump(),
        events=[TicketEventOut.model_validate(e) for e in of(TicketEventRow)],
        comments=[CommentOut.model_validate(c) for c in of(TicketCommentRow)],
        evidence=[EvidenceOut.model_validate(e) for e in of(TicketEvidenceRow)],
        alarm_ids=sorted(alarm_ids),
    )


@router.post("/{ticket_id:int}/transitions", operation_id="transition_ticket", responses=_WORK_PROBLEMS)
async def transition(ticket_id: RowId, body: TransitionIn, who: TicketWorker, ctx: Ctx) -> TicketOut:
    """One step of the loop: open → assigned → rectifying → rectified → verified → closed; a
    failed re-inspection (`reject`) goes back to rectifying; `extend` moves the deadline. 403 when
    the role may not take the step, 409 when the ticket's status does not allow it."""
    fields = ActionFields(
        assignee=body.assignee,
        responsible=body.responsible,
        deadline=body.deadline,
        feedback=body.feedback,
        signed_by=body.signed_by or who.signature,
    )
    action = TicketAction(body.action)
    role = acting_role(who, body.role, RULES[action].roles)
    row = await run_ticket_work(ctx, lambda s: s.act(ticket_id, action, who.name, role, body.note, fields))
    return TicketOut.model_validate(row)


@router.patch("/{ticket_id:int}", operation_id="update_ticket", responses=_WORK_PROBLEMS)
async def update_ticket(ticket_id: RowId, body: TicketEditIn, who: TicketWorker, ctx: Ctx) -> TicketOut:
    """Correct the form's description: problem, measures, department, responsible person, place.
    The loop's own fields change only through its steps, and a ticket is never deleted: it is a
    record (台账). 403 for roles other than safety and leader, 409 once closed."""
    edit = TicketEdit(
        problem=body.problem,
        measures=body.measures,
        department=body.department,
        responsible=body.responsible,
        place=body.place,
    )
    role = acting_role(who, body.role, RULES[TicketAction.EDIT].roles)
    row = await run_ticket_work(ctx, lambda s: s.edit(ticket_id, who.name, role, edit, body.note))
    return TicketOut.model_validate(row)


@router.post(
    "/{ticket_id:int}/comments", operation_id="comment_ticket", status_code=201, responses=_WORK_PROBLEMS
)
async def comment(ticket_id: RowId, body: CommentIn, who: TicketWorker, ctx: Ctx) -> CommentOut:
    role = acting_role(who, body.role, RULES[TicketAction.COMMENT].roles)
    row = await run_ticket_work(ctx, lambda s: s.comment(ticket_id, who.name, role, body.text))
    return CommentOut.model_validate(row)


@router.post(
    "/{ticket_id:int}/evidence",
    operation_id="attach_evidence",
    status_code=201,
    responses=responses(401, 403, 404, 409, 413, 422, 503),
)
async def attach(
    ticket_id: RowId,
    ctx: Ctx,
    who: TicketWorker,
    file: Annotated[UploadFile, File(description="a photo or document (size-limited by site policy)")],
    role: Annotated[Role | None, Form(description="the role to act in, when you hold several")] = None,
    note: Annotated[str, Form(max_length=2000)] = "",
) -> EvidenceOut:
    """Attach evidence (a photo of the rectified hazard, a test report). Larger than
    `tickets.evidence_max_bytes` is refused with 413 before it is stored."""
    acting = acting_role(who, role, RULES[TicketAction.ATTACH].roles)
    limit = ticket_service(ctx).policy.evidence_max_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(413, f"the file is larger than {limit} bytes (tickets.evidence_max_bytes)")
    filename = (file.filename or "evidence")[-200:]
    content_type = (file.content_type or "application/octet-stream")[:100]
    row = await run_ticket_work(
        ctx, lambda s: s.attach(ticket_id, who.name, acting, filename, content_type, data, note)
    )
    return EvidenceOut.model_validate(row)


@router.get(
    "/{ticket_id:int}/evidence/{evidence_id}",
    operation_id="get_evidence",
    response_class=Response,
    dependencies=[READING],
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "the file as uploaded"},
        **responses(401, 403, 404),
    },
)
def get_evidence(ticket_id: RowId, evidence_id: RowId, db: DbSession) -> Response:
    row = db.get(TicketEvidenceRow, evidence_id)
    if row is None or row.ticket_id != ticket_id:
        raise HTTPException(404, f"ticket {ticket_id} has no evidence {evidence_id}")
    return Response(
        row.data,
        media_type=row.content_type,
        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(row.filename)}"},
    )
