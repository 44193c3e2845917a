"""Shared dependencies: the context, a database session, pagination."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from api.context import AppContext
from api.schemas import Page

OutT = TypeVar("OutT", bound=BaseModel)


def get_context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def get_session(ctx: Annotated[AppContext, Depends(get_context)]) -> Iterator[Session]:
    with ctx.sessions() as session:
        yield session


class Paging:
    def __init__(
        self,
        limit: Annotated[int, Query(ge=1, le=1000, description="page size")] = 100,
        offset: Annotated[int, Query(ge=0, le=10_000_000, description="items to skip")] = 0,
    ) -> None:
        self.limit = limit
        self.offset = offset


def page_of(db: Session, query: Select[Any], page: Paging, out: type[OutT]) -> Page[OutT]:
    """One page of an ordered query, with the total the unpaged query would return."""
    total = db.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    rows = db.scalars(query.limit(page.limit).offset(page.offset)).all()
    return Page(
        items=[out.model_validate(r) for r in rows], total=total, limit=page.limit, offset=page.offset
    )


Ctx = Annotated[AppContext, Depends(get_context)]
DbSession = Annotated[Session, Depends(get_session)]
PageParams = Annotated[Paging, Depends()]

# Row ids are 64-bit integers in both databases: a larger id in a path cannot exist, so it is
# refused as invalid (422) instead of overflowing the driver (500).
ROW_ID_MAX = 2**63 - 1
RowId = Annotated[int, Path(ge=1, le=ROW_ID_MAX, description="row id")]


MIRROR_RETRY_AFTER_S = 5


def registry_mirrored(ctx: Ctx) -> None:
    """For what reads the registry's devices and places from the state store: a 503 with Retry-After
    while a large registry's first mirror is still being written after start (alarms, tickets and
    the live streams do not wait for it; firewatch.service.Service)."""
    if ctx.mirror_ready is not None and not ctx.mirror_ready():
        raise HTTPException(
            503,
            "the registry's devices and places are still being written to the state store after start; "
            "retry shortly (alarms are detected and recorded meanwhile)",
            headers={"Retry-After": str(MIRROR_RETRY_AFTER_S)},
        )


MIRRORED = Depends(registry_mirrored)
