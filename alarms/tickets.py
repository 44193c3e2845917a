"""Hazard tickets opened automatically by alarms (DESIGN §5): one open ticket per (device, hazard type);
a recurrence is appended to the open ticket instead of opening another."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from alarms.alarm_values import Alarm
from alarms.batch import batch_of
from alarms.describe import describe
from alarms.labels import CATEGORY_ZH, MEASURES_BY_CATEGORY_ZH, MEASURES_ZH, alarm_type_zh
from core.domain import TICKETED_CATEGORIES, AlarmCategory, TicketAction, TicketSource, TicketStatus
from core.settings import TicketPolicy
from detectors.liveness import OFFLINE
from ingest.index import DeviceIndex
from storage.models import TicketEventRow, TicketRow

AUTO_INSPECTOR = "firewatch 自动监测"
FLAPPING = "sensor.flapping"  # the hazard type of an unstable sensor's ticket


@dataclass(frozen=True)
class TicketChange:
    ticket_id: int
    number: str
    action: str  # "opened" | "recurred"
    device_id: str | None


TICKET_ALARM_PREFIX = "ticket."  # alarms about a ticket itself (e.g. "ticket.overdue")
SERVICE_KEY_PREFIX = "service:"  # alarms about firewatch itself (e.g. "service:influx")


def needs_ticket(alarm: Alarm) -> bool:
    if alarm.alarm_type.startswith(TICKET_ALARM_PREFIX):
        return False  # the ticket already exists: a ticket about it would only be noise
    if alarm.device_id.startswith(SERVICE_KEY_PREFIX):
        return False  # not a fire-safety hazard at a place: no 隐患整改单, no rectification KPI
    return AlarmCategory(alarm.category) in TICKETED_CATEGORIES or alarm.alarm_type == OFFLINE


class TicketOpener:
    def __init__(self, index: DeviceIndex, policy: TicketPolicy) -> None:
        self.index = index
        self.policy = policy

    def on_raised(self, session: Session, alarm: Alarm, now: float) -> TicketChange:
        """Open a ticket for this alarm, or append it to the device's open ticket of the same type."""
        # The problem found (检查发现问题) is read by people: the detector's detail in words.
        said = describe(alarm.alarm_type, alarm.detail, channel=alarm.channel, value=alarm.value).zh
        return self._open(session, alarm, alarm.alarm_type, AlarmCategory(alarm.category), said, now)

    def on_flapping(
        self, session: Session, alarm: Alarm, cycles: int, window_s: float, held: bool, now: float
    ) -> TicketChange:
        """A hazard ticket for an unstable sensor (DESIGN §5: flapping sensors are a ticket source)."""
        detail = (
            f"{alarm_type_zh(alarm.alarm_type)}在 {window_s / 60:g} 分钟内"
            f"报警/恢复 {cycles} 次，" + ("已暂停推送。" if held else "火警推送不暂停。")
        )
        return self._open(session, alarm, FLAPPING, AlarmCategory.HAZARD, detail, now)

    def _open(
        self,
        session: Session,
        alarm: Alarm,
        hazard_type: str,
        category: AlarmCategory,
        detail: str,
        now: float,
    ) -> TicketChange:
        # Alarms are raised in a bulk write, whose batch reads its devices' open tickets and their
        # alarm links once (alarms/batch.py).
        batch = batch_of(session)
        if batch is None:
            raise AssertionError("alarm tickets are opened in a bulk write (AlarmService.apply)")
        existing = batch.open_ticket(session, alarm.device_id, hazard_type)
        if existing is not None:
            change = recur(session, existing, f"报警 #{alarm.id} 再次发生：{detail}", now)
            batch.link(existing.id, alarm.id)  # written after the batch's alarms, which it refers to
            return change

        dev = self.index.dev_of.get(alarm.device_id)
        device = self.index.devices[dev] if dev is not None else None
        profile = self.index.profiles[dev] if dev is not None else None
        place_name = self.index.place_label(alarm.place)
        label = alarm_type_zh(hazard_type)
        what = f"{device.name or device.id}（{profile.name_zh}）" if device and profile else alarm.device_id
        ticket = TicketRow(
            source=TicketSource.ALARM.value,
            category=category.value,
            hazard_type=hazard_type,
            device_id=alarm.device_id,
            site=alarm.site,
            place=alarm.place,
            department=device.department if device else "",
            responsible=device.responsible if device else "",
            inspection_time=alarm.first_ts,
            inspectors=AUTO_INSPECTOR,
            problem=f"{place_name} {what} {CATEGORY_ZH[category]}：{label}。{detail}".rstrip(),
            measures=MEASURES_ZH.get(hazard_type, MEASURES_BY_CATEGORY_ZH[category]),
            deadline=now + self.policy.deadline_s(category),
        )
        note = f"由报警 #{alarm.id} 自动生成"
        ticket_id = batch.ticket_id(session)
        change = add_ticket(session, ticket, now, AUTO_INSPECTOR, "", note, ticket_id=ticket_id)
        batch.tickets[(alarm.device_id, hazard_type)] = ticket
        batch.link(ticket.id, alarm.id)
        return change


