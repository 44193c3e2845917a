"""The alarm service: detector events, human actions and the policy clock in, alarm transitions out.

Key = (device, alarm type): at most one open alarm per key (the database enforces it with a partial
unique index); a repeat increments `occurrences`. Every change is persisted with an event log entry
holding `before` and `after`, in the same transaction as any ticket it opens and any push it owes
(the outbox), and returned as a Transition for the live consumers.

Upserts are race-free across processes: two writers that both find no open alarm and both insert
collide on the unique index; the loser's whole transaction is retried and then finds the winner's
alarm and counts an occurrence. A busy SQLite database is retried the same way.

What the policy decides (alarms/policy.py) is applied here: escalation steps and reminders, holding
notifications while shelved, flapping or under maintenance (never for a fire alarm), closing after
a quiet period.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from orjson import Fragment
from sqlalchemy import Select, func, or_, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from alarms.alarm_values import Alarm, AlarmLike
from alarms.batch import INFO_KEY as BATCH_KEY
from alarms.batch import AlarmBatch, PendingTransition, batch_of, insert_rows
from alarms.drills import ALARM_TOPIC_NAME, DrillScope, drill_of
from alarms.drills import TAGGED as DRILL_TAGGED
from alarms.gc_pause import collector_paused
from alarms.incident_service import IncidentBook, IncidentError, members
from alarms.incidents import OUTAGE_TYPES
from alarms.model import IncidentUpdate, Transition, snapshot
from alarms.outbox import enqueue
from alarms.policy import Hold, MaintenanceScope, Policy, PolicyError, covers
from alarms.tickets import TicketChange, TicketOpener, needs_ticket
from core.domain import (
    ACTIVE_STATES,
    SEVERITY_OF,
    UNACKNOWLEDGED_STATES,
    AlarmAction,
    AlarmCategory,
    AlarmState,
    DetectorEvent,
    DetectorEventKind,
    FalseAlarmCause,
    IncidentState,
    TicketStatus,
    Verification,
    latches,
)
from core.settings import AlarmPolicySettings, PushRoute
from ingest.index import DeviceIndex
from storage.advisory import Space, try_hold
from storage.db import IMMEDIATE, json_dumps, retryable
from storage.marks import TransactionMark
from storage.models import (
    AlarmEventRow,
    AlarmRow,
    AuditRow,
    IncidentEventRow,
    IncidentRow,
    MaintenanceRow,
    TicketRow,
)

logger = logging.getLogger(__name__)

SYSTEM_ACTOR = "firewatch"
# The enums' values, looked up once: the bulk path compares them per event.
ACKNOWLEDGED_STATES = (AlarmState.ACTIVE_ACKNOWLEDGED.value, AlarmState.CLEARED_ACKNOWLEDGED.value)
_FIRE, _PRE_ALARM = AlarmCategory.FIRE.value, AlarmCategory.PRE_ALARM.value
ATTEMPTS = 8  # a transaction that lost a race is retried this often before the error is raised

R = TypeVar("R")


class AlarmNotFoundError(LookupError):
    pass


class InvalidTransitionError(ValueError):
    """The requested action does not apply to the alarm's (or incident's) current state."""


class IncidentNotFoundError(LookupError):
    pass


class MaintenanceNotFoundError(LookupError):
    pass


@dataclass(frozen=True)
class IncidentStep:
    """A human step on an incident: the timeline entry, and the alarm transitions it made."""

    update: IncidentUpdate
    transitions: list[Transition]


@dataclass
class Outcome:
    """What one write produced: transitions in commit order and the tickets they opened."""

    transitions: list[Transition]
    tickets: list[TicketChange]
    incidents: list[IncidentUpdate]


class AlarmService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        index: DeviceIndex,
        tickets: TicketOpener,
        clock: Callable[[], float],
        routes: list[PushRoute] | None = None,
        policy: Policy | None = None,
    ) -> None:
        self.sessions = sessions
        self.tickets = tickets
        self.clock = clock
        self.routes = list(routes or [])
        self.policy = policy or Policy(AlarmPolicySettings())
        self.incidents = IncidentBook(self.policy, index, self.routes)
        self.index = index
        # The drills in force or ahead, as values (alarms/drills.py): an alarm is tagged without a
        # read. Replaced as a whole (one assignment) whenever a drill changes (alarms/drill_service.py).
        self.drills: tuple[DrillScope, ...] = ()
        # Set when several workers share the database (alarms/drill_service.py): the drills are then
        # read in each write that raises a fire-side alarm, once, and `drills` is not used to tag.
        self.drill_reader: Callable[[Session, float], tuple[DrillScope, ...]] | None = None
        # One writer at a time within the process: the pipeline thread, the policy clock and API
        # requests all mutate alarms. Other processes are handled by the retry in _write.
        self._lock = threading.Lock()
        self.retries = 0  # transactions retried after a lost race (exposed for tests and metrics)
        # Called with each write's transitions right after its commit, in commit order; they must
        # return at once (hand off to a loop or queue), as the write lock is still held.
        self.on_commit: list[Callable[[list[Transition]], None]] = []
        # Likewise for each write's incident steps (after its transitions).
        self.on_incident: list[Callable[[list[IncidentUpdate]], None]] = []

    @property
    def index(self) -> DeviceIndex:
        return self._index

    @index.setter
    def index(self, index: DeviceIndex) -> None:
        """A registry change swaps the index here; the incident book names places with it too."""
        self._index = index
        self.incidents.index = index

    def _notify(self, out: Outcome) -> None:
        if out.transitions:
            for consumer in self.on_commit:
                try:
                    consumer(out.transitions)
                except Exception:  # a broken consumer must not fail a committed write
                    logger.exception("alarm commit consumer %r failed", consumer)
        if out.incidents:
            for incident_consumer in self.on_incident:
                try:
                    incident_consumer(out.incidents)
                except Exception:
                    logger.exception("incident commit consumer %r failed", incident_consumer)

    # --- the write path --------------------------------------------------------------------------
    def _write(self, work: Callable[[Session, Outcome], R]) -> tuple[R, Outcome]:
        for attempt in range(ATTEMPTS):
            outcome = Outcome([], [], [])
            try:
                with self._lock:
                    with self.sessions.begin() as s:
                        s.connection(execution_options=IMMEDIATE)
                        result = work(s, outcome)
                    # Still under the lock: committed transitions reach the ordered consumers in
                    # commit (= event id) order, whichever thread wrote them.
                    self._notify(outcome)
                return result, outcome
            except (IntegrityError, OperationalError) as exc:
                if attempt == ATTEMPTS - 1 or not retryable(exc):
                    raise
                self.retries += 1
                time.sleep(random.uniform(0.001, 0.005) * (attempt + 1))
        raise AssertionError("unreachable")

    def active_keys(self) -> set[tuple[str, str]]:
        with self.sessions() as s:
            rows = s.execute(
                select(AlarmRow.device_id, AlarmRow.alarm_type).where(AlarmRow.state.in_(ACTIVE_STATES))
            )
            return {(d, t) for d, t in rows}

    def apply(
        self, events: list[DetectorEvent], *, mark: TransactionMark | None = None
    ) -> tuple[list[Transition], list[TicketChange]]:
        """Turn detector events into alarm transitions, persisted in one transaction; with `mark`,
        the journal entry (or, clustered, the partitions' messages) they came from is marked
        recorded in the same transaction."""
        if not events and mark is None:
            return [], []
        now = self.clock()

        def work(s: Session, out: Outcome) -> None:
            # Set-based: the batch's open alarms, flapping counts and incidents are read once into
            # an index (alarms/batch.py) and the log rows written at one flush at the end.
            batch = AlarmBatch.load(s, events, self.policy.flap_since(now))
            # Several workers share the database (docs/scale.md): a fire's incident is looked for
            # and opened under its group's lock.
            self.incidents.lock_groups(s, batch, events)
            for event in events:
                self._apply_one(s, out, event, now)
                if event.kind is DetectorEventKind.RAISE and event.alarm_type in OUTAGE_TYPES:
                    self.incidents.note_devices(s, event)
            self._settle(s, out, batch, now)
            if mark is not None:
                mark.write(s, now)

        with collector_paused():  # alarms/gc_pause.py: it only rescans what the batch holds
            _, out = self._write(work)
        return out.transitions, out.tickets

    def _settle(self, s: Session, out: Outcome, batch: AlarmBatch, now: float) -> None:
        """The batch's end: its alarms written (alarm_values.write) and its incident and ticket rows
        flushed, then its log rows (alarms/batch.py insert_rows), whose ids the transitions and
        incident steps take, in log order; then the pushes they owe, in the same transaction
        (AlarmBatch.settle_outbox)."""
        batch.settle_alarms(s)  # first: the log rows and pushes refer to the batch's new alarms
        for p in batch.transitions:
            # Each snapshot encoded once: the event row holds it and the pushes embed it as it is
            # (orjson writes a Fragment's text unchanged), where both encoded it.
            p.event["before"] = Fragment(json_dumps(p.event["before"]))
            p.event["after"] = Fragment(json_dumps(p.event["after"]))
        event_ids = insert_rows(s, AlarmEventRow, [p.event for p in batch.transitions])
        step_ids = insert_rows(s, IncidentEventRow, [step.event for step in batch.steps])
        for p, event_id in zip(batch.transitions, event_ids, strict=True):
            t = Transition(event_id, **p.fields)
            if self.routes and p.push and not t.held:
                place = batch.place_name(p.place, self.index.place_label)
                routes = self._alarm_routes(t)
                enqueue(s, routes, t, place, now, encoded=(p.event["before"], p.event["after"]))
            out.transitions.append(t)
        for step, step_id in zip(batch.steps, step_ids, strict=True):
            out.incidents.append(self.incidents.settled(s, step, step_id, now))
        batch.settle_outbox(s)
        batch.transitions.clear()
        batch.steps.clear()
        del s.info[BATCH_KEY]

    def _open(self, s: Session, device_id: str, alarm_type: str) -> Alarm | None:
        return _batch(s).open_alarm(device_id, alarm_type)

    def _apply_one(self, s: Session, out: Outcome, e: DetectorEvent, now: float) -> None:
        if e.kind is DetectorEventKind.RESET:
            self._device_reset(s, out, e, now)
            return
        row = self._open(s, e.device_id, e.alarm_type)
        if e.kind is DetectorEventKind.RAISE:
            if row is None:
                if e.category is AlarmCategory.PRE_ALARM and self._latched_fire(s, e.device_id):
                    # The device is already at fire: its pre-alarm would add a card and a push that
                    # say less than the fire alarm the board already shows (superseded, see _supersede).
                    return
                # Its id reserved: the row goes in with the batch's others (_settle), where a racing
                # writer's open alarm for the key fails the INSERT and _write retries.
                batch = _batch(s)
                row = self._new_row(batch.alarm_id(s), e, now)
                batch.add(row)
                self._raised(s, out, row, None, now)
                return
            before = snapshot(row)
            row.occurrences += 1
            row.last_ts = max(row.last_ts, e.ts)
            row.value = e.value
            if e.value is not None:
                row.peak = e.value if row.peak is None else max(row.peak, e.value)
            row.detail = e.detail
            if row.state in ACTIVE_STATES:
                # Another crossing (of a latched fire alarm too) is an occurrence of the same alarm:
                # logged and streamed, addressed to no duty role and leaving escalation as it is, so
                # it reaches only routes that subscribe to `repeated` (the MQTT alarm topic).
                row.normal_ts = None
                self._log(s, out, row, before, AlarmAction.REPEATED, SYSTEM_ACTOR, now)
                return
            # Cleared but not yet closed: the same alarm is active again and needs attention anew.
            row.state = AlarmState.ACTIVE_UNACKNOWLEDGED.value
            row.cleared_ts = None
            row.acked_ts = row.acked_by = row.ack_note = None
            self._raised(s, out, row, before, now)
            return

        # CLEAR: only an active alarm can clear; a clear with nothing open is a no-op.
        if row is None or row.state not in ACTIVE_STATES:
            return
        if latches(AlarmCategory(row.category)):
            # GB 4717: a fire alarm control panel keeps the fire alarm state until a manual reset; the
            # reading falling back is recorded (once per crossing), the alarm stays.
            if row.normal_ts is None:
                before = snapshot(row)
                row.normal_ts = e.ts
                row.last_ts = max(row.last_ts, e.ts)
                self._log(
                    s,
                    out,
                    row,
                    before,
                    AlarmAction.NORMAL,
                    SYSTEM_ACTOR,
                    now,
                    "读数恢复 / reading back to normal",
                )
            return
        before = snapshot(row)
        row.cleared_ts = e.ts
        row.last_ts = max(row.last_ts, e.ts)
        self._clear(s, out, row, before, SYSTEM_ACTOR, "", now)

    def _latched_fire(self, s: Session, device_id: str) -> bool:
        """Whether the device has a fire alarm latched (active, acknowledged or not)."""
        return any(r.category == _FIRE and r.state in ACTIVE_STATES for r in _batch(s).of_device(device_id))

    def _supersede(self, s: Session, out: Outcome, fire: Alarm, now: float) -> None:
        """The device's fire alarm was raised: its open pre-alarms end, so the board shows the fire
        alone. Closed at once (the fire alarm is what is acknowledged and reset); addressed to no duty
        role, as the fire's own raise is."""
        pre_alarms = [r for r in _batch(s).of_device(fire.device_id) if r.category == _PRE_ALARM]
        for row in pre_alarms:
            before = snapshot(row)
            if row.state in ACTIVE_STATES:
                row.cleared_ts = now
            row.state = AlarmState.CLOSED.value
            row.closed_ts = now
            row.shelved_until = None
            note = f"已升级为火警 / superseded by the fire alarm #{fire.id}"
            self._log(s, out, row, before, AlarmAction.SUPERSEDED, SYSTEM_ACTOR, now, note)
            self.incidents.alarm_ended(s, out.incidents, row, now)

    def _device_reset(self, s: Session, out: Outcome, e: DetectorEvent, now: float) -> None:
        """The device was reset on site (its own RESET event): every latched fire alarm of it ends."""
        rows = [
            r for r in _batch(s).of_device(e.device_id) if r.category == _FIRE and r.state in ACTIVE_STATES
        ]
        for row in rows:
            self._reset(s, out, row, SYSTEM_ACTOR, "设备现场复位 / the device was reset on site", now, e.ts)

    def _reset(
        self, s: Session, out: Outcome, row: AlarmLike, actor: str, note: str, now: float, ts: float
    ) -> Transition:
        """End a latched fire alarm: the state a clear gives (then the normal close rules), and a
        stand-down to every duty role told about it."""
        before = snapshot(row)
        acked = row.state in ACKNOWLEDGED_STATES
        row.state = (AlarmState.CLEARED_ACKNOWLEDGED if acked else AlarmState.CLEARED_UNACKNOWLEDGED).value
        row.cleared_ts = ts
        row.last_ts = max(row.last_ts, ts)
        t = self._log(s, out, row, before, AlarmAction.RESET, actor, now, note)
        self.incidents.alarm_ended(s, out.incidents, row, now, reset_by=actor)
        return t

    def _new_row(self, alarm_id: int, e: DetectorEvent, now: float) -> Alarm:
        dev = self.index.dev_of.get(e.device_id)
        device = self.index.devices[dev] if dev is not None else None
        # An alarm whose key is not a device (e.g. an overdue ticket, "ticket:YH-...") says where it
        # belongs in its extras, so escalation by site and propagation up the place tree still work.
        return Alarm(
            id=alarm_id,
            device_id=e.device_id,
            alarm_type=e.alarm_type,
            category=e.category.value,
            severity=SEVERITY_OF[e.category].value,
            system=self.index.profiles[dev].system.value if dev is not None else "",
            site=self.index.sites[dev] if dev is not None else str(e.extra.get("site", "")),
            place=device.place if device is not None else str(e.extra.get("place", "")),
            department=device.department if device is not None else str(e.extra.get("department", "")),
            state=AlarmState.ACTIVE_UNACKNOWLEDGED.value,
            occurrences=1,
            first_ts=e.ts,
            last_ts=e.ts,
            raised_ts=now,
            value=e.value,
            peak=e.value,
            channel=e.channel,
            detail=e.detail,
            basis=e.basis,
            false_alarm=False,
            false_alarms=0,
            escalation_step=0,
            flapping=False,
            cleared_ts=None,
            acked_ts=None,
            acked_by=None,
            ack_note=None,
            closed_ts=None,
            escalation=None,
            escalate_at=None,
            remind_at=None,
            maintenance_id=None,
            shelved_until=None,
            shelved_by=None,
            shelve_note=None,
            normal_ts=None,
            incident_id=None,
            drill_id=None,
        )

    def _raised(
        self, s: Session, out: Outcome, row: Alarm, before: dict[str, object] | None, now: float
    ) -> None:
        """The alarm became active (new, or again after clearing): apply maintenance, flapping and
        escalation, then log RAISED (and FLAPPING when this raise makes the sensor unstable)."""
        row.raised_ts = now
        category = AlarmCategory(row.category)
        # In a drill's places and window (values held in memory, no read): a drill alarm. A drill
        # alarm raised again is decided anew (after its drill ended it is real); a real alarm raised
        # again stays real (one taken out of a drill must not slip back into it: when in doubt, alarm).
        if before is None or row.drill_id is not None:
            row.drill_id = drill_of(self._drills(s, row.category, now), row.category, row.place, now)
        row.maintenance_id = self._maintenance_for(s, row, now)
        # RAISED transitions of this key in the flapping window, closed alarms of it included (the
        # batch counted them when it began, with this `now`, and counts its own).
        raises = 1 + _batch(s).raises.get((row.device_id, row.alarm_type), 0)
        starts_flapping = not row.flapping and self.policy.is_flapping(raises)
        row.flapping = row.flapping or starts_flapping
        row.normal_ts = None
        # Who is told, and when again, is the incident's business (escalation runs per incident):
        # the alarm's own transitions reach only routes that ask for per-alarm pushes.
        self._log(s, out, row, before, AlarmAction.RAISED, SYSTEM_ACTOR, now)
        joined = self.incidents.attach(s, out.incidents, row, now, held=self._hold(row, now) is not None)
        if joined.ack_with_incident and row.state in UNACKNOWLEDGED_STATES:
            inc = joined.incident
            self._ack(s, out, row, SYSTEM_ACTOR, f"随事件 #{inc.id} 受理（{inc.acked_by}）", now)
        if category is AlarmCategory.FIRE:
            self._supersede(s, out, row, now)
        if needs_ticket(row):
            out.tickets.append(self.tickets.on_raised(s, row, now))
        if starts_flapping:
            held = category is not AlarmCategory.FIRE
            chain = self.policy.chain_for(category, row.site)
            flap_targets = self.policy.reached(chain, 0) if chain is not None else ()
            cycles, window = self.policy.settings.flap_cycles, self.policy.settings.flap_window_s
            self._log(
                s,
                out,
                row,
                snapshot(row),
                AlarmAction.FLAPPING,
                SYSTEM_ACTOR,
                now,
                f"{raises} raises in {window:g} s (limit {cycles}): "
                + ("notifications held" if held else "a fire alarm keeps notifying"),
                targets=flap_targets,
            )
            out.tickets.append(self.tickets.on_flapping(s, row, raises, window, held, now))

    def _drills(self, s: Session, category: str, now: float) -> tuple[DrillScope, ...]:
        """The drills an alarm of `category` raised now may belong to: the values held, or (several
        workers, `drill_reader`) those read once in this write, for a fire-side alarm only."""
        if self.drill_reader is None or category not in DRILL_TAGGED:
            return self.drills
        batch = _batch(s)
        if batch.drills is None:
            batch.drills = self.drill_reader(s, now)
        return batch.drills

    def _clear(
        self,
        s: Session,
        out: Outcome,
        row: AlarmLike,
        before: dict[str, object],
        actor: str,
        note: str,
        now: float,
    ) -> Transition:
        acked = row.state in ACKNOWLEDGED_STATES
        row.state = (AlarmState.CLEARED_ACKNOWLEDGED if acked else AlarmState.CLEARED_UNACKNOWLEDGED).value
        t = self._log(s, out, row, before, AlarmAction.CLEARED, actor, now, note)
        self.incidents.alarm_ended(s, out.incidents, row, now)
        return t

    def _hold(self, row: AlarmLike, now: float, *, flapping: bool | None = None) -> Hold | None:
        return self.policy.hold(
            AlarmCategory(row.category),
            shelved_until=row.shelved_until,
            flapping=row.flapping if flapping is None else flapping,
            maintenance=row.maintenance_id is not None,
            now=now,
        )

    def _log(
        self,
        s: Session,
        out: Outcome,
        row: AlarmLike,
        before: dict[str, object] | None,
        action: AlarmAction,
        actor: str,
        now: float,
        note: str = "",
        *,
        targets: tuple[str, ...] = (),
        push: bool = True,
    ) -> Transition:
        after = snapshot(row)
        # The FLAPPING notice itself goes out: it is how people learn notifications are now held.
        hold = self._hold(row, now, flapping=False if action is AlarmAction.FLAPPING else None)
        if hold is not None:
            targets = ()
        values: dict[str, Any] = {
            "alarm_id": row.id,
            "ts": now,
            "action": action.value,
            "actor": actor,
            "note": note,
            "before": before,
            "after": after,
            "targets": list(targets),
            "held": hold.value if hold else "",
        }
        batch = batch_of(s)
        if batch is not None:
            # The bulk path: the event row is inserted with the batch's others at its end
            # (_settle), whose ids build the transitions and their pushes then. What returns here
            # is provisional.
            if action is AlarmAction.RAISED:
                assert isinstance(row, Alarm)  # the bulk path holds its alarms as values
                batch.raised(row)
            fields: dict[str, Any] = {
                "alarm_id": row.id,
                "action": action,
                "before": before,
                "after": after,
                "actor": actor,
                "ts": now,
                "note": note,
                "targets": targets,
                "held": hold.value if hold else "",
            }
            batch.transitions.append(PendingTransition(values, fields, push, row.place))
            return Transition(0, **fields)
        event = AlarmEventRow(**values)
        s.add(event)
        s.flush()  # assigns the event id the live streams resume from
        t = Transition(
            event.id, row.id, action, before, after, actor, now, note, targets, hold.value if hold else ""
        )
        if self.routes and push and hold is None:
            # Same session, same transaction: the transition and the pushes it owes commit together.
            enqueue(s, self._alarm_routes(t), t, self.index.place_label(row.place), now)
        out.transitions.append(t)
        return t

    def _alarm_routes(self, t: Transition) -> list[PushRoute]:
        """The routes an alarm's own transition may go to: a drill alarm's only to the alarm topic
        (integrations, which see its `drill_id`), never to the people on duty (docs/drills.md)."""
        if t.after.get("drill_id") is None:
            return self.routes
        return [r for r in self.routes if r.name == ALARM_TOPIC_NAME]

    # --- human actions ---------------------------------------------------------------------------
    def _locked(self, s: Session, alarm_id: int) -> AlarmRow:
        row = s.get(AlarmRow, alarm_id, with_for_update=True)
        if row is None:
            raise AlarmNotFoundError(f"alarm {alarm_id} does not exist")
        return row

    def acknowledge(
        self, alarm_id: int, *, actor: str, note: str = "", false_alarm: bool = False
    ) -> Transition:
        """A person has seen the alarm: escalation stops, and everyone told so far hears so."""
        now = self.clock()

        def work(s: Session, out: Outcome) -> Transition:
            row = self._locked(s, alarm_id)
            state = AlarmState(row.state)
            if state.value not in UNACKNOWLEDGED_STATES:
                raise InvalidTransitionError(f"alarm {alarm_id} is {state.value}: nothing to acknowledge")
            t = self._ack(s, out, row, actor, note, now, false_alarm=false_alarm)
            self._ack_incident_if_done(s, out, row, actor, note, now)
            return t

        return self._write(work)[0]

    def _ack_incident_if_done(
        self, s: Session, out: Outcome, row: AlarmRow, actor: str, note: str, now: float
    ) -> None:
        """Acknowledging the last unacknowledged alarm of an incident acknowledges the incident."""
        if row.incident_id is None:
            return
        inc = s.get(IncidentRow, row.incident_id, with_for_update=True)
        if inc is None or inc.acked_ts is not None or inc.state == IncidentState.CLOSED.value:
            return
        unacked = s.scalar(members(inc.id).where(AlarmRow.state.in_(UNACKNOWLEDGED_STATES)).limit(1))
        if unacked is None:
            self.incidents.acknowledged(s, out.incidents, inc, actor, note, now)

    def _ack(
        self,
        s: Session,
        out: Outcome,
        row: AlarmLike,
        actor: str,
        note: str,
        now: float,
        *,
        false_alarm: bool = False,
    ) -> Transition:
        before = snapshot(row)
        row.acked_ts = now
        row.acked_by = actor
        row.ack_note = note
        row.false_alarm = false_alarm
        row.false_alarms += 1 if false_alarm else 0
        active = AlarmState(row.state).is_active
        row.state = (AlarmState.ACTIVE_ACKNOWLEDGED if active else AlarmState.CLEARED_ACKNOWLEDGED).value
        return self._log(s, out, row, before, AlarmAction.ACKNOWLEDGED, actor, now, note)

    def clear(self, alarm_id: int, *, actor: str, note: str = "") -> Transition:
        """A person clears an active alarm (e.g. after a device was reset on site)."""
        now = self.clock()

        def work(s: Session, out: Outcome) -> Transition:
            row = self._locked(s, alarm_id)
            if not AlarmState(row.state).is_active:
                raise InvalidTransitionError(
                    f"alarm {alarm_id} is {row.state}: only an active alarm can be cleared"
                )
            if latches(AlarmCategory(row.category)):
                # One way to end a fire alarm, named as on the panel, so the log and the audit say
                # "reset" every time (GB 4717 复位).
                raise InvalidTransitionError(
                    f"alarm {alarm_id} is a fire alarm: it latches until reset (复位), "
                    f"POST /api/v1/alarms/{alarm_id}/reset"
                )
            before = snapshot(row)
            row.cleared_ts = now
            return self._clear(s, out, row, before, actor, note, now)

        return self._write(work)[0]

    def reset(self, alarm_id: int, *, actor: str, note: str = "") -> Transition:
        """A person resets (复位) a latched fire alarm: it ends as a clear does, those told stand down,
        and a condition that persists raises it again (the caller makes the detector forget)."""
        now = self.clock()

        def work(s: Session, out: Outcome) -> Transition:
            row = self._locked(s, alarm_id)
            if not latches(AlarmCategory(row.category)):
                raise InvalidTransitionError(
                    f"alarm {alarm_id} is a {row.category} alarm: only a fire alarm latches; clear it instead"
                )
            if not AlarmState(row.state).is_active:
                raise InvalidTransitionError(
                    f"alarm {alarm_id} is {row.state}: it is not latched, nothing to reset"
                )
            return self._reset(s, out, row, actor, note, now, now)

        return self._write(work)[0]

    def close(self, alarm_id: int, *, actor: str, note: str = "") -> Transition:
        """A person closes a cleared and acknowledged alarm now, freeing its key."""
        now = self.clock()

        def work(s: Session, out: Outcome) -> Transition:
            row = self._locked(s, alarm_id)
            state = AlarmState(row.state)
            if state is not AlarmState.CLEARED_ACKNOWLEDGED:
                hint = {
                    AlarmState.CLOSED: "it is already closed",
                    AlarmState.CLEARED_UNACKNOWLEDGED: "acknowledge it first",
                }.get(
                    state,
                    "it is latched: reset it first"
                    if latches(AlarmCategory(row.category))
                    else "it is still active: clear it first",
                )
                raise InvalidTransitionError(f"alarm {alarm_id} is {state.value}: {hint}")
            return self._close(s, out, row, actor, note, now)

        return self._write(work)[0]

    def _close(
        self, s: Session, out: Outcome, row: AlarmRow, actor: str, note: str, now: float
    ) -> Transition:
        before = snapshot(row)
        row.state = AlarmState.CLOSED.value
        row.closed_ts = now
        row.shelved_until = None
        return self._log(s, out, row, before, AlarmAction.CLOSED, actor, now, note)

    def shelve(self, alarm_id: int, *, actor: str, until: float, note: str) -> Transition:
        """Hold an alarm's notifications until `until` (never a fire alarm; at most shelve_max_s)."""
        now = self.clock()

        def work(s: Session, out: Outcome) -> Transition:
            row = self._locked(s, alarm_id)
            if not AlarmState(row.state).is_open:
                raise InvalidTransitionError(f"alarm {alarm_id} is closed: nothing to shelve")
            try:
                expires = self.policy.shelve_until(AlarmCategory(row.category), until, now)
            except PolicyError as exc:
                raise InvalidTransitionError(f"alarm {alarm_id}: {exc}") from None
            before = snapshot(row)
            row.shelved_until, row.shelved_by, row.shelve_note = expires, actor, note
            return self._log(s, out, row, before, AlarmAction.SHELVED, actor, now, note)

        return self._write(work)[0]

    def unshelve(self, alarm_id: int, *, actor: str, note: str = "") -> Transition:
        now = self.clock()

        def work(s: Session, out: Outcome) -> Transition:
            row = self._locked(s, alarm_id)
            if row.shelved_until is None:
                raise InvalidTransitionError(f"alarm {alarm_id} is not shelved")
            return self._unshelve(s, out, row, actor, note, now)

        return self._write(work)[0]

    def _unshelve(
        self, s: Session, out: Outcome, row: AlarmRow, actor: str, note: str, now: float
    ) -> Transition:
        before = snapshot(row)
        row.shelved_until = row.shelved_by = row.shelve_note = None
        t = self._log(s, out, row, before, AlarmAction.UNSHELVED, actor, now, note)
        self._resume_notices(s, out, row, now)
        return t

    def _resume_notices(self, s: Session, out: Outcome, row: AlarmLike, now: float) -> None:
        """After a hold ends: an alarm nobody acknowledged is told through its incident, if nobody
        was told about that incident yet."""
        if row.state in UNACKNOWLEDGED_STATES and self._hold(row, now) is None:
            self.incidents.released(s, out.incidents, row, now)

    # --- incidents: handled as one ------------------------------------------------------------------
    def _incident_step(
        self, incident_id: int, step: Callable[[Session, Outcome, IncidentRow, float], IncidentUpdate]
    ) -> IncidentStep:
        """Run one human step on an incident in one transaction; returns the step and the alarm
        transitions it made (the caller hands those to the detectors, as for an alarm action)."""
        now = self.clock()

        def work(s: Session, out: Outcome) -> IncidentUpdate:
            inc = s.get(IncidentRow, incident_id, with_for_update=True)
            if inc is None:
                raise IncidentNotFoundError(f"incident {incident_id} does not exist")
            try:
                return step(s, out, inc, now)
            except IncidentError as exc:
                raise InvalidTransitionError(str(exc)) from None

        update, out = self._write(work)
        return IncidentStep(update, out.transitions)

    def _ack_members(
        self, s: Session, out: Outcome, inc: IncidentRow, actor: str, note: str, now: float
    ) -> int:
        rows = s.scalars(
            members(inc.id).where(AlarmRow.state.in_(UNACKNOWLEDGED_STATES)).with_for_update()
        ).all()
        for row in rows:
            self._ack(s, out, row, actor, note or f"随事件 #{inc.id} 受理", now)
        return len(rows)

    def acknowledge_incident(self, incident_id: int, *, actor: str, note: str = "") -> IncidentStep:
        """A person took the incident: all its unacknowledged alarms are acknowledged with it, its
        escalation stops, and everyone told so far hears who took it."""

        def step(s: Session, out: Outcome, inc: IncidentRow, now: float) -> IncidentUpdate:
            if inc.state == IncidentState.CLOSED.value:
                raise IncidentError(f"incident {inc.id} is closed")
            self._ack_members(s, out, inc, actor, note, now)
            return self.incidents.acknowledged(s, out.incidents, inc, actor, note, now)

        return self._incident_step(incident_id, step)

    def verify_incident(
        self, incident_id: int, *, actor: str, verifier: str = "", note: str = ""
    ) -> IncidentStep:
        """Someone went to check (核实中): who, and when."""

        def step(s: Session, out: Outcome, inc: IncidentRow, now: float) -> IncidentUpdate:
            if inc.state == IncidentState.CLOSED.value:
                raise IncidentError(f"incident {inc.id} is closed")
            return self.incidents.verifying(s, out.incidents, inc, actor, verifier, note, now)

        return self._incident_step(incident_id, step)

    def decide_incident(
        self,
        incident_id: int,
        *,
        actor: str,
        verdict: Verification,
        cause: FalseAlarmCause | None = None,
        note: str = "",
    ) -> IncidentStep:
        """The verdict: a real fire (真实火警: the 119 call is prompted), a false alarm with its cause
        (its fire-side alarms count against their devices) or a test. A person who decides has seen
        it: the incident and its alarms are acknowledged too."""

        def step(s: Session, out: Outcome, inc: IncidentRow, now: float) -> IncidentUpdate:
            if inc.state == IncidentState.CLOSED.value:
                raise IncidentError(f"incident {inc.id} is closed")
            u = self.incidents.verdict(
                s, out.incidents, inc, actor, verdict, cause.value if cause else None, note, now
            )
            self._ack_members(s, out, inc, actor, note, now)
            if inc.acked_ts is None:
                self.incidents.acknowledged(s, out.incidents, inc, actor, note, now)
            if verdict is not Verification.CONFIRMED:
                # After the acknowledgements, which set the flag from their own request.
                for row in s.scalars(members(inc.id).with_for_update()).all():
                    fire_side = AlarmCategory(row.category) in (AlarmCategory.FIRE, AlarmCategory.PRE_ALARM)
                    if fire_side and not row.false_alarm:
                        row.false_alarm = True
                        row.false_alarms += 1
            return u

        return self._incident_step(incident_id, step)

    def record_119_call(
        self, incident_id: int, *, actor: str, at: float | None = None, note: str = ""
    ) -> IncidentStep:
        """When 119 was called for this incident (GB 25506-2010 §4.2.2), and by whom."""

        def step(s: Session, out: Outcome, inc: IncidentRow, now: float) -> IncidentUpdate:
            return self.incidents.called_119(
                s, out.incidents, inc, actor, now if at is None else at, note, now
            )

        return self._incident_step(incident_id, step)

    def take_out_of_drill(self, incident_id: int, *, actor: str, note: str = "") -> IncidentStep:
        """这是真实火警: a drill's incident is a real fire after all. It and its alarms lose the drill,
        a drill verdict is undone (verified afresh), and it is told at once to the people on duty as
        a fire just opened, its escalation and verification clocks starting now (docs/drills.md)."""

        def step(s: Session, out: Outcome, inc: IncidentRow, now: float) -> IncidentUpdate:
            if inc.drill_id is None:
                raise IncidentError(f"incident {inc.id} is not a drill's")
            for row in s.scalars(members(inc.id).with_for_update()).all():
                row.drill_id = None
                if row.false_alarm:  # a drill's verdict counted it; a real fire's will decide
                    row.false_alarm = False
                    row.false_alarms = max(0, row.false_alarms - 1)
            return self.incidents.out_of_drill(s, out.incidents, inc, actor, note, now)

        return self._incident_step(incident_id, step)

    def reset_incident(self, incident_id: int, *, actor: str, note: str = "") -> IncidentStep:
        """Reset (复位) every latched fire alarm of the incident, as one action at the panel."""

        def step(s: Session, out: Outcome, inc: IncidentRow, now: float) -> IncidentUpdate:
            latched = [
                row
                for row in s.scalars(
                    members(inc.id).where(AlarmRow.state.in_(ACTIVE_STATES)).with_for_update()
                ).all()
                if latches(AlarmCategory(row.category))
            ]
            if not latched:
                raise IncidentError(f"incident {inc.id} has no latched fire alarm: nothing to reset")
            u = self.incidents.reset_logged(s, out.incidents, inc, actor, note, now)
            for row in latched:
                self._reset(s, out, row, actor, note or f"事件 #{inc.id} 复位", now, now)
            return u

        return self._incident_step(incident_id, step)

    # --- maintenance -----------------------------------------------------------------------------
    def begin_maintenance(
        self,
        *,
        site: str,
        place: str | None,
        device_ids: Sequence[str],
        start: float | None,
        end: float,
        ticket_id: int | None,
        reason: str,
        actor: str,
    ) -> MaintenanceRow:
        """Declare a maintenance window: alarms raised on the devices it covers are recorded, not
        pushed; fire alarms are pushed anyway, marked "during maintenance"."""
        now = self.clock()
        begin = now if start is None else start
        try:
            begin, end = self.policy.maintenance_window(begin, end, now)
        except PolicyError as exc:
            raise InvalidTransitionError(str(exc)) from None
        if place is None and not device_ids:
            raise InvalidTransitionError("a maintenance window needs a place or device ids")
        if place is not None and place.split("/")[0] != site:
            raise InvalidTransitionError(f"place {place!r} is not in site {site!r}")
        unknown = [d for d in device_ids if d not in self.index.dev_of]
        if unknown:
            raise InvalidTransitionError(f"unknown devices: {', '.join(unknown[:10])}")

        def work(s: Session, out: Outcome) -> MaintenanceRow:
            if ticket_id is not None:
                ticket = s.get(TicketRow, ticket_id)
                if ticket is None:
                    raise InvalidTransitionError(f"ticket {ticket_id} does not exist")
                if ticket.status == TicketStatus.CLOSED.value:
                    raise InvalidTransitionError(f"ticket {ticket_id} is closed")
            row = MaintenanceRow(
                site=site,
                place=place,
                device_ids=list(device_ids),
                ticket_id=ticket_id,
                reason=reason,
                start_ts=begin,
                end_ts=end,
                created_by=actor,
                created_ts=now,
                end_note="",
            )
            s.add(row)
            s.flush()
            self._audit(s, actor, "maintenance.begin", row, now)
            return row

        return self._write(work)[0]

    def end_maintenance(self, maintenance_id: int, *, actor: str, note: str = "") -> list[Transition]:
        """End a window early; alarms it held that nobody acknowledged are notified now."""
        now = self.clock()

        def work(s: Session, out: Outcome) -> None:
            row = s.get(MaintenanceRow, maintenance_id, with_for_update=True)
            if row is None:
                raise MaintenanceNotFoundError(f"maintenance window {maintenance_id} does not exist")
            if row.ended_ts is not None:
                raise InvalidTransitionError(f"maintenance window {maintenance_id} has already ended")
            self._end_window(s, out, row, actor, note, now)

        return self._write(work)[1].transitions

    def _end_window(
        self, s: Session, out: Outcome, w: MaintenanceRow, actor: str, note: str, now: float
    ) -> None:
        w.ended_ts, w.ended_by, w.end_note = now, actor, note
        self._audit(s, actor, "maintenance.end", w, now)
        held = s.scalars(
            select(AlarmRow)
            .where(AlarmRow.maintenance_id == w.id, AlarmRow.state != AlarmState.CLOSED.value)
            .with_for_update()
        ).all()
        for alarm in held:
            before = snapshot(alarm)
            alarm.maintenance_id = None
            unacked = alarm.state in UNACKNOWLEDGED_STATES
            self._log(
                s,
                out,
                alarm,
                before,
                AlarmAction.RELEASED,
                actor,
                now,
                f"maintenance #{w.id} ended",
                push=unacked,
            )
            self._resume_notices(s, out, alarm, now)

    def _maintenance_for(self, s: Session, row: Alarm, now: float) -> int | None:
        windows = [w for w in _batch(s).maintenance_windows(s, now) if w.site == row.site]
        for w in windows:
            ticket_closed = False
            if w.ticket_id is not None:
                status = s.scalar(select(TicketRow.status).where(TicketRow.id == w.ticket_id))
                ticket_closed = status == TicketStatus.CLOSED.value
            scope = MaintenanceScope(
                w.id, w.site, w.place, tuple(w.device_ids), w.start_ts, w.end_ts, False, ticket_closed
            )
            if covers(scope, row.device_id, row.site, row.place, now):
                return w.id
        return None

    @staticmethod
    def _audit(s: Session, actor: str, action: str, w: MaintenanceRow, now: float) -> None:
        s.add(
            AuditRow(
                ts=now,
                actor=actor,
                action=action,
                subject=f"maintenance:{w.id}",
                detail={
                    "site": w.site,
                    "place": w.place,
                    "device_ids": list(w.device_ids),
                    "ticket_id": w.ticket_id,
                    "reason": w.reason,
                    "start_ts": w.start_ts,
                    "end_ts": w.end_ts,
                    "note": w.end_note,
                },
            )
        )

    # --- the policy clock ------------------------------------------------------------------------
    def tick(self) -> list[Transition]:
        """Apply everything that falls due by now: expired shelving and maintenance, flapping
        sensors gone steady, escalation steps and reminders, quiet cleared alarms closing.

        A read-only look first: most ticks find nothing due and then take no write lock (on SQLite
        the write lock is the whole database's, shared with ingest and the dispatcher)."""
        now = self.clock()
        if not self._anything_due(now):
            return []

        def work(s: Session, out: Outcome) -> None:
            # Several workers (docs/scale.md): the duties lease gives the clock to one, but a
            # takeover may overlap two for a few seconds. The second to come skips this tick rather
            # than wait (whatever is still due, its next tick applies); row locks alone would also
            # keep each step once, but every row would be contended.
            if not try_hold(s.connection(), Space.ALARM_CLOCK, "tick"):
                return
            for row in s.scalars(_shelving_expired(now).with_for_update()).all():
                self._unshelve(s, out, row, SYSTEM_ACTOR, "shelving expired", now)
            for w in s.scalars(_maintenance_expired(now).with_for_update()).all():
                self._end_window(s, out, w, SYSTEM_ACTOR, "expired", now)
            for row in s.scalars(_flapping().with_for_update()).all():
                if self.policy.is_steady(row.raised_ts, now):
                    before = snapshot(row)
                    row.flapping = False
                    self._log(s, out, row, before, AlarmAction.STEADY, SYSTEM_ACTOR, now)
                    self._resume_notices(s, out, row, now)
            self.incidents.tick(s, out.incidents, now)
            for row in s.scalars(_cleared_acknowledged().with_for_update()).all():
                if self.policy.closes(row.cleared_ts, row.acked_ts, now):
                    self._close(s, out, row, SYSTEM_ACTOR, "closed after a quiet period", now)

        return self._write(work)[1].transitions

    def _anything_due(self, now: float) -> bool:
        """Whether `tick` would change anything now (the same selections, read-only)."""
        with self.sessions() as s:
            for q in (_shelving_expired(now), _maintenance_expired(now)):
                if s.execute(q.limit(1)).first() is not None:
                    return True
            if self.incidents.anything_due(s, now):
                return True
            if any(self.policy.is_steady(row.raised_ts, now) for row in s.scalars(_flapping())):
                return True
            return any(
                self.policy.closes(row.cleared_ts, row.acked_ts, now)
                for row in s.scalars(_cleared_acknowledged())
            )

    # --- statistics ------------------------------------------------------------------------------
    def false_alarm_counts(
        self, *, site: str | None = None, since: float | None = None, until: float | None = None
    ) -> list[tuple[str, int, int]]:
        """(device, false-alarm acknowledgements, alarms) per device, most false alarms first, over
        alarms first raised in [since, until)."""
        # A drill's alarms are left out: a drill's verdict (test, false alarm) says nothing about
        # the device (docs/drills.md).
        q = (
            select(AlarmRow.device_id, func.sum(AlarmRow.false_alarms), func.count())
            .where(AlarmRow.drill_id.is_(None))
            .group_by(AlarmRow.device_id)
        )
        if site is not None:
            q = q.where(AlarmRow.site == site)
        if since is not None:
            q = q.where(AlarmRow.first_ts >= since)
        if until is not None:
            q = q.where(AlarmRow.first_ts < until)
        with self.sessions() as s:
            rows = [(d, int(f or 0), int(n)) for d, f, n in s.execute(q)]
        return sorted(rows, key=lambda r: (-r[1], -r[2], r[0]))


# --- what `tick` looks for -------------------------------------------------------------------------
def _batch(s: Session) -> AlarmBatch:
    """The bulk write's index: detector events are only ever applied through `apply`."""
    batch = batch_of(s)
    if batch is None:
        raise AssertionError("detector events are applied in a bulk write (AlarmService.apply)")
    return batch


def _shelving_expired(now: float) -> Select[AlarmRow]:
    return select(AlarmRow).where(AlarmRow.shelved_until <= now, AlarmRow.state != AlarmState.CLOSED.value)


def _maintenance_expired(now: float) -> Select[MaintenanceRow]:
    """Windows past their end, or tied to a ticket that has been closed."""
    closed_ticket = (
        select(TicketRow.id)
        .where(TicketRow.id == MaintenanceRow.ticket_id, TicketRow.status == TicketStatus.CLOSED.value)
        .exists()
    )
    return (
        select(MaintenanceRow)
        .where(MaintenanceRow.ended_ts.is_(None))
        .where(or_(MaintenanceRow.end_ts <= now, closed_ticket))
    )


def _flapping() -> Select[AlarmRow]:
    return select(AlarmRow).where(AlarmRow.flapping.is_(True), AlarmRow.state != AlarmState.CLOSED.value)


def _cleared_acknowledged() -> Select[AlarmRow]:
    return select(AlarmRow).where(AlarmRow.state == AlarmState.CLEARED_ACKNOWLEDGED.value)
