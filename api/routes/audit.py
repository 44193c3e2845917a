"""The audit trail: who did what, when, from where (api/audit.py writes it)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from api.account_schemas import AuditOut
from api.auth import AuditReader
from api.deps import DbSession, PageParams, page_of
from api.problems import responses
from api.schemas import Page
from storage.models import AuditRow

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("", operation_id="list_audit", responses=responses(401, 403))
def list_audit(
    _who: AuditReader,
    db: DbSession,
    page: PageParams,
    actor: Annotated[str | None, Query(max_length=100, description="who: a user name, or key:<name>")] = None,
    action: Annotated[
        str | None, Query(max_length=64, description="an operation id, e.g. acknowledge_alarm")
    ] = None,
    subject: Annotated[str | None, Query(max_length=400, description="what it acted on, exactly")] = None,
    since: Annotated[float | None, Query(ge=0, le=1e11)] = None,
    until: Annotated[float | None, Query(ge=0, le=1e11)] = None,
) -> Page[AuditOut]:
    """Newest first."""
    q = select(AuditRow)
    if actor is not None:
        q = q.where(AuditRow.actor == actor)
    if action is not None:
        q = q.where(AuditRow.action == action)
    if subject is not None:
        q = q.where(AuditRow.subject == subject)
    if since is not None:
        q = q.where(AuditRow.ts >= since)
    if until is not None:
        q = q.where(AuditRow.ts < until)
    return page_of(db, q.order_by(AuditRow.id.desc()), page, AuditOut)
