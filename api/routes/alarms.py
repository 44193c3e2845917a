from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from sqlalchemy import case, select

from alarms.model import Transition
from alarms.service import AlarmNotFoundError, InvalidTransitionError
from api.deps import Ctx, DbSession, PageParams, page_of
from api.schemas import AcknowledgeIn, AlarmDetailOut, AlarmEventOut, AlarmOut, ClearIn, Page, TransitionOut
from core.domain import CATEGORY_RANK, AlarmCategory, AlarmState, SystemType
from storage.models import AlarmEventRow, AlarmRow

router = APIRouter(prefix="/alarms", tags=["alarms"])

_rank = case({c.value: r for c, r in CATEGORY_RANK.items()}, value=AlarmRow.category, else_=9)


@router.get("", operation_id="list_alarms")
def list_alarms(
    db: DbSession,
    page: PageParams,
    site: str | None = None,
    category: AlarmCategory | None = None,
    state: AlarmState | None = None,
    system: SystemType | None = None,
    device_id: str | None = None,
    open: Annotated[bool | None, Query(description="only alarms not yet closed")] = None,
    since: Annotated[float | None, Query(ge=0, le=1e11)] = None,
    until: Annotated[float | None, Query(ge=0, le=1e11)] = None,
) -> Page[AlarmOut]:
    """Worst first: fire before pre-alarm, supervisory, fault and hazard, newest first within each.
    Gas alarms carry `system=combustible_gas`: filter on it to show them apart."""
    q = select(AlarmRow)
    if site is not None:
        q = q.where(AlarmRow.site == site)
    if category is not None:
        q = q.where(AlarmRow.category == category.value)
    if state is not None:
        q = q.where(AlarmRow.state == state.value)
    if system is not None:
        q = q.where(AlarmRow.system == system.value)
    if device_id is not None:
        q = q.where(AlarmRow.device_id == device_id)
    if open is not None:
        q = q.where((AlarmRow.state != AlarmState.CLOSED.value) if open else (AlarmRow.state == "closed"))
    if since is not None:
        q = q.where(AlarmRow.last_ts >= since)
    if until is not None:
        q = q.where(AlarmRow.first_ts < until)
    return page_of(db, q.order_by(_rank, AlarmRow.last_ts.desc()), page, AlarmOut)


@router.get("/{alarm_id}", operation_id="get_alarm")
def get_alarm(alarm_id: int, db: DbSession) -> AlarmDetailOut:
    row = db.get(AlarmRow, alarm_id)
    if row is None:
        raise HTTPException(404, f"alarm {alarm_id} does not exist")
    events = db.scalars(
        select(AlarmEventRow).where(AlarmEventRow.alarm_id == alarm_id).order_by(AlarmEventRow.id)
    )
    return AlarmDetailOut(
        **AlarmOut.model_validate(row).model_dump(), events=[AlarmEventOut.model_validate(e) for e in events]
    )


def _out(t: Transition) -> TransitionOut:
    return TransitionOut(
        alarm_id=t.alarm_id,
        action=t.action.value,
        actor=t.actor,
        ts=t.ts,
        note=t.note,
        after=AlarmOut.model_validate(t.after),
    )


@router.post("/{alarm_id}/acknowledge", operation_id="acknowledge_alarm")
async def acknowledge(alarm_id: int, body: AcknowledgeIn, ctx: Ctx) -> TransitionOut:
    try:
        t = await asyncio.to_thread(
            ctx.alarms.acknowledge, alarm_id, actor=body.actor, note=body.note, false_alarm=body.false_alarm
        )
    except AlarmNotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
    except InvalidTransitionError as exc:
        raise HTTPException(409, str(exc)) from None
    ctx.on_human_transition(t)
    return _out(t)


@router.post("/{alarm_id}/clear", operation_id="clear_alarm")
async def clear(alarm_id: int, body: ClearIn, ctx: Ctx) -> TransitionOut:
    try:
        t = await asyncio.to_thread(ctx.alarms.clear, alarm_id, actor=body.actor, note=body.note)
    except AlarmNotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
    except InvalidTransitionError as exc:
        raise HTTPException(409, str(exc)) from None
    ctx.on_human_transition(t)
    return _out(t)
