"""Who an incident's pushes reached: every delivery attempt of its notices, with the people on duty
a roster route sent it to (firewatch/roster_channel.py, docs/duty.md).

Mounted before api/routes/incidents.py, as the incident exports are."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from accounts.model import Principal
from alarms.labels import duty_role_zh
from api.auth import Reader
from api.deps import DbSession, PageParams, RowId
from api.problems import responses
from api.schemas import Page
from core.domain import Role
from storage.models import DeliveryRow, IncidentRow, OutboxRow

router = APIRouter(prefix="/incidents", tags=["incidents"], responses=responses(401, 403))
ADDRESS_READERS = frozenset({Role.SAFETY, Role.ADMIN})  # who sees the (masked) push addresses


class RecipientOut(BaseModel):
    role: str
    role_zh: str = Field(description="the duty role(s) in Chinese")
    user: str | None = Field(description="null: the route's fixed url (nobody was on duty)")
    name: str = Field(description="display name, or 路由固定地址")
    address: str | None = Field(description="masked; shown to safety and admin only")
    fallback: bool
    ok: bool


class DeliveryOut(BaseModel):
    outbox_id: int
    route: str
    ts: float
    ok: bool
    seconds: float
    detail: str = Field(description="the failure, or for a roster route whom it reached (值班人员：…)")
    recipients: list[RecipientOut] | None = Field(description="a roster route's people; null otherwise")


def _recipient(r: dict[str, Any], who: Principal) -> RecipientOut:
    roles = str(r.get("role", ""))
    return RecipientOut(
        role=roles,
        role_zh="、".join(duty_role_zh(x) for x in roles.split(",") if x),
        user=r.get("user"),
        name=str(r.get("name", "")),
        address=str(r.get("address", "")) if who.roles & ADDRESS_READERS else None,
        fallback=bool(r.get("fallback", False)),
        ok=bool(r.get("ok", True)),
    )


@router.get(
    "/{incident_id:int}/deliveries", operation_id="list_incident_deliveries", responses=responses(404)
)
def list_incident_deliveries(
    incident_id: RowId, who: Reader, db: DbSession, page: PageParams
) -> Page[DeliveryOut]:
    """Every attempt to push the incident's notices, oldest first: when, on which route, whether it
    was accepted, and whom a roster route reached (the people on duty, or the route's fixed url)."""
    if db.get(IncidentRow, incident_id) is None:
        raise HTTPException(404, f"incident {incident_id} does not exist")
    q = (
        select(DeliveryRow, OutboxRow.route)
        .join(OutboxRow, OutboxRow.id == DeliveryRow.outbox_id)
        .where(OutboxRow.incident_id == incident_id)
    )
    total = db.scalar(select(func.count()).select_from(q.subquery())) or 0
    rows = db.execute(q.order_by(DeliveryRow.id).limit(page.limit).offset(page.offset)).all()
    items = [
        DeliveryOut(
            outbox_id=d.outbox_id,
            route=route,
            ts=d.ts,
            ok=d.ok,
            seconds=d.seconds,
            detail=d.detail,
            recipients=[_recipient(r, who) for r in d.recipients] if d.recipients is not None else None,
        )
        for d, route in rows
    ]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)
