"""Handover (交接班) between the people on duty in the fire control room (GB 25506-2010 asks for
handover records and for at least two people on each shift).

The outgoing person starts a handover: the service takes a snapshot of what is open right now (open
incidents, unacknowledged alarms, disabled points 屏蔽, faults present, overdue tickets), stores it
as taken, and the outgoing person's notes with it. The incoming person countersigns with their own
credentials; both signatures (who, when) are recorded. Nobody countersigns their own handover, and
a countersigned handover never changes. Each step also writes an entry of kind 交接班 to the duty log.

Nothing here touches an alarm: a handover only reads them, so no alarm is ever delayed by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from accounts.model import Principal
from alarms import duty_log
from alarms.duty_log import DutyLogKind
from alarms.incident_report import Names, alarm_type_label
from core.domain import (
    ACTIVE_STATES,
    CATEGORY_RANK,
    UNACKNOWLEDGED_STATES,
    AlarmCategory,
    IncidentState,
    Role,
    TicketStatus,
)
from storage.db import IMMEDIATE
from storage.duty_models import HandoverRow
from storage.models import AlarmRow, IncidentRow, TicketRow

# Who may keep the control room's duty (write the log, hand over and take over a shift).
DUTY_ROLES = (Role.OPERATOR, Role.SAFETY, Role.LEADER, Role.ADMIN)
# With no earlier countersigned handover and no start given, the shift handed over is taken to be
# this long (a 12-hour shift; the start can always be given).
DEFAULT_SHIFT_S = 12 * 3600.0
# The most items a snapshot lists of each kind; the counts are always whole (a site-wide outage can
# hold hundreds of offline alarms, and the handover record must stay readable).
LIST_MAX = 500
PROBLEM_MAX = 200  # a ticket's problem as the snapshot keeps it

SNAPSHOT_LISTS = ("incidents", "unacknowledged", "disabled", "faults", "overdue_tickets")


class HandoverNotFoundError(LookupError):
    """No such handover (404)."""


class HandoverConflictError(ValueError):
    """The handover's state or the signer does not allow this (409): already countersigned, one's
    own handover, or meant for someone else."""


class HandoverInputError(ValueError):
    """The request cannot be honoured as given (422)."""


class NotOnDutyError(PermissionError):
    """The signer holds no role that keeps the control room's duty (403)."""


def on_duty_role(p: Principal) -> bool:
    return p.may(r.value for r in DUTY_ROLES)


def _alarm_item(a: AlarmRow, names: Names) -> dict[str, Any]:
    return {
        "id": a.id,
        "device_id": a.device_id,
        "alarm_type": a.alarm_type,
        "type_name": alarm_type_label(a, names),
        "category": a.category,
        "state": a.state,
        "place": a.place,
        "place_name": names.place(a.place) if a.place else "",
        "first_ts": a.first_ts,
    }


def _worst_first(rows: Sequence[AlarmRow]) -> list[AlarmRow]:
    rank = {c.value: r for c, r in CATEGORY_RANK.items()}
    return sorted(rows, key=lambda a: (rank.get(a.category, 9), a.first_ts, a.id))


def take_snapshot(s: Session, names: Names, now: float) -> dict[str, Any]:
    """What is open right now, as counts and lists (each list at most LIST_MAX items, worst and
    oldest first). Read in one transaction, so the counts and lists agree."""

    def count(q: Any) -> int:
        return int(s.scalar(select(func.count()).select_from(q.subquery())) or 0)

    open_incidents = select(IncidentRow).where(IncidentRow.state != IncidentState.CLOSED.value)
    unacked = select(AlarmRow).where(AlarmRow.state.in_(UNACKNOWLEDGED_STATES))
    disabled = select(AlarmRow).where(
        AlarmRow.category == AlarmCategory.DISABLED.value, AlarmRow.state.in_(ACTIVE_STATES)
    )
    faults = select(AlarmRow).where(
        AlarmRow.category == AlarmCategory.FAULT.value, AlarmRow.state.in_(ACTIVE_STATES)
    )
    overdue = select(TicketRow).where(
        TicketRow.overdue.is_(True), TicketRow.status != TicketStatus.CLOSED.value
    )
    counts = {
        "incidents": count(open_incidents),
        "unacknowledged": count(unacked),
        "disabled": count(disabled),
        "faults": count(faults),
        "overdue_tickets": count(overdue),
    }
    rank = {c.value: r for c, r in CATEGORY_RANK.items()}
    incidents = sorted(
        s.scalars(open_incidents.order_by(IncidentRow.opened_ts, IncidentRow.id).limit(LIST_MAX)).all(),
        key=lambda i: (rank.get(i.category, 9), i.opened_ts, i.id),
    )

    def alarms(q: Any) -> list[dict[str, Any]]:
        rows = s.scalars(q.order_by(AlarmRow.first_ts, AlarmRow.id).limit(LIST_MAX)).all()
        return [_alarm_item(a, names) for a in _worst_first(rows)]

    tickets = s.scalars(overdue.order_by(TicketRow.deadline, TicketRow.id).limit(LIST_MAX)).all()
    snapshot: dict[str, Any] = {
        "taken_ts": now,
        "counts": counts,
        "incidents": [
            {
                "id": i.id,
                "kind": i.kind,
                "category": i.category,
                "state": i.state,
                "verification": i.verification,
                "place": i.place,
                "place_name": names.place(i.place) if i.place else "",
                "opened_ts": i.opened_ts,
                "acked_by": i.acked_by,
                "alarm_count": i.alarm_count,
            }
            for i in incidents
        ],
        "unacknowledged": alarms(unacked),
        "disabled": alarms(disabled),
        "faults": alarms(faults),
        "overdue_tickets": [
            {
                "id": t.id,
                "number": t.number,
                "status": t.status,
                "category": t.category,
                "place": t.place,
                "place_name": names.place(t.place) if t.place else "",
                "problem": t.problem[:PROBLEM_MAX],
                "deadline": t.deadline,
            }
            for t in tickets
        ],
    }
    snapshot["truncated"] = any(counts[k] > len(snapshot[k]) for k in SNAPSHOT_LISTS)
    return snapshot


