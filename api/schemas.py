"""Request and response models: inputs and outputs kept separate, every field typed."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from core.domain import AlarmCategory, AlarmState, Severity, SystemType, TicketStatus

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class DeviceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    profile: str
    kind: str
    system: str
    site: str
    building: str
    floor: str
    zone: str
    room: str
    place: str
    name: str
    department: str
    responsible: str
    installed: str | None
    tags: list[str]


class DiscoveredDeviceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    device_id: str
    site: str
    first_seen: float
    last_seen: float
    messages: int


class HistoryOut(BaseModel):
    device_id: str
    channel: str
    start: float
    end: float
    buckets: int | None
    ts: list[float]
    value: list[float]
    min: list[float] | None = None
    max: list[float] | None = None
    count: list[int] | None = None


class AlarmOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    device_id: str
    alarm_type: str
    category: AlarmCategory
    severity: Severity
    system: SystemType | str
    site: str
    place: str
    state: AlarmState
    occurrences: int
    first_ts: float
    last_ts: float
    cleared_ts: float | None
    acked_ts: float | None
    acked_by: str | None
    ack_note: str | None
    false_alarm: bool
    closed_ts: float | None
    value: float | None
    peak: float | None
    channel: str | None
    detail: str
    basis: str


class AlarmEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    ts: float
    action: str
    actor: str
    note: str


class AlarmDetailOut(AlarmOut):
    events: list[AlarmEventOut]


class AcknowledgeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    actor: str = Field(min_length=1, max_length=100, description="who acknowledges (recorded)")
    note: str = Field(default="", max_length=2000, description="e.g. 'false alarm: steam from kitchen'")
    false_alarm: bool = False


class ClearIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    actor: str = Field(min_length=1, max_length=100)
    note: str = Field(default="", max_length=2000)


class TransitionOut(BaseModel):
    alarm_id: int
    action: str
    actor: str
    ts: float
    note: str
    after: AlarmOut


class TicketOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    number: str
    source: str
    status: TicketStatus
    category: AlarmCategory
    hazard_type: str
    device_id: str | None
    site: str
    place: str
    department: str
    responsible: str
    inspection_time: float
    inspectors: str
    problem: str
    measures: str
    deadline: float
    feedback: str
    feedback_signed_by: str | None
    feedback_signed_at: float | None
    confirmed_by: str | None
    confirmed_at: float | None
    leader_signed_by: str | None
    leader_signed_at: float | None
    occurrences: int
    created_at: float
    updated_at: float
    closed_at: float | None


class TicketEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    ts: float
    action: str
    actor: str
    note: str
    status_before: str | None
    status_after: str


class TicketDetailOut(TicketOut):
    events: list[TicketEventOut]
    alarm_ids: list[int]


class RejectOut(BaseModel):
    id: int
    received: float
    topic: str
    reason: str
    detail: str
    device_id: str | None
    payload_base64: str
    payload_preview: str = Field(description="the first 200 bytes as UTF-8, undecodable bytes replaced")


class RejectTotalsOut(BaseModel):
    totals: dict[str, int]
