"""Alarms the state store has not recorded yet (alarms/unrecorded.py), served from memory.

While the state store fails, fire alarms still reach the control room: live on the streams as
transitions with `recorded: false`, and here for a console that (re)loads its board. Each is
replaced by the recorded alarm once the store is back.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.auth import READING
from api.deps import Ctx
from api.problems import responses
from api.schemas import AlarmTextOut
from core.domain import AlarmCategory, AlarmState, Severity

router = APIRouter(prefix="/alarms", tags=["alarms"])


class UnrecordedAlarmOut(AlarmTextOut):
    """An alarm detected while the state store could not record it: no id yet."""

    recorded: bool = Field(False, description="always false here")
    device_id: str
    alarm_type: str
    category: AlarmCategory
    severity: Severity
    system: str
    site: str
    place: str
    department: str = ""
    state: AlarmState
    occurrences: int
    first_ts: float
    last_ts: float
    raised_ts: float
    cleared_ts: float | None = None
    value: float | None = None
    peak: float | None = None
    channel: str | None = None
    detail: str = ""
    basis: str = ""


class UnrecordedOut(BaseModel):
    items: list[UnrecordedAlarmOut]
    storage_failing: bool = Field(description="the state store is failing now")


@router.get(
    "/unrecorded",
    operation_id="list_unrecorded_alarms",
    dependencies=[READING],
    responses=responses(401, 403),
)
def list_unrecorded_alarms(ctx: Ctx) -> UnrecordedOut:
    """Alarms detected while the state store could not record them, fire first, newest first.
    Empty in normal operation; served from memory, so it answers while the store is down."""
    items: list[dict[str, Any]] = ctx.unrecorded() if ctx.unrecorded is not None else []
    failing = ctx.storage_failing() if ctx.storage_failing is not None else False
    return UnrecordedOut(items=[UnrecordedAlarmOut.model_validate(a) for a in items], storage_failing=failing)
