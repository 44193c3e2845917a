"""The duty log (值班记录): what the people on duty in the fire control room record during a shift
(GB 25506-2010 asks the control room to keep duty records), and the entries the service writes
itself when a shift is handed over (alarms/handover.py).

Each entry has a kind from a closed vocabulary, its text, the time on the service's clock when it
was written, and its author (user name and signature). Entries are never edited or deleted: the
log is a record.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from storage.duty_models import DutyLogRow

TEXT_MAX = 4000


class DutyLogKind(StrEnum):
    PATROL = "patrol"  # 巡查: a walk round, what was found
    ALARM_HANDLING = "alarm_handling"  # 报警处理: an alarm and what was done about it
    EQUIPMENT = "equipment"  # 设备情况: a device or system's state (a panel fault, a pump test)
    OTHER = "other"  # 来访与其他: visitors, calls, anything else
    HANDOVER = "handover"  # 交接班: written by the service at a handover, never by a person


# The kinds a person writes; HANDOVER entries come only from the handover itself.
WRITTEN_BY_PEOPLE = (DutyLogKind.PATROL, DutyLogKind.ALARM_HANDLING, DutyLogKind.EQUIPMENT, DutyLogKind.OTHER)

DUTY_LOG_KIND_ZH: dict[DutyLogKind, str] = {
    DutyLogKind.PATROL: "巡查",
    DutyLogKind.ALARM_HANDLING: "报警处理",
    DutyLogKind.EQUIPMENT: "设备情况",
    DutyLogKind.OTHER: "来访与其他",
    DutyLogKind.HANDOVER: "交接班",
}


def kind_zh(kind: str) -> str:
    try:
        return DUTY_LOG_KIND_ZH[DutyLogKind(kind)]
    except ValueError:
        return "其他"


@dataclass(frozen=True, slots=True)
class LogFilter:
    """A search of the log: every condition given must hold."""

    text: str | None = None  # the entry's text contains it (case-insensitive)
    since: float | None = None  # written at or after
    until: float | None = None  # written before
    author: str | None = None  # the user name, exactly
    kind: DutyLogKind | None = None


def search(f: LogFilter) -> Select[DutyLogRow]:
    """The entries matching `f`, newest first."""
    q = select(DutyLogRow)
    if f.text:
        q = q.where(DutyLogRow.text.icontains(f.text, autoescape=True))
    if f.since is not None:
        q = q.where(DutyLogRow.ts >= f.since)
    if f.until is not None:
        q = q.where(DutyLogRow.ts < f.until)
    if f.author is not None:
        q = q.where(DutyLogRow.author == f.author)
    if f.kind is not None:
        q = q.where(DutyLogRow.kind == f.kind.value)
    return q.order_by(DutyLogRow.ts.desc(), DutyLogRow.id.desc())


def write(
    s: Session,
    *,
    kind: DutyLogKind,
    text: str,
    author: str,
    author_name: str,
    now: float,
    handover_id: int | None = None,
) -> DutyLogRow:
    """Add an entry in the caller's transaction."""
    row = DutyLogRow(
        ts=now,
        kind=kind.value,
        text=text[:TEXT_MAX],
        author=author,
        author_name=author_name or author,
        handover_id=handover_id,
    )
    s.add(row)
    s.flush()
    return row
