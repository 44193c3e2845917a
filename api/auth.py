"""Who may call what: bearer-token authentication and the role each endpoint declares.

Every operation declares its roles as the scopes of its security requirement, so the OpenAPI
document says who may call it (OpenAPI 3.1 allows role names there for any scheme). Reading is
open to every signed-in role (`viewer`); an admin may do everything. Tokens come in the
`Authorization: Bearer` header; the live streams also take `access_token` in the query, because
neither a browser's EventSource nor its WebSocket can set headers (the access log redacts it).
"""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any

from fastapi import HTTPException, Request, Security, WebSocket
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes

from accounts.model import AuthError, DemoAccountRefusedError, Principal
from accounts.service import AccountService
from api.context import AppContext
from core.domain import Role

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="`Authorization: Bearer <token>`: a login session (POST /api/v1/auth/login) or an "
    "API key issued by an admin. The scopes listed on an operation are the roles that may call it.",
)

# The role sets endpoints declare (DESIGN §7). Admin is listed for the reader of the document; it
# passes every check anyway.
READ = (Role.VIEWER,)
ALARM_HANDLING = (Role.OPERATOR, Role.SAFETY, Role.ADMIN)  # acknowledge, clear, shelve, close
MAINTENANCE_WINDOWS = (Role.MAINTENANCE, Role.SAFETY, Role.ADMIN)
TICKET_WORK = (Role.OPERATOR, Role.MAINTENANCE, Role.SAFETY, Role.LEADER, Role.ADMIN)  # the workflow decides
AUDIT_READ = (Role.SAFETY, Role.ADMIN)
ADMIN = (Role.ADMIN,)
SIGNED_IN = (Role.VIEWER,)  # any account: its own session, its own password


def accounts_of(ctx: AppContext) -> AccountService:
    if ctx.accounts is None:
        raise HTTPException(503, "accounts are not available in this process")
    return ctx.accounts


def identify(ctx: AppContext, token: str | None) -> Principal:
    """The principal behind a token: 401 when there is none or it is not valid (403 for a demo
    account outside demo mode)."""
    if not token:
        raise HTTPException(
            401,
            "sign in first: send `Authorization: Bearer <token>` (POST /api/v1/auth/login gives one)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    try:
        return accounts_of(ctx).resolve(token)
    except DemoAccountRefusedError as exc:
        raise HTTPException(403, str(exc)) from None
    except AuthError as exc:
        raise HTTPException(
            401, str(exc), headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
        ) from None


def authorize(principal: Principal, needed: list[str]) -> Principal:
    """403 unless the principal holds one of the needed roles."""
    if not principal.may(needed):
        raise HTTPException(
            403,
            f"{principal.name} ({principal.role_text}) may not do this: it needs one of the roles "
            f"{', '.join(needed)}",
        )
    return principal


def _admit(request: Request, token: str | None, needed: list[str]) -> Principal:
    principal = identify(request.app.state.ctx, token)
    request.state.principal = principal  # for the audit (api/audit.py), refusals included
    return authorize(principal, needed)


def authenticate(
    request: Request,
    scopes: SecurityScopes,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> Principal:
    return _admit(request, credentials.credentials if credentials else None, scopes.scopes)


def authenticate_stream(
    request: Request,
    scopes: SecurityScopes,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> Principal:
    """Like `authenticate`, and also takes `access_token` from the query (EventSource)."""
    token = credentials.credentials if credentials else request.query_params.get("access_token")
    return _admit(request, token, scopes.scopes)


def authenticate_websocket(websocket: WebSocket, needed: list[str]) -> Principal:
    """A WebSocket's principal: the Authorization header, else `access_token` in the query."""
    ctx: AppContext = websocket.app.state.ctx
    header = websocket.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    token = value.strip() if scheme.lower() == "bearer" else websocket.query_params.get("access_token")
    return authorize(identify(ctx, token), needed)


def roles(*allowed: Role) -> Any:
    """The dependency an endpoint declares: `who: Annotated[Principal, roles(Role.OPERATOR)]`."""
    return Security(authenticate, scopes=[r.value for r in allowed])


Reader = Annotated[Principal, roles(*READ)]
AlarmHandler = Annotated[Principal, roles(*ALARM_HANDLING)]
MaintenanceDeclarer = Annotated[Principal, roles(*MAINTENANCE_WINDOWS)]
TicketWorker = Annotated[Principal, roles(*TICKET_WORK)]
AuditReader = Annotated[Principal, roles(*AUDIT_READ)]
Admin = Annotated[Principal, roles(*ADMIN)]
SignedIn = Annotated[Principal, roles(*SIGNED_IN)]
StreamReader = Annotated[Principal, Security(authenticate_stream, scopes=[r.value for r in READ])]

# For routes that need the role check but not the principal: `dependencies=[READING]`.
READING = roles(*READ)
ADMINISTERING = roles(*ADMIN)


_TOKEN_IN_QUERY = re.compile(r"(access_token=)[^&\s]+")


class RedactTokens(logging.Filter):
    """Secrets are never logged: hide `access_token` in the access log's request lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN_IN_QUERY.sub(r"\1[redacted]", a) if isinstance(a, str) else a for a in record.args
            )
        elif isinstance(record.msg, str):
            record.msg = _TOKEN_IN_QUERY.sub(r"\1[redacted]", record.msg)
        return True


def redact_access_log() -> None:
    # uvicorn logs HTTP requests on uvicorn.access, and WebSocket handshakes, with their query, on
    # uvicorn.error at INFO.
    for name in ("uvicorn.access", "uvicorn.error"):
        log = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in log.filters):
            log.addFilter(RedactTokens())
