"""Request and response models of the roster API (值班表, docs/duty.md). Inputs forbid unknown
fields and bound every string, so bad input is a 422 naming the field."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from accounts.service import NAME_RE
from roster.addresses import MAX_ADDRESSES
from roster.rules import ROLE_PATTERN

Address = Annotated[str, Field(min_length=3, max_length=1000)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MemberIn(_In):
    user: str = Field(pattern=NAME_RE, description="the person's sign-in name")
    role: str = Field(
        pattern=ROLE_PATTERN,
        max_length=64,
        description="duty role: control_room (消防控制室), micro_fire_station (微型消防站), "
        "leader_on_call (值班领导) or a site's own",
    )


class ShiftIn(_In):
    name: str = Field(min_length=1, max_length=32, description="班次, e.g. 白班, 夜班")
    start_ts: float = Field(ge=0, le=1e11, allow_inf_nan=False, description="start, service clock")
    end_ts: float = Field(ge=0, le=1e11, allow_inf_nan=False, description="end (exclusive)")
    members: list[MemberIn] = Field(max_length=100)
    note: str = Field(default="", max_length=200)


class MemberOut(BaseModel):
    user: str
    display_name: str
    role: str
    role_zh: str = Field(description="the duty role in Chinese")
    phone: str | None = Field(description="null for roles that may not see phone numbers")


class ShiftOut(BaseModel):
    id: int
    name: str
    start_ts: float
    end_ts: float
    note: str
    updated_ts: float
    updated_by: str
    members: list[MemberOut]


class ShiftSaved(BaseModel):
    shift: ShiftOut
    warnings: list[str] = Field(description="what is allowed but worth a look: a gap before or after")


class GapOut(BaseModel):
    start_ts: float
    end_ts: float


class RosterOut(BaseModel):
    start: float
    end: float
    shifts: list[ShiftOut]
    gaps: list[GapOut] = Field(description="stretches of the window no shift covers: nobody on duty")


class RosterNowOut(BaseModel):
    now: float = Field(description="the service clock")
    covered: bool = Field(description="false: a gap, nobody is on duty now")
    shift: ShiftOut | None
    next_shift: ShiftOut | None
    message: str = Field(description="in Chinese: who is on duty, or that nobody is")


class ContactIn(_In):
    phone: str = Field(default="", max_length=32, pattern=r"^[0-9+\- ()]*$")
    addresses: list[Address] = Field(
        default_factory=list,
        max_length=MAX_ADDRESSES,
        description="Apprise URLs (json://, mailto://, an SMS gateway ...): secrets, shown only here",
    )


class ContactOut(BaseModel):
    user: str
    display_name: str
    phone: str
    addresses: list[str]


class ImportOut(BaseModel):
    created: list[ShiftOut]
