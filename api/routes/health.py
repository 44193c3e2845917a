from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from api.deps import Ctx

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str = "ok"
    time: float = Field(description="the service's clock, epoch seconds")
    time_scale: float = Field(
        description="how many times faster than real time that clock runs (1 except in simulations)"
    )


@router.get("/healthz", operation_id="healthz")
def healthz(ctx: Ctx) -> Health:
    """The process is alive and serving; with its clock, which simulators follow (docs/simulators.md)."""
    return Health(time=ctx.clock(), time_scale=ctx.time_scale)


# Checks that are reported but never make the service unready, because the alarm path does not
# depend on them: `influx` ("ok" or "failing for N s: why", when the sink is configured) buffers and
# raises an alarm of its own (storage/influx.py).
ADVISORY = frozenset({"influx"})


@router.get("/readyz", operation_id="readyz", responses={503: {"description": "a dependency is down"}})
async def readyz(ctx: Ctx) -> JSONResponse:
    """Ready only when the database answers a query and the broker connection is up."""
    checks = await asyncio.to_thread(ctx.readiness)
    ok = all(v == "ok" for k, v in checks.items() if k not in ADVISORY)
    return JSONResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503
    )


@router.get("/metrics", operation_id="metrics", response_class=Response)
async def metrics(ctx: Ctx) -> Response:
    """Prometheus exposition: ingest rate, rejects by reason, queue drops, active alarms by category."""
    await asyncio.to_thread(ctx.refresh_metrics)
    return Response(generate_latest(ctx.metrics), media_type=CONTENT_TYPE_LATEST)
