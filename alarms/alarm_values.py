"""The bulk alarm path's alarms as plain values, and how they are written back.

`AlarmService.apply` (alarms/batch.py) reads a batch's alarms with one statement, decides every
transition on these objects in memory and writes what changed at the batch's end: one UPDATE
executemany per set of changed columns, then one multi-row INSERT for the alarms it raised (their
ids were reserved up front). An ORM row costs several times as much per attribute read and set
(instrumented attributes, the unit of work's change tracking and identity map), which was most of
what was left of the path's CPU per transition (docs/decisions/0011-bulk-alarm-path.md).

Human actions keep the ORM rows (`AlarmRow`): one at a time, they gain nothing. Both are the same
table's rows, written in their own transactions, so each sees the other's writes; the rule code that
both run takes either (`AlarmLike`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Any, cast

from sqlalchemy import Connection, Table

from alarms.driver_rows import write_changed
from storage.models import AlarmRow

ALARMS = cast(Table, AlarmRow.__table__)
COLUMNS: tuple[str, ...] = tuple(ALARMS.c.keys())


@dataclass(slots=True, eq=False)
class Alarm:
    """One row of `alarms` (storage/models.py `AlarmRow`), as plain attributes in column order, so
    a selected row builds it positionally. Compared by identity, as ORM rows are."""

    id: int
    device_id: str
    alarm_type: str
    category: str
    severity: str
    system: str
    site: str
    place: str
    state: str
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
    department: str
    false_alarms: int
    raised_ts: float
    escalation: str | None
    escalation_step: int
    escalate_at: float | None
    remind_at: float | None
    flapping: bool
    maintenance_id: int | None
    shelved_until: float | None
    shelved_by: str | None
    shelve_note: str | None
    normal_ts: float | None
    incident_id: int | None
    drill_id: int | None


# Built positionally from a row of `select(ALARMS)`: the two orders must be one.
if tuple(f.name for f in fields(Alarm)) != COLUMNS:
    raise AssertionError("Alarm's fields must be AlarmRow's columns, in table order")

AlarmLike = AlarmRow | Alarm  # what the rule code shared by both paths takes

values_of = attrgetter(*COLUMNS)  # an alarm's values, in column order (a tuple)


def write(conn: Connection, alarms: list[Alarm], written: dict[int, tuple[Any, ...]]) -> None:
    """Write `alarms` as they are now: those in `written` (their values as the database holds them)
    as UPDATEs of the columns that differ, grouped so that each group is one executemany; the others
    as one INSERT. The updates go first: an alarm the batch closed frees its key (the partial unique
    index) for a new alarm of the same key the batch raised. Rows go to the driver as tuples
    (alarms/driver_rows.py): an alarm's values are what its columns take as they are."""
    write_changed(conn, ALARMS, COLUMNS, map(values_of, alarms), written)
