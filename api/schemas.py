"""Request and response models: inputs and outputs kept separate, every field typed."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, computed_field, model_validator

from alarms.describe import describe
from alarms.type_names import type_en, type_zh
from core.domain import AlarmAction, AlarmCategory, AlarmState, DeviceEventKind, Severity, SystemType

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


class DeviceEventOut(BaseModel):
    """One of a device's own events, from its event log (docs/ingest.md)."""

    ts: float = Field(description="when it happened, by the device's clock")
    received: float
    event: DeviceEventKind
    code: int | None = Field(default=None, description="a fault code, a status word or operation flags")
    channel: str | None = Field(default=None, description="a channel, an operator, or an unregistered point")
    frame: str | None = Field(default=None, description="the GB/T 26875.3 frame it came in, as hex")


class AlarmTextOut(BaseModel):
    """An alarm's type and detail, with both in words for people: the console shows `type_zh` and
    `detail_zh` (or the English ones on its toggle), never the identifiers; integrations keep
    `alarm_type` and `detail` as they always were."""

    model_config = ConfigDict(from_attributes=True)
    alarm_type: str
    channel: str | None = None
    value: float | None = None
    detail: str = ""

    @computed_field(description="the alarm type in Chinese (烟雾报警), for people; `alarm_type` for programs")
    def type_zh(self) -> str:
        return type_zh(self.alarm_type)

    @computed_field(description="the alarm type in English")
    def type_en(self) -> str:
        return type_en(self.alarm_type)

    @computed_field(description="`detail` in Chinese, rendered for people (alarms/describe.py); may be empty")
    def detail_zh(self) -> str:
        return describe(self.alarm_type, self.detail, channel=self.channel, value=self.value).zh

    @computed_field(description="`detail` in English, rendered for people")
    def detail_en(self) -> str:
        return describe(self.alarm_type, self.detail, channel=self.channel, value=self.value).en


class AlarmOut(AlarmTextOut):
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
    department: str = ""
    false_alarms: int = 0
    raised_ts: float | None = None
    escalation: str | None = None
    escalation_step: int = 0
    flapping: bool = False
    maintenance_id: int | None = Field(default=None, description="raised during this maintenance window")
    shelved_until: float | None = None
    shelved_by: str | None = None
    shelve_note: str | None = None
    normal_ts: float | None = Field(
        default=None,
        description="a latched fire alarm's reading fell back to normal at this time; it stays active "
        "until reset (复位)",
    )
    drill_id: int | None = Field(default=None, description="the drill (演练) it was raised in")


class AlarmEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    ts: float
    action: AlarmAction
    actor: str
    note: str
    targets: list[str] = Field(default_factory=list, description="duty roles it was addressed to")
    held: str = Field(default="", description="why its notifications were held, if they were")


class AlarmDetailOut(AlarmOut):
    events: list[AlarmEventOut]


class AcknowledgeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = Field(default="", max_length=2000, description="e.g. 'false alarm: steam from kitchen'")
    false_alarm: StrictBool = False  # 0 or "yes" is refused, not taken for a boolean


class ClearIn(BaseModel):
    """Who acts is the signed-in caller (recorded with the note)."""

    model_config = ConfigDict(extra="forbid")
    note: str = Field(default="", max_length=2000)


class CloseIn(ClearIn):
    pass


class ResetIn(ClearIn):
    """复位: e.g. "现场核实为烹饪油烟，已复位" (recorded with who and when)."""


class ShelveIn(BaseModel):
    """Hold an alarm's notifications for a while (ISA-18.2 shelving). Never a fire alarm."""

    model_config = ConfigDict(extra="forbid")
    note: str = Field(
        min_length=1, max_length=2000, description="why (recorded): e.g. 'sensor being replaced'"
    )
    until: float | None = Field(default=None, ge=0, le=1e11, description="epoch seconds; or give duration_s")
    duration_s: float | None = Field(default=None, gt=0, le=1e7)

    @model_validator(mode="after")
    def _one_end(self) -> ShelveIn:
        if (self.until is None) == (self.duration_s is None):
            raise ValueError("give exactly one of `until` and `duration_s`")
        return self


class TransitionOut(BaseModel):
    event_id: int
    alarm_id: int
    action: AlarmAction
    actor: str
    ts: float
    note: str
    targets: list[str]
    held: str
    after: AlarmOut


class FalseAlarmsOut(BaseModel):
    device_id: str
    false_alarms: int = Field(description="acknowledgements recorded as false alarms")
    alarms: int = Field(description="alarms raised in the period")


class MaintenanceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    site: str = Field(min_length=1, max_length=64)
    place: str | None = Field(default=None, max_length=400, description="every device at or under it")
    device_ids: list[str] = Field(default_factory=list, max_length=10_000)
    start: float | None = Field(default=None, ge=0, le=1e11, description="epoch seconds; default now")
    end: float = Field(ge=0, le=1e11, description="epoch seconds: the window expires then")
    ticket_id: int | None = Field(default=None, ge=1, description="the window also ends when it closes")
    reason: str = Field(min_length=1, max_length=2000)


class MaintenanceEndIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = Field(default="", max_length=2000)


class MaintenanceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    site: str
    place: str | None
    device_ids: list[str]
    ticket_id: int | None
    reason: str
    start_ts: float
    end_ts: float
    created_by: str
    created_ts: float
    ended_ts: float | None
    ended_by: str | None
    end_note: str


class RejectOut(BaseModel):
    id: int
    received: float
    topic: str
    reason: str
    reason_zh: str = Field(description="the reason in Chinese (未登记的设备, 消息不是有效的 JSON, ...)")
    detail: str
    device_id: str | None
    payload_base64: str
    payload_preview: str = Field(description="the first 200 bytes as UTF-8, undecodable bytes replaced")


class RejectTotalsOut(BaseModel):
    totals: dict[str, int]
