"""Patrol rounds (巡查) and the maintenance plans' schedule: the people-driven sources of tickets."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from api.auth import READING, TicketWorker
from api.deps import Ctx, DbSession, PageParams, page_of
from api.problems import responses
from api.routes.tickets import acting_role, run_ticket_work, ticket_service
from api.schemas import Page
from api.ticket_schemas import (
    PatrolResultOut,
    PatrolRoundIn,
    PatrolRoundOut,
    PatrolRouteOut,
    PlanRunOut,
    TicketChangeOut,
    TicketOut,
)
from storage.models import PatrolRoundRow, PlanRunRow, TicketRow
from tickets.service import HazardReport, PatrolVisit
from tickets.workflow import REPORTERS

router = APIRouter(tags=["patrols"])


@router.get(
    "/patrols/routes",
    operation_id="list_patrol_routes",
    dependencies=[READING],
    responses=responses(401, 403, 503),
)
def list_routes(ctx: Ctx, db: DbSession) -> list[PatrolRouteOut]:
    """The configured routes (tickets.patrols) with when each was last walked and is next due."""
    runs = {r.plan: r for r in db.scalars(select(PlanRunRow).where(PlanRunRow.plan.like("patrol:%")))}
    out = []
    for route in ticket_service(ctx).policy.patrols:
        run = runs.get(f"patrol:{route.name}")
        out.append(
            PatrolRouteOut(
                name=route.name,
                site=route.site,
                title_zh=route.title_zh,
                checkpoints=route.checkpoints,
                every_hours=route.every_hours,
                grace_hours=route.grace_hours,
                last_done=run.last_done if run else None,
                next_due=run.next_due if run else None,
            )
        )
    return out


@router.post(
    "/patrols/rounds",
    operation_id="record_patrol_round",
    status_code=201,
    responses=responses(401, 403, 404, 422, 503),
)
async def record_round(body: PatrolRoundIn, who: TicketWorker, ctx: Ctx) -> PatrolResultOut:
    """Record a round: checkpoints visited (with the time of each), and the problems found, each of
    which opens a ticket. Checkpoints of the route not visited open one `patrol.incomplete` ticket."""
    visits = [
        PatrolVisit(
            checkpoint=v.checkpoint,
            ts=v.ts,
            ok=v.ok,
            note=v.note,
            problem=None
            if v.problem is None
            else HazardReport(
                site="",
                problem=v.problem.problem,
                inspectors=body.inspectors,
                inspection_time=v.ts,
                category=v.problem.category,
                hazard_type=v.problem.hazard_type,
                department=v.problem.department,
                responsible=v.problem.responsible,
                measures=v.problem.measures,
                place=v.problem.place,
                device_id=v.problem.device_id,
                deadline=v.problem.deadline,
            ),
        )
        for v in body.visits
    ]
    role = acting_role(who, body.role, REPORTERS)
    result = await run_ticket_work(
        ctx,
        lambda s: s.record_patrol(
            body.route, body.inspectors, body.started_at, body.finished_at, visits, who.name, role
        ),
    )

    def load() -> PatrolResultOut:
        with ctx.sessions() as s:
            rnd = s.get(PatrolRoundRow, result.round_id)
            assert rnd is not None
            tickets = [
                TicketChangeOut(
                    ticket=TicketOut.model_validate(s.get(TicketRow, c.ticket_id)), action=c.action
                )
                for c in result.tickets
            ]
            return PatrolResultOut(round=PatrolRoundOut.model_validate(rnd), tickets=tickets)

    return await asyncio.to_thread(load)


@router.get(
    "/patrols/rounds",
    operation_id="list_patrol_rounds",
    dependencies=[READING],
    responses=responses(401, 403),
)
def list_rounds(
    db: DbSession,
    page: PageParams,
    route: Annotated[str | None, Query(max_length=64)] = None,
    site: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[float | None, Query(ge=0, le=1e11)] = None,
) -> Page[PatrolRoundOut]:
    q = select(PatrolRoundRow)
    if route is not None:
        q = q.where(PatrolRoundRow.route == route)
    if site is not None:
        q = q.where(PatrolRoundRow.site == site)
    if since is not None:
        q = q.where(PatrolRoundRow.finished_at >= since)
    return page_of(db, q.order_by(PatrolRoundRow.finished_at.desc()), page, PatrolRoundOut)


@router.get(
    "/plans",
    operation_id="list_maintenance_plans",
    dependencies=[READING],
    responses=responses(401, 403, 503),
)
def list_plans(ctx: Ctx, db: DbSession) -> list[PlanRunOut]:
    """Scheduled maintenance and tests (tickets.plans) per site: last done, next due, and the open
    ticket while one is due."""
    service = ticket_service(ctx)
    runs = {(r.plan, r.site): r for r in db.scalars(select(PlanRunRow).where(PlanRunRow.plan.like("plan:%")))}
    out = []
    for plan in service.policy.plans:
        for site in plan.sites or sorted(set(service.index.sites)):
            run = runs.get((f"plan:{plan.name}", site))
            out.append(
                PlanRunOut(
                    plan=plan.name,
                    title_zh=plan.title_zh,
                    site=site,
                    every_days=plan.every_days,
                    last_done=run.last_done if run else None,
                    next_due=run.next_due if run else None,
                    ticket_id=run.ticket_id if run else None,
                )
            )
    return out
