"""The operator console for the fire control room: one page served by the API (docs/console.md).

Plain HTML, CSS and JavaScript from `api/static/`, no build step and nothing loaded from another
origin. The page talks to the public `/api/v1` resources (signed in: api/auth.py), plus three small
lookups here: `/console/profiles.json` (each device profile's channels, for the history chart's
channel selector), `/console/ticket-actions.json` (which buttons a role gets on a ticket) and
`/console/roles.json` (which roles may handle alarms, so the board offers its buttons only to them)
and `/console/people.json` (each user's display name, so a history shows 保卫科 周九 rather than a user
name; the one lookup that needs a sign-in). None of these routes are part of the API: they stay out
of the OpenAPI schema.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from api.auth import ALARM_HANDLING, READING, TICKET_WORK, accounts_of
from api.deps import Ctx
from core.domain import Role, TicketStatus
from device_profiles.loader import load_profiles
from tickets.workflow import allowed_actions

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
PAGE = STATIC_DIR / "console.html"

router = APIRouter(tags=["console"], include_in_schema=False)

# The page changes with the code, not per request; browsers revalidate it every time so a deployed
# fix reaches the wall screen on its next reload.
_NO_CACHE = {"Cache-Control": "no-cache"}
# The page loads only its own script, style and data: no inline script, no third-party origin. A floor
# plan is fetched signed in and shown from a blob: URL, through <img> (no script in an SVG runs there).
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self' ws: wss:; media-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)


@router.get("/", response_class=HTMLResponse)
@router.get("/console", response_class=HTMLResponse)
def console_page() -> HTMLResponse:
    """The console page itself (Chinese by default; English from its language toggle)."""
    return HTMLResponse(
        PAGE.read_text(encoding="utf-8"), headers={**_NO_CACHE, "Content-Security-Policy": _CSP}
    )


@cache
def _profile_channels() -> dict[str, Any]:
    profiles = load_profiles()
    return {
        pid: {
            "name": p.name,
            "name_zh": p.name_zh,
            "channels": {
                name: {"unit": c.unit, "label": c.label, "label_zh": c.label_zh}
                for name, c in p.channels.items()
            },
        }
        for pid, p in sorted(profiles.items())
    }


@router.get("/console/profiles.json")
def profile_channels() -> JSONResponse:
    """Per shipped device profile: its names and its channels (unit, labels)."""
    return JSONResponse(_profile_channels(), headers=_NO_CACHE)


@router.get("/console/ticket-actions.json")
def ticket_actions(status: TicketStatus, role: Role) -> JSONResponse:
    """The people's actions this role may take on a ticket in this status now, from the workflow
    table itself (tickets/workflow.py): the ticket view's buttons, never a copy of the rules."""
    return JSONResponse([a.value for a in allowed_actions(status, role)], headers=_NO_CACHE)


@router.get("/console/roles.json")
def role_sets() -> JSONResponse:
    """The role sets the API's alarm and ticket endpoints declare (api/auth.py): the board shows
    acknowledge, clear and shelve only to a user holding one of `alarm_handling` (an admin holds
    them all). The order of `roles` is the order the page lists a user's roles in."""
    return JSONResponse(
        {
            "roles": [r.value for r in Role],
            "alarm_handling": [r.value for r in ALARM_HANDLING],
            "ticket_work": [r.value for r in TICKET_WORK],
        },
        headers=_NO_CACHE,
    )


@router.get("/console/people.json", dependencies=[READING])
def people(ctx: Ctx) -> JSONResponse:
    """User name -> display name, for the users who have one: histories name people as they sign."""
    names = {u.name: u.display_name for u in accounts_of(ctx).list_users() if u.display_name}
    return JSONResponse(names, headers=_NO_CACHE)


def mount(app: FastAPI) -> None:
    """Serve the console at `/` and `/console`, its files under `/static/`. Idempotent."""
    if any(getattr(r, "name", None) == "console-static" for r in app.routes):
        return
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="console-static")
