from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from sqlalchemy import case, select

from alarms.model import Transition
from alarms.service import AlarmNotFoundError, InvalidTransitionError
from api.auth import READING, AlarmHandler
from api.context import AppContext
from api.deps import ROW_ID_MAX, Ctx, DbSession, PageParams, RowId, page_of
from api.history_filters import Order, PlacePath, Text, TimeOrder, in_subtree, mentions
from api.problems import responses
from api.schemas import (
    AcknowledgeIn,
    AlarmDetailOut,
    AlarmEventOut,
    AlarmOut,
    ClearIn,
    CloseIn,
    FalseAlarmsOut,
    Page,
    ResetIn,
    ShelveIn,
    TransitionOut,
)
from core.domain import CATEGORY_RANK, AlarmCategory, AlarmState, SystemType
from storage.models import AlarmEventRow, AlarmRow

router = APIRouter(prefix="/alarms", tags=["alarms"])

_ACTION_PROBLEMS = responses(401, 403, 404, 409)  # 409: the alarm's state does not allow it

_rank = case({c.value: r for c, r in CATEGORY_RANK.items()}, value=AlarmRow.category, else_=9)


@router.get("", operation_id="list_alarms", dependencies=[READING], responses=responses(401, 403))
def list_alarms(
    db: DbSession,
    page: PageParams,
    site: str | None = None,
    category: AlarmCategory | None = None,
    state: AlarmState | None = None,
    system: SystemType | None = None,
    device_id: str | None = None,
    place: PlacePath = None,
    gas: Annotated[
        bool | None, Query(description="true: only combustible-gas alarms; false: everything but gas")
    ] = None,
    open: Annotated[bool | None, Query(description="only alarms not yet closed")] = None,
    since: Annotated[float | None, Query(ge=0, le=1e11)] = None,
    until: Annotated[float | None, Query(ge=0, le=1e11)] = None,
    false_alarm: Annotated[
        bool | None, Query(description="true: acknowledged as a false alarm; false: not")
    ] = None,
    incident_id: Annotated[
        int | None, Query(ge=1, le=ROW_ID_MAX, description="the alarms of one incident")
    ] = None,
    q: Text = None,
    order: Order = None,
) -> Page[AlarmOut]:
    """Worst first: fire before pre-alarm, supervisory, fault and hazard, newest first within each.
    Gas alarms are shown apart (GB 50116-2013 §8.1.4): `gas=false` for the fire board, `gas=true`
    for the gas board. The history search asks for `order=newest` (or `oldest`) and may look for
    words (`q`) in the alarm's detail and its acknowledgement note."""
    rows = select(AlarmRow)
    if site is not None:
        rows = rows.where(AlarmRow.site == site)
    if category is not None:
        rows = rows.where(AlarmRow.category == category.value)
    if state is not None:
        rows = rows.where(AlarmRow.state == state.value)
    if system is not None:
        rows = rows.where(AlarmRow.system == system.value)
    if device_id is not None:
        rows = rows.where(AlarmRow.device_id == device_id)
    if place is not None:
        rows = rows.where(in_subtree(AlarmRow.place, place))
    if gas is not None:
        is_gas = AlarmRow.system == SystemType.COMBUSTIBLE_GAS.value
        rows = rows.where(is_gas if gas else ~is_gas)
    if open is not None:
        rows = rows.where(
            (AlarmRow.state != AlarmState.CLOSED.value) if open else (AlarmRow.state == "closed")
        )
    if since is not None:
        rows = rows.where(AlarmRow.last_ts >= since)
    if until is not None:
        rows = rows.where(AlarmRow.first_ts < until)
    if false_alarm is not None:
        rows = rows.where(AlarmRow.false_alarm.is_(false_alarm))
    if incident_id is not None:
        rows = rows.where(AlarmRow.incident_id == incident_id)
    if q is not None:
        rows = rows.where(mentions(q, AlarmRow.detail, AlarmRow.ack_note))
    if order is None:
        rows = rows.order_by(_rank, AlarmRow.last_ts.desc())
    else:
        first = AlarmRow.first_ts.desc() if order is TimeOrder.NEWEST else AlarmRow.first_ts.asc()
        rows = rows.order_by(first, AlarmRow.id.desc() if order is TimeOrder.NEWEST else AlarmRow.id)
    return page_of(db, rows, page, AlarmOut)


