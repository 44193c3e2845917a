"""Accounts, administered: people (users) and integrations (API keys). Admin only."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import APIRouter, HTTPException, Path, Response

from accounts.model import AccountError, AccountExistsError, AccountNotFoundError, ApiKeyInfo, UserInfo
from accounts.service import NAME_RE
from api.account_schemas import ApiKeyIn, ApiKeyIssuedOut, ApiKeyOut, UserIn, UserOut, UserPatch
from api.auth import Admin, accounts_of
from api.deps import Ctx, PageParams, RowId
from api.problems import responses
from api.schemas import Page

router = APIRouter(tags=["users"])
T = TypeVar("T")
UserName = Annotated[str, Path(pattern=NAME_RE, description="the sign-in name")]


async def _run(work: Callable[[], T]) -> T:
    try:
        return await asyncio.to_thread(work)
    except AccountNotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
    except AccountExistsError as exc:
        raise HTTPException(409, str(exc)) from None
    except AccountError as exc:
        raise HTTPException(422, str(exc)) from None


def _user(u: UserInfo) -> UserOut:
    return UserOut.model_validate(u)


def _key(k: ApiKeyInfo) -> ApiKeyOut:
    return ApiKeyOut.model_validate(k)


@router.get("/users", operation_id="list_users", responses=responses(401, 403))
async def list_users(_who: Admin, ctx: Ctx, page: PageParams) -> Page[UserOut]:
    users = await _run(accounts_of(ctx).list_users)
    chosen = users[page.offset : page.offset + page.limit]
    return Page(items=[_user(u) for u in chosen], total=len(users), limit=page.limit, offset=page.offset)


@router.post("/users", operation_id="create_user", status_code=201, responses=responses(401, 403, 409, 422))
async def create_user(body: UserIn, _who: Admin, ctx: Ctx) -> UserOut:
    """A person who signs in. The password must have at least 10 characters and not be a default
    or common one; the user can change it (PUT /api/v1/auth/password)."""
    accounts = accounts_of(ctx)
    password = body.password.get_secret_value()
    return _user(
        await _run(
            lambda: accounts.create_user(body.name, password, body.roles, display_name=body.display_name)
        )
    )


@router.get("/users/{name}", operation_id="get_user", responses=responses(401, 403, 404))
async def get_user(name: UserName, _who: Admin, ctx: Ctx) -> UserOut:
    return _user(await _run(lambda: accounts_of(ctx).get_user(name)))


@router.patch("/users/{name}", operation_id="update_user", responses=responses(401, 403, 404, 422))
async def update_user(name: UserName, body: UserPatch, who: Admin, ctx: Ctx) -> UserOut:
    """Change roles or name, disable (their sessions end at once) or re-enable, or set a new
    password (their sessions end). An admin cannot disable or demote themself: ask another admin."""
    accounts = accounts_of(ctx)
    if name == who.name and (body.disabled or (body.roles is not None and "admin" not in body.roles)):
        raise HTTPException(422, "you cannot disable yourself or drop your own admin role")
    if body.password is not None:
        password = body.password.get_secret_value()
        await _run(lambda: accounts.set_password(name, password))
    return _user(
        await _run(
            lambda: accounts.update_user(
                name, roles=body.roles, display_name=body.display_name, disabled=body.disabled
            )
        )
    )


@router.get("/api-keys", operation_id="list_api_keys", responses=responses(401, 403))
async def list_api_keys(_who: Admin, ctx: Ctx, page: PageParams, revoked: bool = False) -> Page[ApiKeyOut]:
    """Keys for integrations (a BMS gateway, a reporting job). `revoked=true` includes revoked ones."""
    keys = await _run(lambda: accounts_of(ctx).list_api_keys(include_revoked=revoked))
    chosen = keys[page.offset : page.offset + page.limit]
    return Page(items=[_key(k) for k in chosen], total=len(keys), limit=page.limit, offset=page.offset)


@router.post(
    "/api-keys", operation_id="create_api_key", status_code=201, responses=responses(401, 403, 409, 422)
)
async def create_api_key(body: ApiKeyIn, who: Admin, ctx: Ctx) -> ApiKeyIssuedOut:
    """Issue a key with the roles the integration needs (viewer to read, operator to acknowledge
    ...). The key is in this response only: it is stored as a digest and cannot be shown again."""
    accounts = accounts_of(ctx)
    issued, info = await _run(
        lambda: accounts.create_api_key(body.name, body.roles, by=who.name, expires_at=body.expires_at)
    )
    return ApiKeyIssuedOut(key=_key(info), token=issued.token)


@router.delete(
    "/api-keys/{key_id}", operation_id="revoke_api_key", status_code=204, responses=responses(401, 403, 404)
)
async def revoke_api_key(key_id: RowId, _who: Admin, ctx: Ctx) -> Response:
    """Revoke a key: it stops working at once."""
    await _run(lambda: accounts_of(ctx).revoke_api_key(key_id))
    return Response(status_code=204)
