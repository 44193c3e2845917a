"""Maintenance windows: declared by people, audited, expiring by time or with their ticket."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from sqlalchemy import or_, select

from alarms.service import InvalidTransitionError, MaintenanceNotFoundError
from api.auth import READING, MaintenanceDeclarer
from api.deps import Ctx, DbSession, PageParams, RowId, page_of
from api.problems import responses
from api.routes.alarms import transition_out
from api.schemas import MaintenanceEndIn, MaintenanceIn, MaintenanceOut, Page, TransitionOut
from storage.models import MaintenanceRow

router = APIRouter(prefix="/maintenance", tags=["maintenance"])


@router.post("", operation_id="begin_maintenance", status_code=201, responses=responses(401, 403, 422))
async def begin(body: MaintenanceIn, who: MaintenanceDeclarer, ctx: Ctx) -> MaintenanceOut:
    """Alarms raised on covered devices during the window are recorded but not pushed. A fire alarm
    is never suppressed: it is pushed, marked 【维护期间】."""
    try:
        row = await asyncio.to_thread(
            lambda: ctx.alarms.begin_maintenance(
                site=body.site,
                place=body.place,
                device_ids=body.device_ids,
                start=body.start,
                end=body.end,
                ticket_id=body.ticket_id,
                reason=body.reason,
                actor=who.name,
            )
        )
    except InvalidTransitionError as exc:
        raise HTTPException(422, str(exc)) from None
    return MaintenanceOut.model_validate(row)


@router.get("", operation_id="list_maintenance", dependencies=[READING], responses=responses(401, 403))
def list_maintenance(
    db: DbSession,
    ctx: Ctx,
    page: PageParams,
    site: Annotated[str | None, Query(max_length=64)] = None,
    active: Annotated[bool | None, Query(description="only windows in force now")] = None,
) -> Page[MaintenanceOut]:
    q = select(MaintenanceRow)
    if site is not None:
        q = q.where(MaintenanceRow.site == site)
    if active is not None:
        now = ctx.alarms.clock()
        in_force = (
            MaintenanceRow.ended_ts.is_(None)
            & (MaintenanceRow.start_ts <= now)
            & (MaintenanceRow.end_ts > now)
        )
        q = q.where(in_force if active else or_(~in_force))
    return page_of(db, q.order_by(MaintenanceRow.id.desc()), page, MaintenanceOut)


@router.get(
    "/{maintenance_id}",
    operation_id="get_maintenance",
    dependencies=[READING],
    responses=responses(401, 403, 404),
)
def get_maintenance(maintenance_id: RowId, db: DbSession) -> MaintenanceOut:
    row = db.get(MaintenanceRow, maintenance_id)
    if row is None:
        raise HTTPException(404, f"maintenance window {maintenance_id} does not exist")
    return MaintenanceOut.model_validate(row)


@router.post("/{maintenance_id}/end", operation_id="end_maintenance", responses=responses(401, 403, 404, 409))
async def end(
    maintenance_id: RowId, body: MaintenanceEndIn, who: MaintenanceDeclarer, ctx: Ctx
) -> list[TransitionOut]:
    """End a window now. Alarms it held that nobody acknowledged are notified (`released`)."""
    try:
        transitions = await asyncio.to_thread(
            ctx.alarms.end_maintenance, maintenance_id, actor=who.name, note=body.note
        )
    except MaintenanceNotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
    except InvalidTransitionError as exc:
        raise HTTPException(409, str(exc)) from None
    for t in transitions:
        ctx.on_human_transition(t)
    return [transition_out(t) for t in transitions]
