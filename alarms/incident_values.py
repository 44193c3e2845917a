"""The bulk alarm path's incidents as plain values, and how they are written back.

As for the batch's alarms (alarms/alarm_values.py): `AlarmService.apply` reads the incidents a batch
touches with Core statements into these slotted objects (keeping the values the database holds),
the incident rules change them as they changed the ORM rows, and the batch's end writes what
differs: an UPDATE per set of changed columns, one INSERT for the incidents it opened (their ids
taken when they were opened, `AlarmBatch.incident_id`). An ORM row cost an instrumented call per
attribute read and set, a flush of the unit of work and the session's loading machinery per read:
most of what the incident rows added to a write that raises a fire
(docs/decisions/0011-bulk-alarm-path.md, sixth step).

Human steps on an incident (acknowledge, verify, 119, reset) and the policy clock keep the ORM rows
(`IncidentRow`): one at a time, they gain nothing. The rule code both run takes either
(`IncidentLike`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Any, cast

from sqlalchemy import JSON, Connection, Table

from alarms.driver_rows import write_changed
from storage.models import IncidentRow

INCIDENTS = cast(Table, IncidentRow.__table__)
COLUMNS: tuple[str, ...] = tuple(INCIDENTS.c.keys())
# The JSON columns (place, zone, floor and device lists), by position: encoded for the driver with
# the columns' own encoder, so the database holds the text the ORM wrote.
_JSON = frozenset(i for i, c in enumerate(INCIDENTS.c) if isinstance(c.type, JSON))


@dataclass(slots=True, eq=False)
class Incident:
    """One row of `incidents` (storage/models.py `IncidentRow`), as plain attributes in column
    order, so a selected row builds it positionally. Compared by identity, as ORM rows are."""

    id: int
    kind: str
    category: str
    severity: str
    site: str
    group_key: str
    place: str
    places: list[str]
    zones: list[str]
    floors: list[str]
    state: str
    first_alarm_id: int
    alarm_count: int
    device_count: int
    active_count: int
    zone_confirmed_ts: float | None
    devices: list[str]
    first_ts: float
    last_ts: float
    opened_ts: float
    fire_ts: float | None
    acked_ts: float | None
    acked_by: str | None
    ack_note: str
    verification: str
    verifier: str | None
    verifying_ts: float | None
    verdict_ts: float | None
    verdict_by: str | None
    cause: str | None
    verdict_note: str
    verify_due_ts: float | None
    verify_overdue_ts: float | None
    call_119_ts: float | None
    call_119_by: str | None
    call_119_note: str
    reset_ts: float | None
    reset_by: str | None
    ended_ts: float | None
    closed_ts: float | None
    notified: bool
    escalation: str | None
    escalation_step: int
    escalate_at: float | None
    remind_at: float | None
    drill_id: int | None


# Built positionally from a row of `select(INCIDENTS)`: the two orders must be one.
if tuple(f.name for f in fields(Incident)) != COLUMNS:
    raise AssertionError("Incident's fields must be IncidentRow's columns, in table order")

IncidentLike = IncidentRow | Incident  # what the incident rules shared by both paths take

values_of = attrgetter(*COLUMNS)


def held(inc: Incident) -> tuple[Any, ...]:
    """The values the database holds once `inc` is written: its lists copied, so that a list the
    rules changed in place would still differ from them (they assign new lists; this is a guard)."""
    return tuple(list(v) if isinstance(v, list) else v for v in values_of(inc))


def write(conn: Connection, incidents: list[Incident], written: dict[int, tuple[Any, ...]]) -> None:
    """Write `incidents` as they are now: those in `written` (their values as the database holds
    them) as UPDATEs of the columns that differ, grouped so that each group is one statement; the
    others (opened in the batch) as one INSERT. Rows go to the driver as tuples
    (alarms/driver_rows.py), the lists JSON encoded."""
    write_changed(conn, INCIDENTS, COLUMNS, map(values_of, incidents), written, _JSON)
