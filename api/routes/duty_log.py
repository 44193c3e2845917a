"""The duty log (值班记录) of the fire control room: the people on duty write it, everyone signed in
reads and searches it (GB 25506-2010 asks for duty records). Entries are never edited or deleted."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query

from accounts.model import Principal
from alarms import duty_log
from alarms.duty_log import DutyLogKind, LogFilter
from alarms.handover import DUTY_ROLES
from api.auth import READING, roles
from api.deps import Ctx, DbSession, PageParams, page_of
from api.duty_schemas import DutyLogIn, DutyLogOut
from api.problems import responses
from api.schemas import Page
from storage.db import IMMEDIATE

router = APIRouter(prefix="/duty-log", tags=["duty"])

DutyKeeper = Annotated[Principal, roles(*DUTY_ROLES)]
Time = Annotated[float | None, Query(ge=0, le=1e11)]


@router.get("", operation_id="list_duty_log", dependencies=[READING], responses=responses(401, 403))
def list_duty_log(
    db: DbSession,
    page: PageParams,
    q: Annotated[str | None, Query(min_length=1, max_length=200, description="the text contains")] = None,
    since: Annotated[Time, Query(description="written at or after (epoch s)")] = None,
    until: Annotated[Time, Query(description="written before (epoch s)")] = None,
    author: Annotated[str | None, Query(min_length=1, max_length=100, description="user name")] = None,
    kind: DutyLogKind | None = None,
) -> Page[DutyLogOut]:
    """The duty log, newest first, searched by text, time window, author and kind."""
    search = duty_log.search(LogFilter(text=q, since=since, until=until, author=author, kind=kind))
    return page_of(db, search, page, DutyLogOut)


@router.post("", operation_id="write_duty_log", status_code=201, responses=responses(401, 403, 422))
async def write_duty_log(body: DutyLogIn, who: DutyKeeper, ctx: Ctx) -> DutyLogOut:
    """Write an entry: its time is the service's clock now, its author the caller (their display
    name as the signature)."""

    def work() -> DutyLogOut:
        with ctx.sessions.begin() as s:
            s.connection(execution_options=IMMEDIATE)
            row = duty_log.write(
                s,
                kind=DutyLogKind(body.kind),
                text=body.text,
                author=who.name,
                author_name=who.signature,
                now=ctx.clock(),
            )
            return DutyLogOut.model_validate(row)

    return await asyncio.to_thread(work)
