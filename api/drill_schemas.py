"""Drills (演练) at the API's edge: what `/api/v1/drills` accepts and answers."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from alarms.drill_report import DrillStep


class DrillStatus(StrEnum):
    PLANNED = "planned"  # its window has not begun
    ACTIVE = "active"  # fire-side alarms in its places are tagged now
    ENDED = "ended"  # its window is over (as declared, or ended early)
    CANCELLED = "cancelled"  # ended before it began


class DrillIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200, description="e.g. 住院楼 3层 夜间消防演练")
    places: list[str] = Field(
        min_length=1, max_length=50, description="place paths; each covers everything under it"
    )
    start: float | None = Field(default=None, ge=0, le=1e11, description="default: now (service clock)")
    end: float = Field(ge=0, le=1e11, description="the window's end; at most 24 h after its start")
    routes: list[str] = Field(
        default_factory=list, max_length=20, description="push route names told of its incidents"
    )
    urls: list[str] = Field(
        default_factory=list, max_length=10, description="Apprise URLs told of its incidents (secrets)"
    )
    note: str = Field(default="", max_length=2000)


class DrillEndIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = Field(default="", max_length=2000)


class DrillOut(BaseModel):
    id: int
    name: str
    site: str
    places: list[str]
    place_names: list[str] = Field(description="the places in words")
    start_ts: float
    end_ts: float = Field(description="the window's end as declared")
    ended_ts: float | None = Field(description="when it was ended early or cancelled")
    ended_by: str | None
    end_note: str
    status: DrillStatus
    routes: list[str]
    url_count: int = Field(description="how many Apprise URLs it tells (the URLs are secrets)")
    note: str
    created_by: str
    created_ts: float


class DrillStepOut(BaseModel):
    step: DrillStep = Field(
        description="acknowledged 受理, verifying 核实, verdict 结论, called_119, reset 复位"
    )
    ts: float | None
    by: str = Field(description="who, by display name")
    seconds: float | None = Field(description="from the incident's first alarm")


class DrillIncidentOut(BaseModel):
    incident_id: int
    place_name: str
    first_ts: float = Field(description="its first alarm")
    verdict: str = Field(description="the verdict in words")
    steps: list[DrillStepOut]


class DrillStepSummaryOut(BaseModel):
    step: DrillStep
    count: int = Field(description="incidents that reached this step")
    median_s: float | None
    max_s: float | None


class DrillTestEventOut(BaseModel):
    device_id: str
    place_name: str
    ts: float = Field(description="a device's own test-button event, by its clock")


class DrillReportOut(BaseModel):
    drill: DrillOut
    incidents: list[DrillIncidentOut]
    summary: list[DrillStepSummaryOut]
    actors: list[str] = Field(description="everyone who acted on its incidents, by display name")
    test_events: list[DrillTestEventOut]
