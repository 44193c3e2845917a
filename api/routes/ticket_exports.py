"""Ticket exports: one ticket as the printable seed form (PDF), the ticket ledger as a spreadsheet.

Mounted before api/routes/tickets.py, so `/tickets/ledger.xlsx` is not taken for a ticket id."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response
from sqlalchemy import func, select

from accounts.display_names import read_display_names
from api.auth import READING
from api.deps import Ctx, DbSession, RowId
from api.downloads import XLSX, disposition
from api.problems import responses
from core.domain import TicketStatus
from storage.models import TicketAlarmRow, TicketCommentRow, TicketEventRow, TicketEvidenceRow, TicketRow
from tickets.export import (
    EvidenceMeta,
    FontUnavailableError,
    Lang,
    render_ledger_xlsx,
    render_ticket_pdf,
    ticket_people,
)

router = APIRouter(prefix="/tickets", tags=["tickets"], dependencies=[READING], responses=responses(401, 403))

# One spreadsheet holds this many tickets at most; a wider export is refused with how to narrow it,
# rather than cut short without anyone noticing missing rows in a ledger.
LEDGER_MAX_ROWS = 50_000

Epoch = Annotated[float | None, Query(ge=0, le=1e11)]


@router.get(
    "/ledger.xlsx",
    operation_id="ticket_ledger_xlsx",
    response_class=Response,
    responses={200: {"content": {XLSX: {}}, "description": "the ledger (台账) as a spreadsheet"}},
)
def ticket_ledger_xlsx(
    db: DbSession,
    ctx: Ctx,
    site: str | None = None,
    department: str | None = None,
    status: TicketStatus | None = None,
    since: Epoch = None,
    until: Epoch = None,
    lang: Lang = "zh",
) -> Response:
    """The tickets created in [since, until) that match the filters, oldest first."""
    q = select(TicketRow)
    if site is not None:
        q = q.where(TicketRow.site == site)
    if department is not None:
        q = q.where(TicketRow.department == department)
    if status is not None:
        q = q.where(TicketRow.status == status.value)
    if since is not None:
        q = q.where(TicketRow.created_at >= since)
    if until is not None:
        q = q.where(TicketRow.created_at < until)
    total = db.scalar(select(func.count()).select_from(q.subquery())) or 0
    if total > LEDGER_MAX_ROWS:
        raise HTTPException(
            422,
            f"{total} tickets match; one ledger holds at most {LEDGER_MAX_ROWS}: "
            f"narrow it with since/until, site, department or status",
        )
    tickets = db.scalars(q.order_by(TicketRow.created_at, TicketRow.id)).all()
    people = read_display_names(db, ticket_people(tickets))
    body = render_ledger_xlsx(tickets, lang=lang, people=people, place_label=ctx.alarms.index.place_label)
    name = "隐患整改台账.xlsx" if lang == "zh" else "ticket-ledger.xlsx"
    headers = {"Content-Disposition": disposition("attachment", name, fallback="ticket-ledger.xlsx")}
    return Response(body, media_type=XLSX, headers=headers)


@router.get(
    "/{ticket_id:int}/form.pdf",
    operation_id="ticket_form_pdf",
    response_class=Response,
    responses={
        200: {"content": {"application/pdf": {}}, "description": "the seed form 隐患自查(督查)整改表"},
        **responses(404),
        503: {"description": "no CJK font to print the form with"},
    },
)
def ticket_form_pdf(ticket_id: RowId, db: DbSession, ctx: Ctx, lang: Lang = "zh") -> Response:
    ticket = db.get(TicketRow, ticket_id)
    if ticket is None:
        raise HTTPException(404, f"ticket {ticket_id} does not exist")
    events = db.scalars(
        select(TicketEventRow).where(TicketEventRow.ticket_id == ticket_id).order_by(TicketEventRow.id)
    ).all()
    comments = db.scalars(
        select(TicketCommentRow).where(TicketCommentRow.ticket_id == ticket_id).order_by(TicketCommentRow.id)
    ).all()
    # The evidence's metadata only: the files themselves may be megabytes each.
    evidence = [
        EvidenceMeta(r.filename, r.content_type, r.size, r.uploaded_by, r.ts, r.note)
        for r in db.execute(
            select(
                TicketEvidenceRow.filename,
                TicketEvidenceRow.content_type,
                TicketEvidenceRow.size,
                TicketEvidenceRow.uploaded_by,
                TicketEvidenceRow.ts,
                TicketEvidenceRow.note,
            )
            .where(TicketEvidenceRow.ticket_id == ticket_id)
            .order_by(TicketEvidenceRow.id)
        )
    ]
    alarm_ids = db.scalars(select(TicketAlarmRow.alarm_id).where(TicketAlarmRow.ticket_id == ticket_id)).all()
    people = read_display_names(db, ticket_people([ticket], events, comments, evidence))
    try:
        body = render_ticket_pdf(
            ticket,
            events,
            comments,
            evidence,
            sorted(alarm_ids),
            lang=lang,
            font_path=ctx.export_font,
            people=people,
            place_label=ctx.alarms.index.place_label,
        )
    except FontUnavailableError as exc:
        raise HTTPException(503, str(exc)) from exc
    return Response(
        body,
        media_type="application/pdf",
        headers={"Content-Disposition": disposition("inline", f"{ticket.number}.pdf")},
    )
