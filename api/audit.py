"""The audit trail of human actions: who, when, what, from where (DESIGN §7).

Every request that changes something (POST, PUT, PATCH, DELETE) by a signed-in caller is recorded
when its response starts, before the client sees the outcome: the caller's name and roles, the
operation and path, the status, and the client's address. Refused attempts (403, 409, 422) are
recorded too. Sign-in attempts are recorded under the name tried. Request bodies are not: they may
hold passwords, and the domain logs (alarm events, ticket events) keep the notes themselves.

Changes refused to callers who are not signed in (401, failed sign-ins, 429) are recorded too,
but bounded, since anyone can send them: at most `PER_ADDRESS` rows per client address and
`OVERALL` rows in all per `WINDOW_S`. The rest are counted, and the first such request after the
window ends writes one summary row (`unrecorded_refusals`) with the counts per address.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from time import monotonic
from typing import Any

from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from accounts import tokens
from accounts.model import Principal
from api.context import AppContext
from storage.db import IMMEDIATE
from storage.models import AuditRow

logger = logging.getLogger(__name__)

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOGIN_ACTOR = "audit_actor"  # request.state key: the user name a sign-in attempt gave
NOT_SIGNED_IN = "(not signed in)"  # the actor of a refusal that names nobody

# The bound on refusals to callers who are not signed in (anyone can send those).
WINDOW_S = 60.0
PER_ADDRESS = 10
OVERALL = 100
SUMMARY_ADDRESSES = 50  # the addresses a summary row names, most refused first
TRACKED_ADDRESSES = 10_000  # addresses counted per window; the rest are counted together


class RefusalBudget:
    """How many anonymous refusals may still be written in this window, and what was not."""

    def __init__(
        self, per_address: int = PER_ADDRESS, overall: int = OVERALL, window_s: float = WINDOW_S
    ) -> None:
        self.per_address = per_address
        self.overall = overall
        self.window_s = window_s
        self._lock = threading.Lock()
        self._window_start = 0.0
        self._written: dict[str, int] = {}
        self._written_total = 0
        self._skipped: dict[str, int] = {}

    def admit(self, address: str, now: float) -> tuple[bool, dict[str, Any] | None]:
        """Whether to write this refusal, and the summary of the window that just ended (if it
        left any refusal unwritten) to write first."""
        with self._lock:
            summary = None
            if now - self._window_start >= self.window_s:
                if self._skipped:
                    summary = self._summary()
                self._window_start = now
                self._written, self._written_total, self._skipped = {}, 0, {}
            written = self._written.get(address, 0)
            if written < self.per_address and self._written_total < self.overall:
                self._written[address] = written + 1
                self._written_total += 1
                return True, summary
            key = address if address in self._skipped or len(self._skipped) < TRACKED_ADDRESSES else "other"
            self._skipped[key] = self._skipped.get(key, 0) + 1
            return False, summary

    def _summary(self) -> dict[str, Any]:
        worst = sorted(self._skipped.items(), key=lambda kv: -kv[1])
        return {
            "window_s": self.window_s,
            "unrecorded": sum(self._skipped.values()),
            "addresses": len(self._skipped),
            "by_address": dict(worst[:SUMMARY_ADDRESSES]),
        }


class AuditMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.refusals = RefusalBudget()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in MUTATING:
            await self.app(scope, receive, send)
            return

        async def send_audited(message: Message) -> None:
            if message["type"] == "http.response.start":
                entry = audit_entry(scope, int(message["status"]))
                signed_in = entry is not None and "via" in entry["detail"]
                if entry is not None and not signed_in and entry["detail"]["status"] >= 400:
                    # Refused to someone not signed in: bounded (RefusalBudget).
                    admitted, summary = self.refusals.admit(entry["source"], monotonic())
                    if summary is not None:
                        await _write(scope, summary_entry(summary))
                    if not admitted:
                        entry = None
                if entry is not None:
                    await _write(scope, entry)
            await send(message)

        await self.app(scope, receive, send_audited)


def audit_entry(scope: Scope, status: int) -> dict[str, Any] | None:
    """What to record for this request, or None when nobody signed in (nothing to attribute)."""
    state: dict[str, Any] = scope.get("state") or {}
    principal: Principal | None = state.get("principal")
    tried: str | None = state.get(LOGIN_ACTOR)
    if principal is None and tried is None and status != 401:
        return None  # nothing to attribute: a 401 is the exception (who tried is worth knowing)
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
    elif status == 401:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            detail["token_hint"] = tokens.hint(token.strip())  # which stale token, never the token
    actor = principal.name if principal is not None else str(tried) if tried is not None else NOT_SIGNED_IN
    return {
        "actor": actor[:100],
        "role": principal.role_text if principal is not None else "",
        "action": (operation or f"{scope['method']} {scope['path']}")[:64],
        "subject": str(scope["path"])[:400],
        "source": (client[0] if client else "")[:100],
        "detail": detail,
    }


def summary_entry(summary: dict[str, Any]) -> dict[str, Any]:
    return {
        "actor": NOT_SIGNED_IN,
        "role": "",
        "action": "unrecorded_refusals",
        "subject": "",
        "source": "",
        "detail": summary,
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
