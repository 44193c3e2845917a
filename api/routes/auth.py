"""Sign-in: a person trades a user name and password for a session token."""

from __future__ import annotations

import asyncio
import math

from fastapi import APIRouter, HTTPException, Request, Response

from accounts.model import (
    AccountError,
    AuthError,
    DemoAccountRefusedError,
    Principal,
    TokenKind,
    TooManyAttemptsError,
)
from api.account_schemas import LoginIn, LoginOut, MeOut, PasswordChangeIn
from api.audit import LOGIN_ACTOR
from api.auth import SignedIn, accounts_of
from api.deps import Ctx
from api.problems import responses
from core.domain import Role

router = APIRouter(prefix="/auth", tags=["auth"])


def me_out(p: Principal, display_name: str = "") -> MeOut:
    roles = sorted(p.roles, key=list(Role).index)
    return MeOut(name=p.name, display_name=display_name, roles=roles, via=p.via, expires_at=p.expires_at)


@router.post("/login", operation_id="login", responses=responses(401, 403, 429))
async def login(body: LoginIn, request: Request, ctx: Ctx) -> LoginOut:
    """A session token for the console or a script, valid for `auth.session_ttl_s` (a shift by
    default). Wrong name or password is 401 without saying which. Repeated failures from one
    client address wait (429 with Retry-After): per account, and for all accounts together."""
    setattr(request.state, LOGIN_ACTOR, body.username)
    accounts = accounts_of(ctx)
    address = request.client.host if request.client else ""
    try:
        issued, principal = await asyncio.to_thread(
            accounts.login, body.username, body.password.get_secret_value(), address
        )
    except TooManyAttemptsError as exc:
        # Whole seconds, rounded up: a client that waits exactly Retry-After is let through.
        wait = max(1, math.ceil(exc.retry_after_s))
        raise HTTPException(429, str(exc), headers={"Retry-After": str(wait)}) from None
    except DemoAccountRefusedError as exc:
        raise HTTPException(403, str(exc)) from None
    except AuthError as exc:
        raise HTTPException(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from None
    request.state.principal = principal
    user = await asyncio.to_thread(accounts.get_user, principal.name)
    assert issued.expires_at is not None
    return LoginOut(
        token=issued.token, expires_at=issued.expires_at, user=me_out(principal, user.display_name)
    )


@router.post("/logout", operation_id="logout", status_code=204, responses=responses(401, 403, 409))
async def logout(who: SignedIn, ctx: Ctx) -> Response:
    """End this session. An API key is not a session: signing out with one is 409 and the key
    keeps working (an admin revokes keys: DELETE /api/v1/api-keys/{key_id})."""
    if who.via is not TokenKind.SESSION:
        raise HTTPException(
            409,
            "an API key is not a session and cannot sign out; it stays valid. An admin revokes it "
            "with DELETE /api/v1/api-keys/{key_id} or `firewatch api-keys revoke KEY_ID`",
        )
    await asyncio.to_thread(accounts_of(ctx).logout, who.token_id)
    return Response(status_code=204)


@router.get("/me", operation_id="whoami", responses=responses(401, 403))
async def whoami(who: SignedIn, ctx: Ctx) -> MeOut:
    display = ""
    if who.via.value == "session":
        display = (await asyncio.to_thread(accounts_of(ctx).get_user, who.name)).display_name
    return me_out(who, display)


@router.put("/password", operation_id="change_password", status_code=204, responses=responses(401, 403, 422))
async def change_password(body: PasswordChangeIn, who: SignedIn, ctx: Ctx) -> Response:
    """Change your own password. Every session of yours ends, this one too: sign in again."""
    if who.via.value != "session":
        raise HTTPException(403, "an API key has no password")
    try:
        await asyncio.to_thread(
            accounts_of(ctx).change_own_password,
            who.name,
            body.current.get_secret_value(),
            body.new.get_secret_value(),
        )
    except AccountError as exc:
        raise HTTPException(422, str(exc)) from None
    return Response(status_code=204)
