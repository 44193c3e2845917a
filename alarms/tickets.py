"""Hazard tickets opened automatically by alarms (DESIGN §5): one open ticket per (device, hazard type);
a recurrence is appended to the open ticket instead of opening another."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from alarms.labels import CATEGORY_ZH, MEASURES_BY_CATEGORY_ZH, MEASURES_ZH, alarm_type_zh
from core.domain import TICKETED_CATEGORIES, AlarmCategory, TicketSource, TicketStatus
from core.settings import TicketPolicy
from detectors.liveness import OFFLINE
from ingest.index import DeviceIndex
from storage.models import AlarmRow, TicketAlarmRow, TicketEventRow, TicketRow

AUTO_INSPECTOR = "firewatch 自动监测"
FLAPPING = "sensor.flapping"  # the hazard type of an unstable sensor's ticket


@dataclass(frozen=True)
class TicketChange:
    ticket_id: int
    number: str
    action: str  # "opened" | "recurred"
    device_id: str | None


def needs_ticket(alarm: AlarmRow) -> bool:
    return AlarmCategory(alarm.category) in TICKETED_CATEGORIES or alarm.alarm_type == OFFLINE


class TicketOpener:
    def __init__(self, index: DeviceIndex, policy: TicketPolicy) -> None:
        self.index = index
        self.policy = policy

    def on_raised(self, session: Session, alarm: AlarmRow, now: float) -> TicketChange:
        """Open a ticket for this alarm, or append it to the device's open ticket of the same type."""
        return self._open(session, alarm, alarm.alarm_type, AlarmCategory(alarm.category), alarm.detail, now)

    def on_flapping(
        self, session: Session, alarm: AlarmRow, cycles: int, window_s: float, held: bool, now: float
    ) -> TicketChange:
        """A hazard ticket for an unstable sensor (DESIGN §5: flapping sensors are a ticket source)."""
        detail = (
            f"{alarm_type_zh(alarm.alarm_type)}（{alarm.alarm_type}）在 {window_s / 60:g} 分钟内"
            f"报警/恢复 {cycles} 次，" + ("已暂停推送。" if held else "火警推送不暂停。")
        )
        return self._open(session, alarm, FLAPPING, AlarmCategory.HAZARD, detail, now)

    def _open(
        self,
        session: Session,
        alarm: AlarmRow,
        hazard_type: str,
        category: AlarmCategory,
        detail: str,
        now: float,
    ) -> TicketChange:
        existing = session.scalars(
            select(TicketRow)
            .where(TicketRow.device_id == alarm.device_id, TicketRow.hazard_type == hazard_type)
            .where(TicketRow.status != TicketStatus.CLOSED.value)
            .with_for_update()
        ).first()
        if existing is not None:
            existing.occurrences += 1
            existing.updated_at = now
            session.merge(TicketAlarmRow(ticket_id=existing.id, alarm_id=alarm.id))
            session.add(
                TicketEventRow(
                    ticket_id=existing.id,
                    ts=now,
                    action="recurred",
                    actor=AUTO_INSPECTOR,
                    note=f"告警 #{alarm.id} 再次发生：{detail}",
                    status_before=existing.status,
                    status_after=existing.status,
                )
            )
            return TicketChange(existing.id, existing.number, "recurred", alarm.device_id)

        dev = self.index.dev_of.get(alarm.device_id)
        device = self.index.devices[dev] if dev is not None else None
        profile = self.index.profiles[dev] if dev is not None else None
        place_name = self.index.place_label(alarm.place)
        hours = self.policy.deadline_hours.get(category.value, self.policy.default_deadline_hours)
        label = alarm_type_zh(hazard_type)
        what = f"{device.name or device.id}（{profile.name_zh}）" if device and profile else alarm.device_id
        ticket = TicketRow(
            number="",
            source=TicketSource.ALARM.value,
            status=TicketStatus.OPEN.value,
            category=category.value,
            hazard_type=hazard_type,
            device_id=alarm.device_id,
            site=alarm.site,
            place=alarm.place,
            department=device.department if device else "",
            responsible=device.responsible if device else "",
            inspection_time=alarm.first_ts,
            inspectors=AUTO_INSPECTOR,
            problem=f"{place_name} {what} {CATEGORY_ZH[category]}：{label}。{detail}",
            measures=MEASURES_ZH.get(hazard_type, MEASURES_BY_CATEGORY_ZH[category]),
            deadline=now + hours * 3600.0,
            created_at=now,
            updated_at=now,
        )
        session.add(ticket)
        session.flush()
        ticket.number = f"YH-{time.strftime('%Y%m%d', time.localtime(now))}-{ticket.id:05d}"
        session.add(TicketAlarmRow(ticket_id=ticket.id, alarm_id=alarm.id))
        session.add(
            TicketEventRow(
                ticket_id=ticket.id,
                ts=now,
                action="opened",
                actor=AUTO_INSPECTOR,
                note=f"由告警 #{alarm.id} 自动生成",
                status_before=None,
                status_after=ticket.status,
            )
        )
        return TicketChange(ticket.id, ticket.number, "opened", alarm.device_id)
