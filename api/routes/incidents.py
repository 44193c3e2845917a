"""Incidents (火情/事件): one card per fire, gas leak, outage or fault group, handled as one.

Reading lists incidents with their alarms, worst and most urgent first: unacknowledged before
acknowledged, fire before the rest, oldest first (the fire that has waited longest). The steps
(acknowledge, verify, the verdict, the 119 call, reset) each add a timestamped entry to the
incident's timeline, audited with who took it and from where.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fastapi import APIRouter, HTTPException
from sqlalchemy import func, select

from alarms.model import IncidentUpdate
from alarms.service import IncidentNotFoundError, IncidentStep, InvalidTransitionError
from api.auth import READING, AlarmHandler
from api.context import AppContext
from api.deps import Ctx, DbSession, PageParams, RowId
from api.incident_filters import Search
from api.incident_schemas import (
    Call119In,
    IncidentDetailOut,
    IncidentEventOut,
    IncidentNoteIn,
    IncidentOut,
    IncidentStepOut,
    IncidentWithAlarmsOut,
    PanelEventOut,
    VerdictIn,
    VerifyIn,
)
from api.problems import responses
from api.schemas import AlarmOut, Page
from core.domain import (
    PANEL_LOG_EVENTS,
    DeviceEventKind,
    Verification,
)
from storage.models import AlarmRow, IncidentEventRow, IncidentRow

router = APIRouter(prefix="/incidents", tags=["incidents"])

_ACTION_PROBLEMS = responses(401, 403, 404, 409)  # 409: the incident's state does not allow it


def incident_out(ctx: AppContext, row: IncidentRow | dict[str, object]) -> IncidentOut:
    out = IncidentOut.model_validate(row)
    out.place_name = ctx.alarms.index.place_label(out.place)
    out.call_119_due = out.verification is Verification.CONFIRMED and out.call_119_ts is None
    return out


@router.get("", operation_id="list_incidents", dependencies=[READING], responses=responses(401, 403))
def list_incidents(db: DbSession, ctx: Ctx, page: PageParams, search: Search) -> Page[IncidentWithAlarmsOut]:
    """Incidents with their alarms: open before closed, unacknowledged first, then by category
    (fire first) and age (oldest first); closed ones newest first. The history search (历史查询)
    asks for `order=newest` (or `oldest`: by the first alarm's time), a `place` (an incident at it,
    under it, or with an alarm under it), a device, the verdict (`verification`, a false alarm's
    `cause`) and words (`q`) in the incident's notes or its alarms' details and notes."""
    rows = search.query()
    total = db.scalar(select(func.count()).select_from(rows.order_by(None).subquery())) or 0
    found = db.scalars(rows.limit(page.limit).offset(page.offset)).all()
    by_incident: dict[int, list[AlarmOut]] = {r.id: [] for r in found}
    if found:
        alarms = db.scalars(
            select(AlarmRow).where(AlarmRow.incident_id.in_(list(by_incident))).order_by(AlarmRow.id)
        )
        for a in alarms:
            assert a.incident_id is not None
            by_incident[a.incident_id].append(AlarmOut.model_validate(a))
    items = [
        IncidentWithAlarmsOut(**incident_out(ctx, r).model_dump(), alarms=by_incident[r.id]) for r in found
    ]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.get(
    "/{incident_id}", operation_id="get_incident", dependencies=[READING], responses=responses(401, 403, 404)
)
def get_incident(incident_id: RowId, db: DbSession, ctx: Ctx) -> IncidentDetailOut:
    """One incident with its alarms and its whole timeline, oldest step first."""
    row = db.get(IncidentRow, incident_id)
    if row is None:
        raise HTTPException(404, f"incident {incident_id} does not exist")
    alarms = db.scalars(select(AlarmRow).where(AlarmRow.incident_id == incident_id).order_by(AlarmRow.id))
    events = db.scalars(
        select(IncidentEventRow)
        .where(IncidentEventRow.incident_id == incident_id)
        .order_by(IncidentEventRow.id)
    )
    return IncidentDetailOut(
        **incident_out(ctx, row).model_dump(),
        alarms=[AlarmOut.model_validate(a) for a in alarms],
        devices=list(row.devices or ()),
        timeline=[IncidentEventOut.model_validate(e) for e in events],
        panel_events=_panel_events(ctx, row),
    )


PANEL_EVENTS_MAX = 1000
_PANEL_KINDS = tuple(sorted(k.value for k in PANEL_LOG_EVENTS))


def _panel_events(ctx: AppContext, row: IncidentRow) -> list[PanelEventOut]:
    """The building's fire alarm panels' linkage, feedback, delays and operations during the
    incident (GB/T 26875.3 points bound in the registry; none when the listener is off)."""
    if ctx.gb26875 is None or ctx.registry is None:
        return []
    building = "/".join(row.place.split("/")[:2]) + "/"
    ids = [
        d
        for station in ctx.gb26875.points().stations.values()
        for d in (station.device_id, *station.systems.values(), *station.components.values())
    ]
    registry = ctx.registry.registry
    in_building = [d for d in ids if d in registry.row_of and registry.devices[d].place.startswith(building)]
    end = row.ended_ts if row.ended_ts is not None else ctx.clock()
    rows = ctx.telemetry.events_of(
        in_building, row.first_ts - 60.0, end + 1.0, _PANEL_KINDS, PANEL_EVENTS_MAX
    )
    return [
        PanelEventOut(device_id=d, ts=ts, event=DeviceEventKind(event), code=code, channel=channel)
        for d, ts, _, event, code, channel, _ in rows
    ]


def step_out(ctx: AppContext, u: IncidentUpdate) -> IncidentStepOut:
    return IncidentStepOut(
        event_id=u.event_id,
        action=u.action,
        actor=u.actor,
        ts=u.ts,
        note=u.note,
        targets=list(u.targets),
        incident=incident_out(ctx, u.after),
    )


async def _act(ctx: AppContext, action: Callable[[], IncidentStep]) -> IncidentStepOut:
    """Run a human step off the event loop; a missing incident is 404, a wrong state 409."""
    try:
        done = await asyncio.to_thread(action)
    except IncidentNotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
    except InvalidTransitionError as exc:
        raise HTTPException(409, str(exc)) from None
    for t in done.transitions:
        ctx.on_human_transition(t)
    return step_out(ctx, done.update)


@router.post("/{incident_id}/acknowledge", operation_id="acknowledge_incident", responses=_ACTION_PROBLEMS)
async def acknowledge(
    incident_id: RowId, body: IncidentNoteIn, who: AlarmHandler, ctx: Ctx
) -> IncidentStepOut:
    """受理: the caller takes the incident. Its unacknowledged alarms are acknowledged with it, its
    escalation stops and everyone told so far hears who took it. Already acknowledged: 409."""
    return await _act(
        ctx, lambda: ctx.alarms.acknowledge_incident(incident_id, actor=who.name, note=body.note)
    )


@router.post("/{incident_id}/verify", operation_id="verify_incident", responses=_ACTION_PROBLEMS)
async def verify(incident_id: RowId, body: VerifyIn, who: AlarmHandler, ctx: Ctx) -> IncidentStepOut:
    """核实中: someone went to check (default: the caller). Already decided: 409."""
    return await _act(
        ctx,
        lambda: ctx.alarms.verify_incident(
            incident_id, actor=who.name, verifier=body.verifier, note=body.note
        ),
    )


@router.post("/{incident_id}/verdict", operation_id="decide_incident", responses=_ACTION_PROBLEMS)
async def verdict(incident_id: RowId, body: VerdictIn, who: AlarmHandler, ctx: Ctx) -> IncidentStepOut:
    """The verdict (GB 25506-2010 §4.2.2): `confirmed` (真实火警: the answer asks for the 119 call,
    `call_119_due`, and the leader on call is told), `false_alarm` with its `cause` (误报: its fire
    and pre-alarms count against their devices) or `test` (测试). Acknowledges the incident too.
    A verdict is final: a second one is 409, as is a false alarm without a cause."""
    return await _act(
        ctx,
        lambda: ctx.alarms.decide_incident(
            incident_id, actor=who.name, verdict=body.verdict, cause=body.cause, note=body.note
        ),
    )


@router.post("/{incident_id}/call-119", operation_id="record_119_call", responses=_ACTION_PROBLEMS)
async def call_119(incident_id: RowId, body: Call119In, who: AlarmHandler, ctx: Ctx) -> IncidentStepOut:
    """Record that 119 was called (when: default now), for a fire or gas incident; once."""
    return await _act(
        ctx, lambda: ctx.alarms.record_119_call(incident_id, actor=who.name, at=body.at, note=body.note)
    )


@router.post("/{incident_id}/reset", operation_id="reset_incident", responses=_ACTION_PROBLEMS)
async def reset(incident_id: RowId, body: IncidentNoteIn, who: AlarmHandler, ctx: Ctx) -> IncidentStepOut:
    """复位 every latched fire alarm of the incident as one action; a condition that persists raises
    again. Nothing latched: 409."""
    return await _act(ctx, lambda: ctx.alarms.reset_incident(incident_id, actor=who.name, note=body.note))


@router.post(
    "/{incident_id}/out-of-drill", operation_id="take_incident_out_of_drill", responses=_ACTION_PROBLEMS
)
async def out_of_drill(
    incident_id: RowId, body: IncidentNoteIn, who: AlarmHandler, ctx: Ctx
) -> IncidentStepOut:
    """这是真实火警: a drill's incident is a real fire. It and its alarms leave the drill and it is told
    at once to the people on duty as a fire just opened, unacknowledged and unverified, its
    escalation starting now; the drill ends, so every alarm from now on is real (docs/drills.md).
    Not a drill's, or closed: 409."""
    drills = ctx.drills
    if drills is None:  # no drill service: nothing was tagged by one, but the step still applies
        return await _act(
            ctx, lambda: ctx.alarms.take_out_of_drill(incident_id, actor=who.name, note=body.note)
        )
    return await _act(ctx, lambda: drills.real_fire(incident_id, actor=who.name, note=body.note))
