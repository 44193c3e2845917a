"""Output models of the places resource: each place with the worst active alarm below it.

Gas alarms (system `combustible_gas`) are kept apart from fire-side alarms everywhere: a place has
`worst` and `counts` for everything else, and `worst_gas` and `gas_counts` for gas.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from alarms.propagation import AlarmRecord, PlaceStatus
from core.domain import AlarmCategory, AlarmState, Severity
from core.registry import PlaceKind


class WorstAlarmOut(BaseModel):
    id: int
    device_id: str
    alarm_type: str
    category: AlarmCategory
    severity: Severity
    system: str
    state: AlarmState
    place: str = Field(description="where the alarm is: the device's place, at or below this place")
    first_ts: float

    @classmethod
    def of(cls, a: AlarmRecord | None) -> WorstAlarmOut | None:
        if a is None:
            return None
        return cls(
            id=a.id,
            device_id=a.device_id,
            alarm_type=a.alarm_type,
            category=a.category,
            severity=a.severity,
            system=a.system,
            state=a.state,
            place=a.place,
            first_ts=a.first_ts,
        )


class PlaceStatusOut(BaseModel):
    worst: WorstAlarmOut | None = Field(description="worst active alarm at or below, gas excepted")
    worst_gas: WorstAlarmOut | None = Field(description="worst active combustible-gas alarm at or below")
    active: int = Field(description="active alarms at or below, gas excepted")
    gas_active: int = Field(description="active combustible-gas alarms at or below")
    counts: dict[AlarmCategory, int] = Field(description="active alarms by category, gas excepted")
    gas_counts: dict[AlarmCategory, int] = Field(description="active gas alarms by category")

    @classmethod
    def of(cls, s: PlaceStatus) -> PlaceStatusOut:
        return cls(
            worst=WorstAlarmOut.of(s.worst),
            worst_gas=WorstAlarmOut.of(s.worst_gas),
            active=s.total,
            gas_active=s.gas_total,
            counts={c: s.counts.get(c, 0) for c in AlarmCategory},
            gas_counts={c: s.gas_counts.get(c, 0) for c in AlarmCategory},
        )


class PlaceOut(BaseModel):
    path: str = Field(description="ids from the site down, e.g. sxzyy/b1/f3/z2")
    kind: PlaceKind
    site: str
    name: str
    parent: str | None
    department: str
    status: PlaceStatusOut


class PlaceDetailOut(PlaceOut):
    children: list[PlaceOut] = Field(description="the places one level down, each with its status")
