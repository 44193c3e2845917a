"""The duty log and handovers at the API's edge (`/api/v1/duty-log`, `/api/v1/handovers`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from alarms.duty_log import TEXT_MAX, DutyLogKind
from core.domain import AlarmCategory, AlarmState, IncidentKind, IncidentState, TicketStatus, Verification

# The kinds a person writes (交接班 entries are the service's own, written at a handover).
WrittenKind = Literal["patrol", "alarm_handling", "equipment", "other"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DutyLogIn(_In):
    kind: WrittenKind = Field(
        description="巡查 patrol, 报警处理 alarm_handling, 设备情况 equipment, 来访与其他 other"
    )
    text: str = Field(min_length=1, max_length=TEXT_MAX, pattern=r"\S", description="what happened")


class DutyLogOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    ts: float = Field(description="when it was written, on the service's clock")
    kind: DutyLogKind
    text: str
    author: str = Field(description="the user name")
    author_name: str = Field(description="their signature: the display name")
    handover_id: int | None = Field(description="written by the service at this handover")


class HandoverStartIn(_In):
    notes: str = Field(default="", max_length=TEXT_MAX, description="the outgoing person's notes (交班说明)")
    incoming: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="the user name of the person taking over, if known: then only they may countersign",
    )
    shift_start: float | None = Field(
        default=None,
        strict=True,  # false is not 0
        ge=0,
        le=1e11,
        description="when the shift handed over began; default: the last countersignature (else 12 h ago)",
    )


class CountersignIn(_In):
    """The incoming person signs: with their user name and password typed at the shared screen, or
    with neither, as the signed-in caller."""

    username: str | None = Field(default=None, min_length=1, max_length=64)
    password: SecretStr | None = Field(default=None, min_length=1, max_length=256)
    note: str = Field(default="", max_length=2000, description="the incoming person's note (接班说明)")

    @model_validator(mode="after")
    def _both_or_neither(self) -> CountersignIn:
        if (self.username is None) != (self.password is None):
            raise ValueError("give both the incoming person's username and password, or neither")
        return self


class SnapshotCountsOut(BaseModel):
    incidents: int = Field(description="open incidents (not closed)")
    unacknowledged: int = Field(description="alarms not acknowledged, active or cleared")
    disabled: int = Field(description="points disabled at their panel (屏蔽), still disabled")
    faults: int = Field(description="faults present")
    overdue_tickets: int = Field(description="tickets past their deadline, not closed")


class SnapshotIncidentOut(BaseModel):
    id: int
    kind: IncidentKind
    category: AlarmCategory
    state: IncidentState
    verification: Verification
    place: str
    place_name: str
    opened_ts: float
    acked_by: str | None
    alarm_count: int


class SnapshotAlarmOut(BaseModel):
    id: int
    device_id: str
    alarm_type: str
    type_name: str = Field(description="the alarm's type in Chinese")
    category: AlarmCategory
    state: AlarmState
    place: str
    place_name: str
    first_ts: float


class SnapshotTicketOut(BaseModel):
    id: int
    number: str
    status: TicketStatus
    category: AlarmCategory
    place: str
    place_name: str
    problem: str
    deadline: float


class SnapshotOut(BaseModel):
    """What was open when the handover started, as taken then (never recomputed)."""

    taken_ts: float
    counts: SnapshotCountsOut
    incidents: list[SnapshotIncidentOut]
    unacknowledged: list[SnapshotAlarmOut]
    disabled: list[SnapshotAlarmOut]
    faults: list[SnapshotAlarmOut]
    overdue_tickets: list[SnapshotTicketOut]
    truncated: bool = Field(description="a list holds fewer items than its count (at most 500 each)")


class HandoverSummaryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    shift_start: float
    started_ts: float = Field(description="when the outgoing person started it (交班签字)")
    outgoing: str
    outgoing_name: str
    notes: str
    incoming_expected: str | None
    incoming: str | None
    incoming_name: str | None
    countersigned_ts: float | None = Field(description="when the incoming person countersigned (接班签字)")
    countersigned_via: Literal["password", "session"] | None
    incoming_note: str
    counts: SnapshotCountsOut


class HandoverOut(HandoverSummaryOut):
    snapshot: SnapshotOut
