"""KPIs of the hazard-rectification loop (definitions: tickets/kpi.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from api.auth import READING
from api.deps import Ctx, DbSession
from api.problems import responses
from tickets.kpi import DEFAULT_TOP, KpiReport, compute_kpis

router = APIRouter(prefix="/kpis", tags=["kpis"], dependencies=[READING], responses=responses(401, 403))


@router.get("", operation_id="ticket_kpis")
def ticket_kpis(
    ctx: Ctx,
    db: DbSession,
    since: Annotated[
        float | None, Query(ge=0, le=1e11, description="tickets created / alarms raised from (epoch s)")
    ] = None,
    until: Annotated[
        float | None,
        Query(
            ge=0,
            le=1e11,
            description="up to, excluded (epoch s); the report is as of then (or now, if earlier)",
        ),
    ] = None,
    site: Annotated[str | None, Query(max_length=100)] = None,
    department: Annotated[str | None, Query(max_length=100, description="科室")] = None,
    top: Annotated[int, Query(ge=1, le=1000, description="devices in the false-alarm list")] = DEFAULT_TOP,
) -> KpiReport:
    """Found, rectified (整改率), on time, overdue, mean times to acknowledge, assign and rectify,
    false alarms per device, per department and category, for tickets created in [since, until)."""
    if since is not None and until is not None and since >= until:
        raise HTTPException(422, f"since ({since:g}) must be before until ({until:g})")
    # The alarm service's clock, so the report agrees with the rest of the API (and tests can move it).
    return compute_kpis(db, since, until, site, department, now=ctx.alarms.clock(), top=top)