def summary_zh(counts: dict[str, int]) -> str:
    """未结束事件 1 起，未确认报警 2 条，屏蔽点位 0 个，故障 1 个，超期整改单 0 张"""
    return (
        f"未结束事件 {counts.get('incidents', 0)} 起，未确认报警 {counts.get('unacknowledged', 0)} 条，"
        f"屏蔽点位 {counts.get('disabled', 0)} 个，故障 {counts.get('faults', 0)} 个，"
        f"超期整改单 {counts.get('overdue_tickets', 0)} 张"
    )


def start(
    sessions: sessionmaker[Session],
    outgoing: Principal,
    *,
    notes: str,
    incoming: str | None,
    shift_start: float | None,
    names: Names,
    now: float,
) -> HandoverRow:
    """The outgoing person starts a handover: the snapshot is taken and stored with their notes."""
    if not on_duty_role(outgoing):
        raise NotOnDutyError(f"{outgoing.name} holds no duty role ({', '.join(r.value for r in DUTY_ROLES)})")
    if incoming is not None and incoming == outgoing.name:
        raise HandoverInputError("the incoming person is someone else: a handover is between two people")
    with sessions.begin() as s:
        s.connection(execution_options=IMMEDIATE)  # one writer at a time on SQLite
        if shift_start is None:
            previous = s.scalar(select(func.max(HandoverRow.countersigned_ts)))
            shift_start = previous if previous is not None and previous < now else now - DEFAULT_SHIFT_S
        if shift_start >= now:
            raise HandoverInputError("the shift's start must be before now (the handover ends the shift)")
        snapshot = take_snapshot(s, names, now)
        row = HandoverRow(
            shift_start=shift_start,
            started_ts=now,
            outgoing=outgoing.name,
            outgoing_name=outgoing.signature,
            notes=notes,
            incoming_expected=incoming,
            snapshot=snapshot,
            incoming=None,
            incoming_name=None,
            countersigned_ts=None,
            countersigned_via=None,
            incoming_note="",
        )
        s.add(row)
        s.flush()
        text = f"{outgoing.signature} 交班（交接班 {row.id}）：{summary_zh(snapshot['counts'])}"
        if notes:
            text += f"。交班说明：{notes}"
        duty_log.write(
            s,
            kind=DutyLogKind.HANDOVER,
            text=text,
            author=outgoing.name,
            author_name=outgoing.signature,
            now=now,
            handover_id=row.id,
        )
        return row


def countersign(
    sessions: sessionmaker[Session],
    handover_id: int,
    signer: Principal,
    *,
    via: str,
    note: str,
    now: float,
) -> HandoverRow:
    """The incoming person countersigns (接班签字); `via` says how they proved who they are
    (`password` at the shared screen, or their own `session`)."""
    with sessions.begin() as s:
        s.connection(execution_options=IMMEDIATE)
        row = s.get(HandoverRow, handover_id, with_for_update=True)
        if row is None:
            raise HandoverNotFoundError(f"handover {handover_id} does not exist")
        if row.countersigned_ts is not None:
            raise HandoverConflictError(
                f"handover {handover_id} is already countersigned by {row.incoming_name}: "
                "a signed handover does not change"
            )
        if signer.name == row.outgoing:
            raise HandoverConflictError(
                f"{signer.name} started handover {handover_id}: the incoming person countersigns it, "
                "not the same person twice"
            )
        if row.incoming_expected is not None and signer.name != row.incoming_expected:
            raise HandoverConflictError(
                f"handover {handover_id} is to {row.incoming_expected}: only they may countersign it"
            )
        if not on_duty_role(signer):
            raise NotOnDutyError(
                f"{signer.name} holds no duty role ({', '.join(r.value for r in DUTY_ROLES)}): "
                "only someone who may keep the duty takes it over"
            )
        row.incoming = signer.name
        row.incoming_name = signer.signature
        row.countersigned_ts = now
        row.countersigned_via = via
        row.incoming_note = note
        text = f"{signer.signature} 接班签字（交接班 {row.id}，交班人 {row.outgoing_name}）"
        if note:
            text += f"：{note}"
        duty_log.write(
            s,
            kind=DutyLogKind.HANDOVER,
            text=text,
            author=signer.name,
            author_name=signer.signature,
            now=now,
            handover_id=row.id,
        )
        s.flush()
        return row
