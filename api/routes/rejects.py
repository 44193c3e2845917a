from __future__ import annotations

import base64

from fastapi import APIRouter
from sqlalchemy import func, select

from alarms.labels import reject_reason_zh
from api.auth import READING
from api.deps import DbSession, PageParams
from api.problems import responses
from api.schemas import Page, RejectOut, RejectTotalsOut
from core.domain import RejectReason
from storage.models import RejectRow, RejectTotalRow

router = APIRouter(prefix="/rejects", tags=["rejects"], dependencies=[READING], responses=responses(401, 403))


@router.get("", operation_id="list_rejects")
def list_rejects(db: DbSession, page: PageParams, reason: RejectReason | None = None) -> Page[RejectOut]:
    """Rejected messages, newest first, with their raw bytes (the store keeps the newest N)."""
    q = select(RejectRow)
    if reason is not None:
        q = q.where(RejectRow.reason == reason.value)
    total = db.scalar(select(func.count()).select_from(q.subquery())) or 0
    rows = db.scalars(q.order_by(RejectRow.id.desc()).limit(page.limit).offset(page.offset)).all()
    items = [
        RejectOut(
            id=r.id,
            received=r.received,
            topic=r.topic,
            reason=r.reason,
            reason_zh=reject_reason_zh(r.reason),
            detail=r.detail,
            device_id=r.device_id,
            payload_base64=base64.b64encode(r.payload).decode("ascii"),
            payload_preview=r.payload[:200].decode("utf-8", errors="replace"),
        )
        for r in rows
    ]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.get("/totals", operation_id="reject_totals")
def reject_totals(db: DbSession) -> RejectTotalsOut:
    """Every reject ever counted, by reason (the raw store is bounded; these totals are not)."""
    return RejectTotalsOut(totals={r.reason: r.count for r in db.scalars(select(RejectTotalRow))})
