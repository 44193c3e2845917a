"""The alarm as the outside world sees it, and the transition message every consumer reads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from alarms.alarm_values import AlarmLike
from alarms.incident_values import IncidentLike
from core.domain import AlarmAction, IncidentAction
from storage.models import IncidentRow

SNAPSHOT_FIELDS = (
    "id",
    "device_id",
    "alarm_type",
    "category",
    "severity",
    "system",
    "site",
    "place",
    "state",
    "occurrences",
    "first_ts",
    "last_ts",
    "cleared_ts",
    "acked_ts",
    "acked_by",
    "ack_note",
    "false_alarm",
    "closed_ts",
    "value",
    "peak",
    "channel",
    "detail",
    "basis",
    "department",
    "false_alarms",
    "raised_ts",
    "escalation",
    "escalation_step",
    "flapping",
    "maintenance_id",
    "shelved_until",
    "shelved_by",
    "shelve_note",
    "normal_ts",
    "drill_id",
)


_SNAPSHOT_VALUES = attrgetter(*SNAPSHOT_FIELDS)


def snapshot(row: AlarmLike) -> dict[str, Any]:
    return dict(zip(SNAPSHOT_FIELDS, _SNAPSHOT_VALUES(row), strict=True))


@dataclass(frozen=True)
class Transition:
    """One change of one alarm. Stores, pushes, tickets and the console all consume this; none
    re-derives alarm state (DESIGN §4)."""

    event_id: int  # the alarm event log row: a stream consumer resumes after the last id it saw
    alarm_id: int
    action: AlarmAction
    before: dict[str, Any] | None
    after: dict[str, Any]
    actor: str
    ts: float
    note: str = ""
    targets: tuple[str, ...] = ()  # duty roles this transition is addressed to (escalation policy)
    held: str = ""  # why its notifications are held ("shelved", "flapping", "maintenance"), if they are
    # False: detected while the state store could not record it (alarms/unrecorded.py). Shown and
    # published at once with no event or alarm id (both 0); recorded, and published again as a
    # normal transition, when the store is back.
    recorded: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "alarm_id": self.alarm_id,
            "action": self.action.value,
            "actor": self.actor,
            "ts": self.ts,
            "note": self.note,
            "targets": list(self.targets),
            "held": self.held,
            "recorded": self.recorded,
            "before": self.before,
            "after": self.after,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Transition:
        """The transition `to_json` gave `d` for (what another worker's live bus carries)."""
        return cls(
            event_id=int(d["event_id"]),
            alarm_id=int(d["alarm_id"]),
            action=AlarmAction(d["action"]),
            before=d["before"],
            after=d["after"],
            actor=str(d["actor"]),
            ts=float(d["ts"]),
            note=str(d["note"]),
            targets=tuple(d["targets"]),
            held=str(d["held"]),
            recorded=bool(d["recorded"]),
        )


INCIDENT_FIELDS = (
    "id",
    "kind",
    "category",
    "severity",
    "site",
    "place",
    "places",
    "zones",
    "floors",
    "state",
    "first_alarm_id",
    "alarm_count",
    "device_count",
    "active_count",
    "zone_confirmed_ts",
    "first_ts",
    "last_ts",
    "opened_ts",
    "fire_ts",
    "acked_ts",
    "acked_by",
    "ack_note",
    "verification",
    "verifier",
    "verifying_ts",
    "verdict_ts",
    "verdict_by",
    "cause",
    "verdict_note",
    "verify_due_ts",
    "verify_overdue_ts",
    "call_119_ts",
    "call_119_by",
    "call_119_note",
    "reset_ts",
    "reset_by",
    "ended_ts",
    "closed_ts",
    "escalation",
    "escalation_step",
    "drill_id",
)


_INCIDENT_VALUES = attrgetter(*INCIDENT_FIELDS)


def incident_snapshot(row: IncidentLike) -> dict[str, Any]:
    """The incident's values that its timeline and pushes carry. An ORM row is read from its loaded
    state: each instrumented read is a Python call that returns what this dict holds, and a snapshot
    reads 40 per incident step. An attribute not loaded (expired, say) is not in it: then the
    instrumented reads, which load it, take over. The bulk path's values (alarms/incident_values.py)
    have no such state: read at once."""
    if isinstance(row, IncidentRow):
        loaded = row.__dict__
        try:
            return {name: loaded[name] for name in INCIDENT_FIELDS}
        except KeyError:
            pass
    return dict(zip(INCIDENT_FIELDS, _INCIDENT_VALUES(row), strict=True))


@dataclass(frozen=True)
class IncidentUpdate:
    """One step of one incident (a row of its timeline), for the streams, the MQTT topic and pushes.

    Streams send it as `{"type": "incident", ...}` (SSE `event: incident`) next to the alarm
    transitions; it carries the whole incident, so a client keeps the latest it saw per incident
    and, after reconnecting, reads `GET /api/v1/incidents` for the current state."""

    event_id: int  # the incident event log row
    incident_id: int
    action: IncidentAction
    after: dict[str, Any]
    actor: str
    ts: float
    note: str = ""
    targets: tuple[str, ...] = ()
    alarm_id: int | None = None  # the alarm that caused this step, if one did
    recorded: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "incident",
            "event_id": self.event_id,
            "incident_id": self.incident_id,
            "action": self.action.value,
            "actor": self.actor,
            "ts": self.ts,
            "note": self.note,
            "targets": list(self.targets),
            "alarm_id": self.alarm_id,
            "incident": self.after,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> IncidentUpdate:
        """The step `to_json` gave `d` for. `recorded` is not in the streams' shape: true unless `d`
        says otherwise (the live bus adds it)."""
        alarm_id = d["alarm_id"]
        return cls(
            event_id=int(d["event_id"]),
            incident_id=int(d["incident_id"]),
            action=IncidentAction(d["action"]),
            after=d["incident"],
            actor=str(d["actor"]),
            ts=float(d["ts"]),
            note=str(d["note"]),
            targets=tuple(d["targets"]),
            alarm_id=None if alarm_id is None else int(alarm_id),
            recorded=bool(d.get("recorded", True)),
        )