def log_event(
    session: Session,
    ticket: TicketRow,
    action: TicketAction,
    now: float,
    note: str = "",
    *,
    actor: str = AUTO_INSPECTOR,
    role: str = "",
    before: str | None = None,
) -> None:
    """Append one entry to the ticket's history; `before` defaults to its current status (an event
    that changes nothing but the record). In a bulk alarm write the entry is kept as values and
    inserted after the batch's new tickets, whose ids it was given before they were inserted
    (alarms/batch.py `settle_alarms`); the unit of work does not order these two tables itself."""
    ticket.updated_at = now
    values = {
        "ticket_id": ticket.id,
        "ts": now,
        "action": action.value,
        "actor": actor,
        "role": role,
        "note": note,
        "status_before": ticket.status if before is None and action is not TicketAction.OPENED else before,
        "status_after": ticket.status,
    }
    batch = batch_of(session)
    if batch is not None:
        batch.ticket_events.append(values)
    else:
        session.add(TicketEventRow(**values))


def find_open(
    session: Session, hazard_type: str, *, device_id: str | None = None, subject: str | None = None
) -> TicketRow | None:
    """The open ticket of a (device or subject, hazard type) key, locked for update."""
    q = select(TicketRow).where(TicketRow.hazard_type == hazard_type)
    q = q.where(TicketRow.device_id == device_id) if device_id is not None else q
    q = q.where(TicketRow.subject == subject) if subject is not None else q
    q = q.where(TicketRow.status != TicketStatus.CLOSED.value)
    return session.scalars(q.with_for_update()).first()


def add_ticket(
    session: Session,
    ticket: TicketRow,
    now: float,
    actor: str,
    role: str,
    note: str,
    *,
    ticket_id: int | None = None,
) -> TicketChange:
    """Insert a new open ticket, give it its number and log OPENED, in the caller's transaction.
    A racing writer's open ticket of the same key makes the flush fail (the unique index): the
    caller retries its transaction and then finds that ticket instead. `ticket_id`: an id the caller
    reserved (alarms/batch.py `ticket_id`), so the ticket is inserted at the session's next flush
    instead of one of its own; without it, a flush assigns one now."""
    ticket.status = TicketStatus.OPEN.value
    ticket.occurrences = 1
    ticket.created_at = ticket.updated_at = now
    ticket.overdue = False
    if ticket_id is None:
        ticket.number = ""
        session.add(ticket)
        session.flush()
    else:
        ticket.id = ticket_id
        session.add(ticket)
    ticket.number = f"YH-{time.strftime('%Y%m%d', time.localtime(now))}-{ticket.id:05d}"
    log_event(session, ticket, TicketAction.OPENED, now, note, actor=actor, role=role)
    return TicketChange(ticket.id, ticket.number, "opened", ticket.device_id)


def recur(session: Session, ticket: TicketRow, note: str, now: float) -> TicketChange:
    """The same hazard again: counted on the open ticket. If telemetry had marked it ready for
    re-inspection, it no longer is."""
    ticket.occurrences += 1
    log_event(session, ticket, TicketAction.RECURRED, now, note)
    if ticket.ready_at is not None:
        ticket.ready_at = None
        log_event(session, ticket, TicketAction.NOT_READY, now, "隐患再次发生，不再满足自动复检条件")
    return TicketChange(ticket.id, ticket.number, "recurred", ticket.device_id)