@router.get(
    "/false-alarms", operation_id="false_alarm_counts", dependencies=[READING], responses=responses(401, 403)
)
async def false_alarms(
    ctx: Ctx,
    site: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[float | None, Query(ge=0, le=1e11)] = None,
    until: Annotated[float | None, Query(ge=0, le=1e11)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[FalseAlarmsOut]:
    """Per device, how many acknowledgements recorded a false alarm, over alarms first raised in
    [since, until): the devices to clean, move or replace first."""
    rows = await asyncio.to_thread(ctx.alarms.false_alarm_counts, site=site, since=since, until=until)
    return [FalseAlarmsOut(device_id=d, false_alarms=f, alarms=n) for d, f, n in rows[:limit]]


@router.get(
    "/{alarm_id}", operation_id="get_alarm", dependencies=[READING], responses=responses(401, 403, 404)
)
def get_alarm(alarm_id: RowId, db: DbSession) -> AlarmDetailOut:
    row = db.get(AlarmRow, alarm_id)
    if row is None:
        raise HTTPException(404, f"alarm {alarm_id} does not exist")
    events = db.scalars(
        select(AlarmEventRow).where(AlarmEventRow.alarm_id == alarm_id).order_by(AlarmEventRow.id)
    )
    return AlarmDetailOut(
        **AlarmOut.model_validate(row).model_dump(), events=[AlarmEventOut.model_validate(e) for e in events]
    )


def transition_out(t: Transition) -> TransitionOut:
    return TransitionOut(
        event_id=t.event_id,
        alarm_id=t.alarm_id,
        action=t.action,
        actor=t.actor,
        ts=t.ts,
        note=t.note,
        targets=list(t.targets),
        held=t.held,
        after=AlarmOut.model_validate(t.after),
    )


async def _act(ctx: AppContext, action: Callable[[], Transition]) -> TransitionOut:
    """Run a human action off the event loop; a missing alarm is 404, a wrong state 409."""
    try:
        t = await asyncio.to_thread(action)
    except AlarmNotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
    except InvalidTransitionError as exc:
        raise HTTPException(409, str(exc)) from None
    ctx.on_human_transition(t)
    return transition_out(t)


@router.post("/{alarm_id}/acknowledge", operation_id="acknowledge_alarm", responses=_ACTION_PROBLEMS)
async def acknowledge(alarm_id: RowId, body: AcknowledgeIn, who: AlarmHandler, ctx: Ctx) -> TransitionOut:
    """Record who saw it, when, and a note; `false_alarm` counts against the device. Stops escalation."""
    return await _act(
        ctx,
        lambda: ctx.alarms.acknowledge(
            alarm_id, actor=who.name, note=body.note, false_alarm=body.false_alarm
        ),
    )


@router.post("/{alarm_id}/clear", operation_id="clear_alarm", responses=_ACTION_PROBLEMS)
async def clear(alarm_id: RowId, body: ClearIn, who: AlarmHandler, ctx: Ctx) -> TransitionOut:
    """Clear an active alarm by hand (e.g. after a reset on site); the detector re-raises it if the
    condition persists. A fire alarm latches and is not cleared but reset (409 pointing to `reset`)."""
    return await _act(ctx, lambda: ctx.alarms.clear(alarm_id, actor=who.name, note=body.note))


@router.post("/{alarm_id}/reset", operation_id="reset_alarm", responses=_ACTION_PROBLEMS)
async def reset(alarm_id: RowId, body: ResetIn, who: AlarmHandler, ctx: Ctx) -> TransitionOut:
    """Reset (复位) a latched fire alarm, as on a fire alarm control panel (GB 4717): it ends as a
    clear does, everyone told stands down, and a condition that persists raises a new alarm. Only an
    active fire alarm latches; anything else is 409."""
    return await _act(ctx, lambda: ctx.alarms.reset(alarm_id, actor=who.name, note=body.note))


@router.post("/{alarm_id}/close", operation_id="close_alarm", responses=_ACTION_PROBLEMS)
async def close(alarm_id: RowId, body: CloseIn, who: AlarmHandler, ctx: Ctx) -> TransitionOut:
    """Close a cleared and acknowledged alarm now rather than after the quiet period."""
    return await _act(ctx, lambda: ctx.alarms.close(alarm_id, actor=who.name, note=body.note))


@router.post("/{alarm_id}/shelve", operation_id="shelve_alarm", responses=_ACTION_PROBLEMS)
async def shelve(alarm_id: RowId, body: ShelveIn, who: AlarmHandler, ctx: Ctx) -> TransitionOut:
    """Hold the alarm's notifications until a time (at most the policy's limit). A fire alarm cannot
    be shelved (409)."""
    until = body.until if body.until is not None else ctx.alarms.clock() + (body.duration_s or 0.0)
    return await _act(ctx, lambda: ctx.alarms.shelve(alarm_id, actor=who.name, until=until, note=body.note))


@router.post("/{alarm_id}/unshelve", operation_id="unshelve_alarm", responses=_ACTION_PROBLEMS)
async def unshelve(alarm_id: RowId, body: ClearIn, who: AlarmHandler, ctx: Ctx) -> TransitionOut:
    return await _act(ctx, lambda: ctx.alarms.unshelve(alarm_id, actor=who.name, note=body.note))
