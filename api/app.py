"""The FastAPI app factory. The service's lifespan (ingest loop included) is owned by the app."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.routing import APIRoute

from api import problems, route_table, unavailable
from api.audit import AuditMiddleware
from api.auth import redact_access_log
from api.body_limit import BodyLimitMiddleware
from api.context import AppContext
from api.route_table import QueryCheckMiddleware
from api.routes import (
    alarms,
    api_docs,
    audit,
    auth,
    console,
    devices,
    drills,
    duty_log,
    gb26875,
    handovers,
    health,
    incident_deliveries,
    incident_exports,
    incidents,
    kpis,
    maintenance,
    patrols,
    places,
    plans,
    rejects,
    roster,
    staff_reports,
    stream,
    ticket_exports,
    tickets,
    unrecorded,
    users,
)


def create_app(ctx: AppContext | None) -> FastAPI:
    """The API over a running service's context (None: routes only, for the OpenAPI document)."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if ctx is not None and ctx.start is not None:
            await ctx.start()
        try:
            yield
        finally:
            if ctx is not None and ctx.live is not None:
                ctx.live.close()  # end the open streams: their clients reconnect and resume
            if ctx is not None and ctx.stop is not None:
                await ctx.stop()

    app = FastAPI(
        title="firewatch",
        summary="Smart fire-safety monitoring (智慧消防): devices, alarms, hazard tickets",
        version="0.1.0",
        lifespan=lifespan,
        # /docs is served from local files (api/routes/api_docs.py); ReDoc would need a CDN.
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.state.ctx = ctx
    redact_access_log()
    problems.install(app)
    unavailable.install(app)
    app.add_middleware(AuditMiddleware)  # who did what, from where: every change by a signed-in caller
    app.add_middleware(QueryCheckMiddleware, fastapi_app=app)  # a typo in a filter is 422, not ignored
    # Added last, so it runs first: an oversized body is refused before anything reads it.
    app.add_middleware(
        BodyLimitMiddleware,
        max_body_bytes=ctx.max_body_bytes if ctx is not None else AppContext.max_body_bytes,
        max_signed_in_body_bytes=(
            ctx.max_signed_in_body_bytes if ctx is not None else AppContext.max_signed_in_body_bytes
        ),
        max_upload_bytes=ctx.max_upload_bytes if ctx is not None else AppContext.max_upload_bytes,
    )
    # ticket_exports before tickets: /tickets/ledger.xlsx must not be taken for /tickets/{ticket_id}.
    routers = [
        ("/api/v1", module.router)
        for module in (
            auth,
            users,
            audit,
            plans,  # before places and devices: /places/{path}/plan is not a place
            places,
            devices,
            unrecorded,  # before alarms: /alarms/unrecorded is not /alarms/{alarm_id}
            alarms,
            incident_exports,  # beside the incidents, as the ticket exports are
            incident_deliveries,
            incidents,
            stream,
            maintenance,
            ticket_exports,
            tickets,
            patrols,
            kpis,
            rejects,
            gb26875,
            roster,
            duty_log,
            handovers,
            staff_reports,
            drills,
        )
    ]
    routers.append(("", health.router))
    for prefix, router in routers:
        app.include_router(router, prefix=prefix)
    app.state.route_table = route_table.build(routers)  # 405's Allow, the query check
    console.mount(app)  # the operator console at / (out of the OpenAPI document)
    app.include_router(staff_reports.page_router)  # /report/{token}: the page a QR code opens
    api_docs.mount(app)  # /docs, with Swagger UI's files served here, not from a CDN
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        # Building the document takes over a second (pydantic schemas of ~120 operations) and
        # every app this process makes from the same routes has the same one: made once, and each
        # caller given its own copy to read or change.
        key = _routes_key(app)
        if (document := _DOCUMENTS.get(key)) is None:
            document = _DOCUMENTS[key] = orjson.dumps(problems.document_problems(generate()))
        copy: dict[str, Any] = orjson.loads(document)
        return copy

    app.openapi = openapi  # type: ignore[method-assign]
    return app


# The OpenAPI document (as JSON) of each set of routes this process has made an app with.
_DOCUMENTS: dict[tuple[tuple[str, str, tuple[str, ...], int], ...], bytes] = {}


def _routes_key(app: FastAPI) -> tuple[tuple[str, str, tuple[str, ...], int], ...]:
    """What the document is made from: the documented routes' paths, methods and endpoints (the
    console's and the docs' own routes are left out of it, and made anew with each app)."""
    return tuple(
        (type(r).__name__, r.path, tuple(sorted(r.methods or ())), id(r.endpoint))
        for r in app.routes
        if isinstance(r, APIRoute) and r.include_in_schema
    )


def openapi_document() -> dict[str, Any]:
    """The API's OpenAPI document, as committed in docs/openapi.json (no service needed)."""
    document: dict[str, Any] = create_app(None).openapi()
    return document


def openapi_text() -> str:
    """The committed form: stable key order as FastAPI emits it, two-space indent, UTF-8."""
    return json.dumps(openapi_document(), ensure_ascii=False, indent=2) + "\n"


def roles_table() -> str:
    """Who may call what, as the Markdown table in docs/api.md (from the document's security)."""
    lines = ["| operation | method and path | roles |", "|---|---|---|"]
    for path, operations in openapi_document()["paths"].items():
        for method, op in operations.items():
            roles = [r for requirement in op.get("security", []) for r in requirement.get("token", [])]
            who = "anyone signed in" if roles == ["viewer"] else ", ".join(roles) or "open"
            lines.append(f"| `{op['operationId']}` | {method.upper()} `{path}` | {who} |")
    return "\n".join(lines) + "\n"
