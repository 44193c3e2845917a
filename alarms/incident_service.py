"""Incidents kept in the state store: alarms join them as they are raised, the incident's timeline
records every step, and its escalation and verification clock run here.

Everything runs inside the alarm service's transactions (alarms/service.py calls in with its
session), so an alarm, its incident, the incident's timeline and the pushes they owe commit
together or not at all. The grouping rules are alarms/incidents.py's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from accounts.display_names import person_zh, read_display_names
from alarms.alarm_values import Alarm, AlarmLike
from alarms.batch import AlarmBatch, PendingIncidentStep, batch_of, group_lock_name
from alarms.drills import ALARM_TOPIC_NAME, group_suffix
from alarms.incident_values import Incident, IncidentLike
from alarms.incidents import group_key, grow, kind_of, latched_kind, worse
from alarms.model import IncidentUpdate, incident_snapshot
from alarms.outbox import enqueue_incident
from alarms.policy import Escalation, Policy
from core.domain import (
    ACTIVE_STATES,
    SEVERITY_OF,
    AlarmCategory,
    DetectorEvent,
    DetectorEventKind,
    IncidentAction,
    IncidentKind,
    IncidentState,
    Verification,
)
from core.settings import AlarmPolicySettings, PushRoute
from detectors.fusion import CONFIRMED as ZONE_CONFIRMED
from detectors.liveness import OUTAGE_KEY_PREFIX
from ingest.index import DeviceIndex
from storage.models import AlarmRow, IncidentEventRow, IncidentRow

SYSTEM_ACTOR = "firewatch"


# Incidents that are verified on the duty clock: a fire, and a gas leak that reached its fire level.
VERIFIED_KINDS = (IncidentKind.FIRE.value, IncidentKind.GAS.value)


class IncidentError(ValueError):
    """The requested step does not apply to the incident as it stands; the message says why."""


@dataclass(frozen=True, slots=True)
class Joined:
    """What attaching an alarm did."""

    incident: Incident
    action: IncidentAction
    # The incident was already acknowledged and this alarm adds nothing that needs a person again
    # (same zone, no worse): the alarm is acknowledged with it, so nobody handles it twice.
    ack_with_incident: bool


class IncidentBook:
    def __init__(self, policy: Policy, index: DeviceIndex, routes: list[PushRoute]) -> None:
        self.policy = policy
        self.index = index
        self.routes = routes
        # The routes each drill's incidents are pushed on (alarms/drills.py recipient_routes), by
        # drill id; a drill incident whose drill is not here goes to the alarm topic alone.
        self.drill_routes: dict[int, list[PushRoute]] = {}

    @property
    def settings(self) -> AlarmPolicySettings:
        return self.policy.settings

    # --- alarms joining ---------------------------------------------------------------------------
    def attach(
        self, s: Session, out: list[IncidentUpdate], alarm: Alarm, now: float, *, held: bool
    ) -> Joined:
        """The alarm became active (new, or again): it joins its open incident or opens one.

        `held`: the alarm's notifications are held (shelved, flapping, maintenance; never a fire),
        so it does not start the incident's notices on its own."""
        batch = batch_of(s)
        if batch is None:
            raise AssertionError("alarms join incidents in a bulk write (AlarmService.apply)")
        category = AlarmCategory(alarm.category)
        kind = kind_of(category, alarm.system, alarm.alarm_type)
        inc = batch.incident(s, alarm.incident_id) if alarm.incident_id else None
        if inc is not None and (not self._joinable(inc, now) or inc.drill_id != alarm.drill_id):
            inc = None  # a real alarm never joins a drill's incident, nor a drill alarm a real one
        rejoining = inc is not None
        if inc is None:
            inc = self._open_incident_for(s, kind, alarm, now)
        if inc is None:
            return Joined(
                self._open(s, out, alarm, kind, category, now, held=held), IncidentAction.OPENED, False
            )
        _join(s, alarm, inc)
        was_acked = inc.acked_ts is not None
        # The incident's place is already the common place of all its places (kept so at every
        # join): growing from it alone is the same, without a pass over every place per alarm.
        growth = grow([inc.place], inc.zones, inc.floors, alarm.place)
        before_category = AlarmCategory(inc.category)
        new_category = worse(before_category, category)
        upgraded = new_category is not before_category
        # Only what changes is set: on an ORM row (human actions) each set is instrumented work,
        # and a join mostly leaves these as they were (a set to the same value writes nothing).
        if upgraded:
            inc.category = new_category.value
        if inc.severity != (severity := SEVERITY_OF[new_category].value):
            inc.severity = severity
        if inc.place != growth.place:
            inc.place = growth.place
        if alarm.place and alarm.place not in inc.places:
            inc.places = [*inc.places, alarm.place]
        if growth.new_zone is not None:
            inc.zones = [*inc.zones, growth.new_zone]
        if growth.new_floor is not None:
            inc.floors = [*inc.floors, growth.new_floor]
        if alarm.last_ts > inc.last_ts:
            inc.last_ts = alarm.last_ts
        if alarm.alarm_type == ZONE_CONFIRMED and inc.zone_confirmed_ts is None:
            inc.zone_confirmed_ts = now
        self._count(s, inc)
        # Closed (ended and handled) and alarming again: people must take it again. Ended but not
        # yet acknowledged, it is still being escalated: the alarm just joins (a flapping sensor
        # must not push every cycle).
        reopened = inc.state == IncidentState.CLOSED.value
        if inc.state != IncidentState.OPEN.value:
            inc.state, inc.ended_ts, inc.closed_ts = IncidentState.OPEN.value, None, None
            inc.reset_ts = inc.reset_by = None  # the timeline keeps the earlier reset
        if category is AlarmCategory.FIRE and inc.fire_ts is None:
            self._fire_started(inc, now)
        if upgraded:
            action = IncidentAction.UPGRADED
        elif reopened:
            action = IncidentAction.REOPENED
        elif growth.spread and not rejoining:
            action = IncidentAction.SPREAD
        else:
            action = IncidentAction.JOINED
        targets: tuple[str, ...] = ()
        if held and not inc.notified:
            pass  # nothing to tell yet: a held alarm in an incident nobody was told about
        elif upgraded or reopened or not inc.notified:
            # Worse than what people were told (a pre-alarm became a fire), alarming again after it
            # ended, or the first alarm that may be told: a person must look again, and the chain
            # for what it now is starts over.
            inc.acked_ts, inc.acked_by, inc.ack_note = None, None, ""
            targets = self._start_escalation(inc, now)
            action = IncidentAction.OPENED if not inc.notified else action
            inc.notified = True
        elif action is IncidentAction.SPREAD:
            targets = self._reached(inc)
            if was_acked:
                # Acknowledged for where it was; a fire now elsewhere needs acknowledging anew.
                inc.acked_ts, inc.acked_by, inc.ack_note = None, None, ""
                targets = self._start_escalation(inc, now)
        self.log(s, out, inc, action, SYSTEM_ACTOR, now, self._alarm_note(alarm), targets, alarm.id)
        ack_with = was_acked and inc.acked_ts is not None and not held
        return Joined(inc, action, ack_with)

    def lock_groups(self, s: Session, batch: AlarmBatch, events: Sequence[DetectorEvent]) -> None:
        """Take, up front and in one order, the incident-group locks the batch's raises may need
        (AlarmBatch.lock_groups): those of events that may make an alarm active, not repeats of an
        alarm already active. An alarm whose group differs from this estimate (its place changed in
        the registry since it was raised) takes its group's lock when it looks (`_open_incident_for`)."""
        names = set()
        for e in events:
            if e.kind is not DetectorEventKind.RAISE:
                continue
            found = batch.open_alarm(e.device_id, e.alarm_type)
            if found is not None and found.state in ACTIVE_STATES:
                continue
            dev = self.index.dev_of.get(e.device_id)
            if dev is not None:
                place, system = self.index.devices[dev].place, self.index.profiles[dev].system.value
            else:
                place, system = str(e.extra.get("place", "")), ""
            kind = kind_of(e.category, system, e.alarm_type)
            names.add(group_lock_name(kind.value, group_key(kind, place or e.device_id)))
        batch.lock_groups(s, names)

    def _open_incident_for(self, s: Session, kind: IncidentKind, alarm: Alarm, now: float) -> Incident | None:
        base = group_key(kind, alarm.place or alarm.device_id)
        key = base + group_suffix(alarm.drill_id)
        batch = batch_of(s)
        if batch is None:
            raise AssertionError("alarms join incidents in a bulk write (AlarmService.apply)")
        # Another worker may be opening this group's incident right now (a fire across partitions):
        # the group's lock first, then the look (AlarmBatch.lock_groups says why).
        batch.lock_groups(s, [group_lock_name(kind.value, base)])
        # The newest three, as the query gives (incidents opened in this batch went first).
        cached = batch.candidates_for(s, kind.value, key, now - self.settings.incident_gap_s)
        return next((inc for inc in cached[:3] if self._joinable(inc, now)), None)

    def _joinable(self, inc: IncidentLike, now: float) -> bool:
        """Whether a new alarm of its kind and place is part of this incident.

        An open fire or gas incident takes it however old; other kinds only while their last alarm is
        recent. After the incident ended, a fire confirmed real that alarms again soon (even once
        closed) is the same fire coming back (复燃): its verdict and 119 call stay with it. After a
        false alarm or a test, a new alarm is a new incident, verified afresh (when in doubt, alarm)."""
        recent = now - self.settings.incident_gap_s
        if not latched_kind(IncidentKind(inc.kind)) and inc.last_ts < recent:
            return False
        if inc.state == IncidentState.OPEN.value:
            return True
        verdict = Verification(inc.verification)
        if inc.state == IncidentState.ENDED.value:
            return verdict in (Verification.PENDING, Verification.VERIFYING, Verification.CONFIRMED)
        return verdict is Verification.CONFIRMED and inc.closed_ts is not None and inc.closed_ts >= recent

    def _open(
        self,
        s: Session,
        out: list[IncidentUpdate],
        alarm: Alarm,
        kind: IncidentKind,
        category: AlarmCategory,
        now: float,
        *,
        held: bool,
    ) -> Incident:
        batch = batch_of(s)
        if batch is None:
            raise AssertionError("alarms open incidents in a bulk write (AlarmService.apply)")
        place = alarm.place or alarm.device_id
        growth = grow([], [], [], place)
        # Its id taken now (AlarmBatch.incident_id): the row goes in with the batch's others at its
        # end (AlarmBatch.settle_alarms), not at a flush of its own.
        inc = Incident(
            id=batch.incident_id(s),
            kind=kind.value,
            category=category.value,
            severity=SEVERITY_OF[category].value,
            site=alarm.site,
            group_key=group_key(kind, place) + group_suffix(alarm.drill_id),
            place=place,
            places=[place],
            zones=[growth.new_zone] if growth.new_zone else [],
            floors=[growth.new_floor] if growth.new_floor else [],
            state=IncidentState.OPEN.value,
            first_alarm_id=alarm.id,
            alarm_count=1,
            device_count=1,
            active_count=1,
            zone_confirmed_ts=now if alarm.alarm_type == ZONE_CONFIRMED else None,
            devices=[],
            first_ts=alarm.first_ts,
            last_ts=alarm.last_ts,
            opened_ts=now,
            ack_note="",
            verification=Verification.PENDING.value,
            verdict_note="",
            call_119_note="",
            notified=not held,
            escalation_step=0,
            fire_ts=None,
            acked_ts=None,
            acked_by=None,
            verifier=None,
            verifying_ts=None,
            verdict_ts=None,
            verdict_by=None,
            cause=None,
            verify_due_ts=None,
            verify_overdue_ts=None,
            call_119_ts=None,
            call_119_by=None,
            reset_ts=None,
            reset_by=None,
            ended_ts=None,
            closed_ts=None,
            escalation=None,
            escalate_at=None,
            remind_at=None,
            drill_id=alarm.drill_id,
        )
        if category is AlarmCategory.FIRE:
            self._fire_started(inc, now)
        batch.opened(inc)
        _join(s, alarm, inc)
        targets = () if held else self._start_escalation(inc, now)
        self.log(
            s, out, inc, IncidentAction.OPENED, SYSTEM_ACTOR, now, self._alarm_note(alarm), targets, alarm.id
        )
        return inc

    def _fire_started(self, inc: IncidentLike, now: float) -> None:
        inc.fire_ts = now
        if not Verification(inc.verification).decided:
            inc.verify_due_ts = now + self.settings.verify_limit_s

    @staticmethod
    def _alarm_note(alarm: AlarmLike) -> str:
        return f"{alarm.alarm_type} @ {alarm.place or alarm.device_id} ({alarm.device_id})"

    @staticmethod
    def _count(s: Session, inc: IncidentLike) -> None:
        batch = batch_of(s)
        if batch is not None:  # the incident's alarms, kept in memory through the batch
            assert isinstance(inc, Incident)  # the bulk path holds its incidents as values
            tally = batch.tally(s, inc)
            # Set only when changed: the batch writes an incident's columns whose values differ
            # from what it read (alarms/incident_values.py), so a set to the same value is a no-op.
            devices = len(inc.devices) if inc.devices else len(tally.per_device)
            if inc.alarm_count != len(tally.members):
                inc.alarm_count = len(tally.members)
            if inc.device_count != devices:
                inc.device_count = devices
            if inc.active_count != len(tally.active):
                inc.active_count = len(tally.active)
            return
        s.flush()
        members = select(AlarmRow).where(AlarmRow.incident_id == inc.id).subquery()
        total, devices, active = s.execute(
            select(
                func.count(),
                func.count(func.distinct(members.c.device_id)),
                func.count().filter(members.c.state.in_(ACTIVE_STATES)),
            ).select_from(members)
        ).one()
        inc.alarm_count, inc.device_count, inc.active_count = int(total), int(devices), int(active)
        if inc.devices:  # an outage: its devices, not its alarms' keys
            inc.device_count = len(inc.devices)

    def note_devices(self, s: Session, e: DetectorEvent) -> None:
        """An outage or offline raise: its devices join its outage incident's device list (an
        outage event lists every device silent in it, detectors/liveness.py)."""
        batch = batch_of(s)
        if batch is None:
            raise AssertionError("outage devices are noted in a bulk write (AlarmService.apply)")
        alarm = batch.open_alarm(e.device_id, e.alarm_type)
        if alarm is None or alarm.incident_id is None:
            return
        inc = _locked(s, alarm.incident_id)
        if inc is None or inc.kind != IncidentKind.OUTAGE.value:
            return
        new = [d for d in (e.members or (e.device_id,)) if not d.startswith(OUTAGE_KEY_PREFIX)]
        merged = list(dict.fromkeys([*inc.devices, *new]))
        if len(merged) != len(inc.devices):
            inc.devices = merged
            inc.device_count = len(merged)

    def released(self, s: Session, out: list[IncidentUpdate], alarm: AlarmLike, now: float) -> None:
        """A held alarm's hold ended: if nobody was told about its incident yet, they are now."""
        if alarm.incident_id is None:
            return
        inc = _locked(s, alarm.incident_id)
        if inc is None or inc.notified or inc.state == IncidentState.CLOSED.value:
            return
        inc.notified = True
        targets = self._start_escalation(inc, now)
        self.log(
            s, out, inc, IncidentAction.OPENED, SYSTEM_ACTOR, now, self._alarm_note(alarm), targets, alarm.id
        )

    # --- alarms ending ----------------------------------------------------------------------------
    def alarm_ended(
        self,
        s: Session,
        out: list[IncidentUpdate],
        alarm: AlarmLike,
        now: float,
        *,
        reset_by: str | None = None,
    ) -> None:
        """One of its alarms stopped being active (cleared, reset, superseded): when it was the last,
        the incident has ended; acknowledged as well, it is closed. `reset_by`: a person reset that
        last alarm (复位), which is the incident's reset too (the stand-down to everyone told)."""
        if alarm.incident_id is None:
            return
        inc = _locked(s, alarm.incident_id)
        if (batch := batch_of(s)) is not None:
            assert isinstance(alarm, Alarm)  # the bulk path holds its alarms as values
            batch.touch(alarm)
        if inc is None or inc.state != IncidentState.OPEN.value:
            return
        self._count(s, inc)
        if inc.active_count > 0:
            return
        if reset_by is not None and reset_by != SYSTEM_ACTOR and inc.reset_ts is None:
            self.reset_logged(s, out, inc, reset_by, "", now)
        inc.ended_ts = now
        inc.state = IncidentState.ENDED.value
        # An unacknowledged incident keeps escalating after it ends: someone must still look at it.
        self.log(s, out, inc, IncidentAction.ENDED, SYSTEM_ACTOR, now, "", self._reached(inc), alarm.id)
        self._close_if_done(s, out, inc, SYSTEM_ACTOR, now)

    def _close_if_done(
        self, s: Session, out: list[IncidentUpdate], inc: IncidentLike, actor: str, now: float
    ) -> None:
        if inc.state == IncidentState.ENDED.value and inc.acked_ts is not None:
            inc.state = IncidentState.CLOSED.value
            inc.closed_ts = now
            inc.verify_due_ts = None
            self._pause(inc)
            self.log(s, out, inc, IncidentAction.CLOSED, actor, now, "", ())

    # --- human steps (the alarm service runs them in its write transaction) -----------------------
    def locked(self, s: Session, incident_id: int) -> IncidentRow:
        inc = s.get(IncidentRow, incident_id, with_for_update=True)
        if inc is None:
            raise LookupError(f"incident {incident_id} does not exist")
        return inc

    def acknowledged(
        self, s: Session, out: list[IncidentUpdate], inc: IncidentRow, actor: str, note: str, now: float
    ) -> IncidentUpdate:
        """Record the acknowledgement (the caller acknowledges its alarms): escalation stops and
        everyone told so far hears who took it."""
        if inc.acked_ts is not None:
            raise IncidentError(f"incident {inc.id} is already acknowledged by {inc.acked_by}")
        targets = self._reached(inc) if inc.remind_at is not None else ()
        inc.acked_ts, inc.acked_by, inc.ack_note = now, actor, note
        self._pause(inc)
        u = self.log(s, out, inc, IncidentAction.ACKNOWLEDGED, actor, now, note, targets)
        self._close_if_done(s, out, inc, actor, now)
        return u

    @staticmethod
    def _verified_kind(inc: IncidentRow) -> None:
        if inc.kind not in VERIFIED_KINDS:
            raise IncidentError(
                f"incident {inc.id} is a {inc.kind} incident: only fire and gas incidents are verified"
            )

    def verifying(
        self,
        s: Session,
        out: list[IncidentUpdate],
        inc: IncidentRow,
        actor: str,
        verifier: str,
        note: str,
        now: float,
    ) -> IncidentUpdate:
        state = Verification(inc.verification)
        self._verified_kind(inc)
        if state.decided:
            raise IncidentError(f"incident {inc.id} is already verified ({state.value})")
        inc.verification = Verification.VERIFYING.value
        inc.verifier = verifier or actor
        inc.verifying_ts = now
        # The note is read by people: whoever went, by display name when it names an account.
        who = person_zh(inc.verifier, read_display_names(s, [inc.verifier]))
        text = f"{who} 前往现场核实" + (f"：{note}" if note else "")
        return self.log(s, out, inc, IncidentAction.VERIFYING, actor, now, text, self._reached(inc))

    def verdict(
        self,
        s: Session,
        out: list[IncidentUpdate],
        inc: IncidentRow,
        actor: str,
        verdict: Verification,
        cause: str | None,
        note: str,
        now: float,
    ) -> IncidentUpdate:
        if not verdict.decided:
            raise IncidentError("a verdict is confirmed, false_alarm or test")
        self._verified_kind(inc)
        state = Verification(inc.verification)
        if state.decided:
            raise IncidentError(f"incident {inc.id} is already verified ({state.value})")
        if verdict is Verification.FALSE_ALARM and not cause:
            raise IncidentError(
                "a false alarm needs its cause (dust, steam, cooking, works, device, human, other)"
            )
        inc.verification = verdict.value
        inc.verdict_ts, inc.verdict_by = now, actor
        inc.cause = cause if verdict is Verification.FALSE_ALARM else None
        inc.verdict_note = note
        inc.verify_due_ts = None
        action = {
            Verification.CONFIRMED: IncidentAction.CONFIRMED,
            Verification.FALSE_ALARM: IncidentAction.FALSE_ALARM,
            Verification.TEST: IncidentAction.TEST,
        }[verdict]
        targets = self._reached(inc)
        if verdict is Verification.CONFIRMED:
            # GB 25506-2010 §4.2.2: a confirmed fire is reported to the person in charge at once.
            role = self.settings.verify_escalate_role
            targets = targets if role in targets else (*targets, role)
        return self.log(s, out, inc, action, actor, now, note, targets)

    def called_119(
        self,
        s: Session,
        out: list[IncidentUpdate],
        inc: IncidentRow,
        actor: str,
        at: float,
        note: str,
        now: float,
    ) -> IncidentUpdate:
        if inc.kind not in VERIFIED_KINDS:
            raise IncidentError(
                f"incident {inc.id} is a {inc.kind} incident: 119 is called for a fire or gas leak"
            )
        if inc.state == IncidentState.CLOSED.value:
            raise IncidentError(f"incident {inc.id} is closed")
        if inc.call_119_ts is not None:
            raise IncidentError(f"the 119 call of incident {inc.id} is already recorded")
        if at > now + 60 or at < inc.first_ts - 60:
            raise IncidentError("the 119 call must be between the first alarm and now")
        inc.call_119_ts, inc.call_119_by, inc.call_119_note = at, actor, note
        return self.log(s, out, inc, IncidentAction.CALLED_119, actor, now, note, self._reached(inc))

    def out_of_drill(
        self, s: Session, out: list[IncidentUpdate], inc: IncidentRow, actor: str, note: str, now: float
    ) -> IncidentUpdate:
        """The incident leaves its drill (the caller untags its alarms): a fire opened now for the
        people on duty, unacknowledged and unverified, its escalation starting now."""
        if inc.state == IncidentState.CLOSED.value:
            raise IncidentError(f"incident {inc.id} is closed")
        inc.group_key = inc.group_key.removesuffix(group_suffix(inc.drill_id))
        inc.drill_id = None
        inc.acked_ts, inc.acked_by, inc.ack_note = None, None, ""
        if inc.kind in VERIFIED_KINDS:
            inc.verification = Verification.PENDING.value
            inc.verifier = inc.verifying_ts = inc.verdict_ts = inc.verdict_by = inc.cause = None
            inc.verdict_note = ""
            inc.verify_overdue_ts = None
            inc.verify_due_ts = now + self.settings.verify_limit_s
        inc.notified = True
        targets = self._start_escalation(inc, now)
        text = "演练中的事件确认为真实火警" + (f"：{note}" if note else "")
        return self.log(s, out, inc, IncidentAction.OPENED, actor, now, text, targets)

    def reset_logged(
        self, s: Session, out: list[IncidentUpdate], inc: IncidentLike, actor: str, note: str, now: float
    ) -> IncidentUpdate:
        inc.reset_ts, inc.reset_by = now, actor
        return self.log(s, out, inc, IncidentAction.RESET, actor, now, note, self._reached(inc))

    # --- the clock --------------------------------------------------------------------------------
    def tick(self, s: Session, out: list[IncidentUpdate], now: float) -> None:
        for inc in s.scalars(_escalation_due(now).with_for_update()).all():
            self._escalate(s, out, inc, now)
        for inc in s.scalars(_verify_overdue(now).with_for_update()).all():
            inc.verify_overdue_ts = now
            inc.verify_due_ts = None
            role = self.settings.verify_escalate_role
            reached = self._reached(inc)
            targets = reached if role in reached else (*reached, role)
            waited = now - (inc.fire_ts or inc.opened_ts)
            note = f"火警 {waited / 60:.1f} 分钟未核实（时限 {self.settings.verify_limit_s / 60:g} 分钟）"
            self.log(s, out, inc, IncidentAction.VERIFY_OVERDUE, SYSTEM_ACTOR, now, note, targets)

    def anything_due(self, s: Session, now: float) -> bool:
        return any(
            s.execute(q.limit(1)).first() is not None for q in (_escalation_due(now), _verify_overdue(now))
        )

    def _escalate(self, s: Session, out: list[IncidentUpdate], inc: IncidentRow, now: float) -> None:
        chain = self.policy.chain(inc.escalation)
        if chain is None or inc.remind_at is None:
            self._pause(inc)
            return
        due = self.policy.due(
            chain, Escalation(chain.name, inc.escalation_step, inc.escalate_at, inc.remind_at), now
        )
        if due is None:
            return
        self._set(inc, due.state)
        action = IncidentAction.ESCALATED if due.escalated else IncidentAction.REMINDED
        note = f"{(now - inc.opened_ts) / 60:.1f} 分钟无人受理"
        self.log(s, out, inc, action, SYSTEM_ACTOR, now, note, due.targets)

    # --- escalation state -------------------------------------------------------------------------
    def _start_escalation(self, inc: IncidentLike, now: float) -> tuple[str, ...]:
        chain = self.policy.chain_for(AlarmCategory(inc.category), inc.site)
        if chain is None:
            self._pause(inc)
            return ()
        self._set(inc, self.policy.start(chain, now))
        return self.policy.reached(chain, 0)

    def _reached(self, inc: IncidentLike) -> tuple[str, ...]:
        chain = self.policy.chain(inc.escalation)
        return self.policy.reached(chain, inc.escalation_step) if chain is not None and inc.notified else ()

    @staticmethod
    def _set(inc: IncidentLike, e: Escalation) -> None:
        inc.escalation, inc.escalation_step = e.chain, e.step
        inc.escalate_at, inc.remind_at = e.escalate_at, e.remind_at

    @staticmethod
    def _pause(inc: IncidentLike) -> None:
        inc.escalate_at = inc.remind_at = None

    # --- the timeline -----------------------------------------------------------------------------
    def log(
        self,
        s: Session,
        out: list[IncidentUpdate],
        inc: IncidentLike,
        action: IncidentAction,
        actor: str,
        now: float,
        note: str,
        targets: tuple[str, ...],
        alarm_id: int | None = None,
    ) -> IncidentUpdate:
        # What a stream or topic reader shows without a second request: the place in words and
        # whether the 119 call is still owed.
        batch = batch_of(s)
        after = {
            **incident_snapshot(inc),
            "place_name": (
                batch.place_name(inc.place, self.index.place_label)
                if batch is not None
                else self.index.place_label(inc.place)
            ),
            "call_119_due": inc.verification == Verification.CONFIRMED.value and inc.call_119_ts is None,
        }
        values: dict[str, Any] = {
            "incident_id": inc.id,
            "ts": now,
            "action": action.value,
            "actor": actor,
            "note": note,
            "alarm_id": alarm_id,
            "targets": list(targets),
            "after": after,
        }
        fields: dict[str, Any] = {
            "incident_id": inc.id,
            "action": action,
            "after": after,
            "actor": actor,
            "ts": now,
            "note": note,
            "targets": targets,
            "alarm_id": alarm_id,
        }
        if batch is not None:
            # The bulk path: the row is inserted with the batch's others and its id read after
            # that flush (settled). Provisional here.
            batch.steps.append(PendingIncidentStep(values, fields, inc.notified, after["place_name"]))
            return IncidentUpdate(0, **fields)
        row = IncidentEventRow(**values)
        s.add(row)
        s.flush()
        u = IncidentUpdate(row.id, **fields)
        self._push(s, u, inc.notified, after["place_name"], now)
        out.append(u)
        return u

    def settled(self, s: Session, step: PendingIncidentStep, event_id: int, now: float) -> IncidentUpdate:
        """A step logged in a bulk write, once inserted: with its id, and its notices owed."""
        u = IncidentUpdate(event_id, **step.fields)
        self._push(s, u, step.notified, step.place_name, now)
        return u

    def _push(self, s: Session, u: IncidentUpdate, notified: bool, place_name: str, now: float) -> None:
        routes = self.routes
        if (drill := u.after.get("drill_id")) is not None:
            # A drill's incident is told to the drill's recipients only (docs/drills.md).
            routes = self.drill_routes.get(drill) or [r for r in self.routes if r.name == ALARM_TOPIC_NAME]
        if routes and notified:
            interval = self.settings.incident_update_interval_s
            enqueue_incident(s, routes, u, place_name, now, interval_s=interval)


