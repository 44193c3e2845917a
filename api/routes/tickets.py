from __future__ import annotations

from fastapi import APIRouter, HTTPException
from sqlalchemy import select

from api.deps import DbSession, PageParams, page_of
from api.schemas import Page, TicketDetailOut, TicketEventOut, TicketOut
from core.domain import TicketStatus
from storage.models import TicketAlarmRow, TicketEventRow, TicketRow

router = APIRouter(prefix="/tickets", tags=["tickets"])


@router.get("", operation_id="list_tickets")
def list_tickets(
    db: DbSession,
    page: PageParams,
    status: TicketStatus | None = None,
    site: str | None = None,
    department: str | None = None,
    device_id: str | None = None,
) -> Page[TicketOut]:
    q = select(TicketRow)
    if status is not None:
        q = q.where(TicketRow.status == status.value)
    if site is not None:
        q = q.where(TicketRow.site == site)
    if department is not None:
        q = q.where(TicketRow.department == department)
    if device_id is not None:
        q = q.where(TicketRow.device_id == device_id)
    return page_of(db, q.order_by(TicketRow.id.desc()), page, TicketOut)


@router.get("/{ticket_id}", operation_id="get_ticket")
def get_ticket(ticket_id: int, db: DbSession) -> TicketDetailOut:
    row = db.get(TicketRow, ticket_id)
    if row is None:
        raise HTTPException(404, f"ticket {ticket_id} does not exist")
    events = db.scalars(
        select(TicketEventRow).where(TicketEventRow.ticket_id == ticket_id).order_by(TicketEventRow.id)
    )
    alarm_ids = db.scalars(select(TicketAlarmRow.alarm_id).where(TicketAlarmRow.ticket_id == ticket_id)).all()
    return TicketDetailOut(
        **TicketOut.model_validate(row).model_dump(),
        events=[TicketEventOut.model_validate(e) for e in events],
        alarm_ids=sorted(alarm_ids),
    )
