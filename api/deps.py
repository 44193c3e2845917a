"""Shared dependencies: the context, a database session, pagination."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Query, Request
from sqlalchemy.orm import Session

from api.context import AppContext


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


Ctx = Annotated[AppContext, Depends(get_context)]
DbSession = Annotated[Session, Depends(get_session)]
PageParams = Annotated[Paging, Depends()]