def _locked(s: Session, incident_id: int) -> IncidentLike | None:
    """The incident, locked for this transaction (in a bulk write, once: alarms/batch.py)."""
    batch = batch_of(s)
    if batch is not None:
        return batch.incident(s, incident_id)
    return s.get(IncidentRow, incident_id, with_for_update=True)


def _join(s: Session, alarm: Alarm, inc: Incident) -> None:
    """`alarm` joins `inc` (in a bulk write, the batch's member sets follow)."""
    batch = batch_of(s)
    if batch is not None:
        batch.joined(s, alarm, inc)
    alarm.incident_id = inc.id


def members(incident_id: int) -> Select[AlarmRow]:
    return select(AlarmRow).where(AlarmRow.incident_id == incident_id).order_by(AlarmRow.id)


def _escalation_due(now: float) -> Select[IncidentRow]:
    return (
        select(IncidentRow)
        .where(IncidentRow.state != IncidentState.CLOSED.value, IncidentRow.acked_ts.is_(None))
        .where(or_(IncidentRow.escalate_at <= now, IncidentRow.remind_at <= now))
    )


def _verify_overdue(now: float) -> Select[IncidentRow]:
    return select(IncidentRow).where(
        IncidentRow.kind.in_(VERIFIED_KINDS),
        IncidentRow.verify_due_ts <= now,
        IncidentRow.verify_overdue_ts.is_(None),
    )
