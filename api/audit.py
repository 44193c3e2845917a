"""The audit trail of human actions: who, when, what, from where (DESIGN §7).

Every request that changes something (POST, PUT, PATCH, DELETE) by a signed-in caller is recorded
when its response starts, before the client sees the outcome: the caller's name and roles, the
operation and path, the status, and the client's address. Refused attempts (403, 409, 422) are
recorded too. Sign-in attempts are recorded under the name tried. Request bodies are not: they may
hold passwords, and the domain logs (alarm events, ticket events) keep the notes themselves.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from accounts.model import Principal
from api.context import AppContext
from storage.db import IMMEDIATE
from storage.models import AuditRow

logger = logging.getLogger(__name__)

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOGIN_ACTOR = "audit_actor"  # request.state key: the user name a sign-in attempt gave


class AuditMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in MUTATING:
            await self.app(scope, receive, send)
            return

        async def send_audited(message: Message) -> None:
            if message["type"] == "http.response.start":
                entry = audit_entry(scope, int(message["status"]))
                if entry is not None:
                    await _write(scope, entry)
            await send(message)

        await self.app(scope, receive, send_audited)


def audit_entry(scope: Scope, status: int) -> dict[str, Any] | None:
    """What to record for this request, or None when nobody signed in (nothing to attribute)."""
    state: dict[str, Any] = scope.get("state") or {}
    principal: Principal | None = state.get("principal")
    tried: str | None = state.get(LOGIN_ACTOR)
    if principal is None and tried is None:
        return None
    route = scope.get("route")
    operation = route.operation_id if isinstance(route, APIRoute) and route.operation_id else ""
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
    client = scope.get("client")
    detail: dict[str, Any] = {
        "method": scope["method"],
        "status": status,
        "path_params": {k: str(v) for k, v in (scope.get("path_params") or {}).items()},
        "user_agent": headers.get("user-agent", "")[:200],
    }
    if principal is not None:
        detail["via"] = principal.via.value
        detail["token_id"] = principal.token_id
    return {
        "actor": (principal.name if principal is not None else str(tried))[:100],
        "role": principal.role_text if principal is not None else "",
        "action": (operation or f"{scope['method']} {scope['path']}")[:64],
        "subject": str(scope["path"])[:400],
        "source": (client[0] if client else "")[:100],
        "detail": detail,
    }


async def _write(scope: Scope, entry: dict[str, Any]) -> None:
    app = scope.get("app")
    ctx: AppContext | None = getattr(getattr(app, "state", None), "ctx", None)
    if ctx is None:
        return

    def write() -> None:
        with ctx.sessions.begin() as s:
            s.connection(execution_options=IMMEDIATE)  # wait for SQLite's write lock, never fail on it
            s.add(AuditRow(ts=ctx.clock(), **entry))

    try:
        await asyncio.to_thread(write)
    except Exception:  # the action stands; a lost audit line must be loud
        logger.exception("could not write the audit record of %s by %s", entry["action"], entry["actor"])
