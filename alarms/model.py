"""The alarm as the outside world sees it, and the transition message every consumer reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.domain import AlarmAction
from storage.models import AlarmRow

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
)


def snapshot(row: AlarmRow) -> dict[str, Any]:
    return {name: getattr(row, name) for name in SNAPSHOT_FIELDS}


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
