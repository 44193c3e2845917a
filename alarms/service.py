"""The alarm service: detector events and human actions in, alarm transitions out.

Key = (device, alarm type): at most one open alarm per key (the database enforces it with a partial
unique index); a repeat increments `occurrences`. Every change is persisted with an event log entry
holding `before` and `after`, in the same transaction as any ticket it opens, and returned as a
Transition for the live consumers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from alarms.model import Transition, snapshot
from alarms.outbox import enqueue
from alarms.tickets import TicketChange, TicketOpener, needs_ticket
from core.domain import (
    SEVERITY_OF,
    AlarmAction,
    AlarmState,
    DetectorEvent,
    DetectorEventKind,
)
from core.settings import PushRoute
from ingest.index import DeviceIndex
from storage.models import AlarmEventRow, AlarmRow

logger = logging.getLogger(__name__)

SYSTEM_ACTOR = "firewatch"


class AlarmNotFoundError(LookupError):
    pass


class InvalidTransitionError(ValueError):
    """The requested action does not apply to the alarm's current state."""


class AlarmService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        index: DeviceIndex,
        tickets: TicketOpener,
        clock: Callable[[], float],
        routes: list[PushRoute] | None = None,
    ) -> None:
        self.sessions = sessions
        self.index = index
        self.tickets = tickets
        self.clock = clock
        self.routes = list(routes or [])
        # One writer at a time: the pipeline thread and API requests both mutate alarms.
        self._lock = threading.Lock()

    def active_keys(self) -> set[tuple[str, str]]:
        with self.sessions() as s:
            rows = s.execute(
                select(AlarmRow.device_id, AlarmRow.alarm_type).where(
                    AlarmRow.state.in_([AlarmState.ACTIVE_UNACKNOWLEDGED, AlarmState.ACTIVE_ACKNOWLEDGED])
                )
            )
            return {(d, t) for d, t in rows}

    def apply(self, events: list[DetectorEvent]) -> tuple[list[Transition], list[TicketChange]]:
        """Turn detector events into alarm transitions, persisted in one transaction."""
        if not events:
            return [], []
        transitions: list[Transition] = []
        tickets: list[TicketChange] = []
        now = self.clock()
        with self._lock, self.sessions.begin() as s:
            for event in events:
                t = self._apply_one(s, event, now)
                if t is None:
                    continue
                transitions.append(t)
                if t.action is AlarmAction.RAISED:
                    row = s.get(AlarmRow, t.alarm_id)
                    if row is not None and needs_ticket(row):
                        tickets.append(self.tickets.on_raised(s, row, now))
        return transitions, tickets

    def _open(self, s: Session, device_id: str, alarm_type: str) -> AlarmRow | None:
        return s.scalars(
            select(AlarmRow)
            .where(AlarmRow.device_id == device_id, AlarmRow.alarm_type == alarm_type)
            .where(AlarmRow.state != AlarmState.CLOSED.value)
            .with_for_update()
        ).first()

    def _apply_one(self, s: Session, e: DetectorEvent, now: float) -> Transition | None:
        row = self._open(s, e.device_id, e.alarm_type)
        if e.kind is DetectorEventKind.RAISE:
            if row is None:
                dev = self.index.dev_of.get(e.device_id)
                loc_place = self.index.devices[dev].place if dev is not None else ""
                row = AlarmRow(
                    device_id=e.device_id,
                    alarm_type=e.alarm_type,
                    category=e.category.value,
                    severity=SEVERITY_OF[e.category].value,
                    system=self.index.profiles[dev].system.value if dev is not None else "",
                    site=self.index.sites[dev] if dev is not None else "",
                    place=loc_place,
                    state=AlarmState.ACTIVE_UNACKNOWLEDGED.value,
                    occurrences=1,
                    first_ts=e.ts,
                    last_ts=e.ts,
                    value=e.value,
                    peak=e.value,
                    channel=e.channel,
                    detail=e.detail,
                    basis=e.basis,
                    false_alarm=False,
                )
                s.add(row)
                s.flush()
                return self._log(s, row, None, AlarmAction.RAISED, SYSTEM_ACTOR, now)
            before = snapshot(row)
            row.occurrences += 1
            row.last_ts = e.ts
            row.value = e.value
            if e.value is not None:
                row.peak = e.value if row.peak is None else max(row.peak, e.value)
            row.detail = e.detail
            if AlarmState(row.state) is AlarmState.CLEARED_UNACKNOWLEDGED:
                row.state = AlarmState.ACTIVE_UNACKNOWLEDGED.value
                row.cleared_ts = None
                return self._log(s, row, before, AlarmAction.RAISED, SYSTEM_ACTOR, now)
            return self._log(s, row, before, AlarmAction.REPEATED, SYSTEM_ACTOR, now)

        # CLEAR: only an active alarm can clear; a clear with nothing open is a no-op.
        if row is None or not AlarmState(row.state).is_active:
            return None
        before = snapshot(row)
        row.cleared_ts = e.ts
        row.last_ts = max(row.last_ts, e.ts)
        return self._clear(s, row, before, SYSTEM_ACTOR, "", now)

    def _clear(
        self, s: Session, row: AlarmRow, before: dict[str, object], actor: str, note: str, now: float
    ) -> Transition:
        if AlarmState(row.state) is AlarmState.ACTIVE_ACKNOWLEDGED:
            row.state = AlarmState.CLOSED.value  # cleared and acknowledged: done
            row.closed_ts = now
            return self._log(s, row, before, AlarmAction.CLOSED, actor, now, note)
        row.state = AlarmState.CLEARED_UNACKNOWLEDGED.value
        return self._log(s, row, before, AlarmAction.CLEARED, actor, now, note)

    def _log(
        self,
        s: Session,
        row: AlarmRow,
        before: dict[str, object] | None,
        action: AlarmAction,
        actor: str,
        now: float,
        note: str = "",
    ) -> Transition:
        after = snapshot(row)
        s.add(
            AlarmEventRow(
                alarm_id=row.id,
                ts=now,
                action=action.value,
                actor=actor,
                note=note,
                before=before,
                after=after,
            )
        )
        t = Transition(row.id, action, before, after, actor, now, note)
        if self.routes:
            # Same session, same transaction: the transition and the pushes it owes commit together.
            enqueue(s, self.routes, t, self._place_name(row.place), now)
        return t

    def _place_name(self, place: str) -> str:
        names = self.index.place_names
        parts = place.split("/")
        shown = [names.get("/".join(parts[: i + 1]), parts[i]) for i in range(1, len(parts))]
        return " ".join(shown) or place

    def acknowledge(
        self, alarm_id: int, *, actor: str, note: str = "", false_alarm: bool = False
    ) -> Transition:
        now = self.clock()
        with self._lock, self.sessions.begin() as s:
            row = s.get(AlarmRow, alarm_id, with_for_update=True)
            if row is None:
                raise AlarmNotFoundError(f"alarm {alarm_id} does not exist")
            state = AlarmState(row.state)
            if state not in (AlarmState.ACTIVE_UNACKNOWLEDGED, AlarmState.CLEARED_UNACKNOWLEDGED):
                raise InvalidTransitionError(f"alarm {alarm_id} is {state.value}: nothing to acknowledge")
            before = snapshot(row)
            row.acked_ts = now
            row.acked_by = actor
            row.ack_note = note
            row.false_alarm = false_alarm
            if state is AlarmState.CLEARED_UNACKNOWLEDGED:
                row.state = AlarmState.CLOSED.value
                row.closed_ts = now
                return self._log(s, row, before, AlarmAction.CLOSED, actor, now, note)
            row.state = AlarmState.ACTIVE_ACKNOWLEDGED.value
            return self._log(s, row, before, AlarmAction.ACKNOWLEDGED, actor, now, note)

    def clear(self, alarm_id: int, *, actor: str, note: str = "") -> Transition:
        """A person clears an active alarm (e.g. after a device was reset on site)."""
        now = self.clock()
        with self._lock, self.sessions.begin() as s:
            row = s.get(AlarmRow, alarm_id, with_for_update=True)
            if row is None:
                raise AlarmNotFoundError(f"alarm {alarm_id} does not exist")
            if not AlarmState(row.state).is_active:
                raise InvalidTransitionError(
                    f"alarm {alarm_id} is {row.state}: only an active alarm can be cleared"
                )
            before = snapshot(row)
            row.cleared_ts = now
            return self._clear(s, row, before, actor, note, now)
