"""Incidents at the API's edge: what `/api/v1/incidents` answers and what its steps accept."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from api.schemas import AlarmOut
from core.domain import (
    AlarmCategory,
    DeviceEventKind,
    FalseAlarmCause,
    IncidentAction,
    IncidentKind,
    IncidentState,
    Severity,
    Verification,
)


class IncidentOut(BaseModel):
    """One incident (火情/事件): its alarms grouped by place and time, handled as one."""

    model_config = ConfigDict(from_attributes=True)
    id: int
    kind: IncidentKind
    category: AlarmCategory = Field(description="the worst category of its alarms")
    severity: Severity
    site: str
    place: str = Field(description="the deepest place holding all its alarms: zone, floor, building")
    place_name: str = Field(default="", description="the place in words, e.g. 住院楼 3层 东区")
    places: list[str] = Field(description="its alarms' places, in the order they joined")
    zones: list[str] = Field(description="zones it reached, in order")
    floors: list[str] = Field(description="floors it reached, in order")
    state: IncidentState
    first_alarm_id: int
    alarm_count: int
    device_count: int
    active_count: int = Field(description="its alarms still active (a fire alarm stays active until reset)")
    zone_confirmed_ts: float | None = Field(description="two detectors of one zone confirmed the fire")
    first_ts: float = Field(description="its first alarm's time")
    last_ts: float
    opened_ts: float
    fire_ts: float | None = Field(description="when it first held a fire alarm")
    acked_ts: float | None
    acked_by: str | None
    ack_note: str
    verification: Verification
    verifier: str | None = Field(description="who went to check (核实中)")
    verifying_ts: float | None
    verdict_ts: float | None
    verdict_by: str | None
    cause: FalseAlarmCause | None = Field(description="a false alarm's cause")
    verdict_note: str
    verify_due_ts: float | None = Field(
        description="a fire not verified by then escalates to the leader on call"
    )
    verify_overdue_ts: float | None
    call_119_ts: float | None = Field(description="when 119 was called (recorded by a person)")
    call_119_by: str | None
    call_119_note: str
    reset_ts: float | None
    reset_by: str | None
    ended_ts: float | None = Field(description="when its last active alarm ended")
    closed_ts: float | None
    escalation: str | None
    escalation_step: int
    drill_id: int | None = Field(default=None, description="the drill (演练) it belongs to")
    call_119_due: bool = Field(
        default=False, description="a confirmed fire whose 119 call is not recorded yet: prompt for it"
    )


class IncidentEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    ts: float
    action: IncidentAction
    actor: str
    note: str
    alarm_id: int | None
    targets: list[str] = Field(default_factory=list, description="duty roles it was addressed to")


class PanelEventOut(BaseModel):
    """What a fire alarm panel reported in the incident's building while it lasted (GB/T 26875.3):
    linkage started or stopped, its feedback, a delay, an operation at the panel."""

    device_id: str
    ts: float
    event: DeviceEventKind
    code: int | None = Field(default=None, description="the status word or the operation's flags")
    channel: str | None = Field(default=None, description="for an operation: the operator")


class IncidentDetailOut(IncidentOut):
    alarms: list[AlarmOut]
    devices: list[str] = Field(
        default_factory=list, description="an outage's devices: every device silent in it (empty otherwise)"
    )
    timeline: list[IncidentEventOut]
    panel_events: list[PanelEventOut] = Field(
        default_factory=list,
        description="linkage, feedback, delays and panel operations in its building from its first alarm "
        "to its end, oldest first (from the panels' points' event logs)",
    )


class IncidentWithAlarmsOut(IncidentOut):
    alarms: list[AlarmOut]


class IncidentStepOut(BaseModel):
    """The step just taken, with the incident as it now stands."""

    event_id: int
    action: IncidentAction
    actor: str
    ts: float
    note: str
    targets: list[str]
    incident: IncidentOut


class IncidentNoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = Field(default="", max_length=2000)


class VerifyIn(BaseModel):
    """核实中: who went to check (default: the caller)."""

    model_config = ConfigDict(extra="forbid")
    verifier: str = Field(default="", max_length=100, description="e.g. 微型消防站 王五")
    note: str = Field(default="", max_length=2000)


class VerdictIn(BaseModel):
    """The verdict: 真实火警 (confirmed), 误报 (false_alarm, with its cause) or 测试 (test)."""

    model_config = ConfigDict(extra="forbid")
    verdict: Verification = Field(description="confirmed, false_alarm or test")
    cause: FalseAlarmCause | None = Field(default=None, description="required for a false alarm")
    note: str = Field(default="", max_length=2000)


class Call119In(BaseModel):
    """When 119 was called (default: now), by the caller."""

    model_config = ConfigDict(extra="forbid")
    at: float | None = Field(default=None, ge=0, le=1e11, description="epoch seconds; default now")
    note: str = Field(default="", max_length=2000, description="e.g. 接警员工号、出动情况")
