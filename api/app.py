"""The FastAPI app factory. The service's lifespan (ingest loop included) is owned by the app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import problems
from api.context import AppContext
from api.routes import (
    alarms,
    devices,
    health,
    kpis,
    maintenance,
    patrols,
    places,
    rejects,
    stream,
    ticket_exports,
    tickets,
)


def create_app(ctx: AppContext) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if ctx.start is not None:
            await ctx.start()
        try:
            yield
        finally:
            if ctx.live is not None:
                ctx.live.close()  # end the open streams: their clients reconnect and resume
            if ctx.stop is not None:
                await ctx.stop()

    app = FastAPI(
        title="firewatch",
        summary="Smart fire-safety monitoring (智慧消防): devices, alarms, hazard tickets",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    problems.install(app)
    # ticket_exports before tickets: /tickets/ledger.xlsx must not be taken for /tickets/{ticket_id}.
    for module in (
        places,
        devices,
        alarms,
        stream,
        maintenance,
        ticket_exports,
        tickets,
        patrols,
        kpis,
        rejects,
    ):
        app.include_router(module.router, prefix="/api/v1")
    app.include_router(health.router)
    return app
