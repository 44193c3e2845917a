"""The ticket service: people's actions on tickets, hazards they report, and what falls due with time.

Every write is one transaction holding the change and its audit entry (a ticket event): a crash
leaves both or neither. Alarms open tickets inside the alarm's own transaction (alarms/tickets.py);
this module does everything else (DESIGN §5):

- `report`: a hazard found by an inspection (or a patrol's checkpoint), opened by a person;
- `act`: the loop's transitions, permitted by role (tickets/workflow.py);
- `comment`, `attach`: the ticket's discussion and evidence (photos, files; size-limited);
- `record_patrol`: a patrol round, each problem found becoming a ticket;
- `tick`: deadlines (overdue tickets flagged, and escalated through the alarm policy as a
  `ticket.overdue` alarm), maintenance plans falling due, missed patrols, and telemetry-backed
  re-inspection (tickets/reinspection.py).
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from alarms.model import Transition
from alarms.service import AlarmService
from alarms.tickets import AUTO_INSPECTOR, TicketChange, add_ticket, find_open, log_event, recur
from core.domain import (
    AlarmCategory,
    DetectorEvent,
    DetectorEventKind,
    Role,
    TicketAction,
    TicketSource,
    TicketStatus,
)
from core.settings import MaintenancePlan, PatrolRoute, TicketPolicy
from ingest.index import DeviceIndex
from storage.advisory import Space, try_hold
from storage.db import IMMEDIATE, retryable
from storage.models import (
    AlarmRow,
    PatrolRoundRow,
    PlanRunRow,
    TicketCommentRow,
    TicketEvidenceRow,
    TicketRow,
)
from storage.telemetry_api import Telemetry
from tickets import reinspection
from tickets.workflow import OPEN_STATUSES, check_reporter, permitted

logger = logging.getLogger(__name__)
R = TypeVar("R")
ATTEMPTS = 8
OVERDUE_ALARM = "ticket.overdue"
MISSED_PATROL = "patrol.missed"
INCOMPLETE_PATROL = "patrol.incomplete"
MAINTENANCE_OVERDUE = "maintenance.overdue"
_OPEN = tuple(s.value for s in OPEN_STATUSES)


class TicketNotFoundError(LookupError):
    pass


class TicketInputError(ValueError):
    """The request cannot be carried out as given (HTTP 422): the message says what to change."""


def _fmt(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


@dataclass(frozen=True)
class HazardReport:
    """A hazard found by people (检查发现问题): the form's fields as the inspector fills them in."""

    site: str
    problem: str
    inspectors: str
    inspection_time: float
    source: TicketSource = TicketSource.INSPECTION
    category: AlarmCategory = AlarmCategory.HAZARD
    hazard_type: str = "inspection"
    department: str = ""
    responsible: str = ""
    measures: str = ""
    place: str = ""
    device_id: str | None = None
    deadline: float | None = None


@dataclass(frozen=True)
class PatrolVisit:
    checkpoint: str
    ts: float
    ok: bool = True
    note: str = ""
    problem: HazardReport | None = None  # a problem found here becomes a ticket


@dataclass(frozen=True)
class PatrolResult:
    round_id: int
    missed: list[str]
    tickets: list[TicketChange] = field(default_factory=list)


@dataclass(frozen=True)
class ActionFields:
    """What a transition may carry besides the note."""

    assignee: str | None = None
    responsible: str | None = None
    deadline: float | None = None
    feedback: str | None = None
    signed_by: str | None = None  # the name signed, when a person signs for someone else's record


@dataclass(frozen=True)
class TicketEdit:
    """Corrections to a ticket's description; None leaves a field as it is. The hazard type is not
    among them: with the device it keys the one open ticket per hazard (uq_tickets_open_key)."""

    problem: str | None = None
    measures: str | None = None
    department: str | None = None
    responsible: str | None = None
    place: str | None = None

    def changes(self) -> dict[str, str]:
        return {k: v for k, v in vars(self).items() if v is not None}


class TicketService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        index: DeviceIndex,
        policy: TicketPolicy,
        *,
        alarms: AlarmService | None = None,
        telemetry: Telemetry | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sessions = sessions
        self.index = index
        self.policy = policy
        self.alarms = alarms
        self.telemetry = telemetry
        self.clock = clock
        self._lock = threading.Lock()
        self.retries = 0

    # --- the write path --------------------------------------------------------------------------
    def write(self, work: Callable[[Session], R]) -> R:
        """Run `work` in one write transaction; a lost race on a one-open-ticket key or a busy
        database retries the whole transaction (which then finds the other writer's ticket)."""
        for attempt in range(ATTEMPTS):
            try:
                with self._lock, self.sessions.begin() as s:
                    s.connection(execution_options=IMMEDIATE)
                    return work(s)
            except (IntegrityError, OperationalError) as exc:
                if attempt == ATTEMPTS - 1 or not retryable(exc):
                    raise
                self.retries += 1
                time.sleep(random.uniform(0.001, 0.005) * (attempt + 1))
        raise AssertionError("unreachable")

    @staticmethod
    def _locked(s: Session, ticket_id: int) -> TicketRow:
        row = s.scalars(select(TicketRow).where(TicketRow.id == ticket_id).with_for_update()).first()
        if row is None:
            raise TicketNotFoundError(f"ticket {ticket_id} does not exist")
        return row

    @staticmethod
    def _log(
        s: Session,
        t: TicketRow,
        action: TicketAction,
        actor: str,
        role: str,
        note: str,
        before: str | None,
        now: float,
    ) -> None:
        log_event(s, t, action, now, note, actor=actor, role=role, before=before)

    # --- people ----------------------------------------------------------------------------------
    def report(self, report: HazardReport, actor: str, role: Role) -> TicketChange:
        """Open a ticket for a hazard a person found; a device's open ticket of the same hazard
        type takes it as a recurrence instead (one open ticket per key)."""
        check_reporter(role)
        return self.write(lambda s: self._report(s, report, actor, role.value, None, self.clock()))

    def report_in(self, s: Session, report: HazardReport, actor: str, role: str, now: float) -> TicketChange:
        """`report` within the caller's write transaction (`write`): a staff report (随手拍) opens its
        ticket and stores its photo in one transaction, and no role is checked (its reporter has no
        account; the QR code's token admitted it)."""
        return self._report(s, report, actor, role, None, now)

    def evidence_row(
        self, ticket_id: int, actor: str, filename: str, content_type: str, data: bytes, note: str, now: float
    ) -> TicketEvidenceRow:
        """A piece of evidence to add in the caller's write transaction (its size already checked)."""
        return self._evidence(ticket_id, actor, filename, content_type, data, note, now)

    def _report(
        self,
        s: Session,
        r: HazardReport,
        actor: str,
        role: str,
        round_id: int | None,
        now: float,
        subject: str | None = None,
        plan: str | None = None,
    ) -> TicketChange:
        site, place, department, responsible = r.site, r.place, r.department, r.responsible
        if r.device_id is not None:
            dev = self.index.dev_of.get(r.device_id)
            if dev is None:
                raise TicketInputError(f"device {r.device_id!r} is not registered")
            device = self.index.devices[dev]
            if site and site != self.index.sites[dev]:
                raise TicketInputError(f"device {r.device_id!r} belongs to site {self.index.sites[dev]!r}")
            site, place = self.index.sites[dev], place or device.place
            department = department or device.department
            responsible = responsible or device.responsible
            existing = find_open(s, r.hazard_type, device_id=r.device_id)
            if existing is not None:
                return recur(s, existing, f"{r.inspectors} 再次发现：{r.problem}", now)
        elif subject is not None:
            existing = find_open(s, r.hazard_type, subject=subject)
            if existing is not None:
                return recur(s, existing, r.problem, now)
        if r.deadline is not None and r.deadline <= r.inspection_time:
            raise TicketInputError("the deadline (整改时限) must be after the inspection time")
        ticket = TicketRow(
            source=r.source.value,
            category=r.category.value,
            hazard_type=r.hazard_type,
            device_id=r.device_id,
            subject=subject,
            plan=plan,
            patrol_round_id=round_id,
            site=site,
            place=place,
            department=department,
            responsible=responsible,
            inspection_time=r.inspection_time,
            inspectors=r.inspectors,
            problem=r.problem,
            measures=r.measures,
            deadline=r.deadline if r.deadline is not None else now + self.policy.deadline_s(r.category),
        )
        return add_ticket(s, ticket, now, actor, role, f"{actor} 登记")

    def act(
        self,
        ticket_id: int,
        action: TicketAction,
        actor: str,
        role: Role,
        note: str = "",
        fields: ActionFields | None = None,
    ) -> TicketRow:
        """Take one step of the loop; returns the ticket as committed."""
        f = fields or ActionFields()
        now = self.clock()

        def work(s: Session) -> TicketRow:
            t = self._locked(s, ticket_id)
            before = t.status
            t.status = permitted(action, TicketStatus(t.status), role).value
            self._apply(t, action, actor, note, f, now)
            self._log(s, t, action, actor, role.value, note, before, now)
            return t

        return self.write(work)

    def _apply(
        self, t: TicketRow, action: TicketAction, actor: str, note: str, f: ActionFields, now: float
    ) -> None:
        """The form fields each step fills in (the sign-offs are names with dates)."""
        if action is TicketAction.ASSIGN:
            if not f.assignee:
                raise TicketInputError("assign needs the assignee (整改人)")
            t.assignee = f.assignee
            t.responsible = f.responsible or t.responsible
            t.assigned_at = t.assigned_at or now
            if f.deadline is not None:
                self._set_deadline(t, f.deadline, now)
        elif action is TicketAction.RECTIFY:
            if not f.feedback:
                raise TicketInputError("rectify needs the feedback (整改落实情况反馈)")
            t.feedback = f.feedback
            t.feedback_signed_by = f.signed_by or actor
            t.feedback_signed_at = now
            t.rectified_at = t.rectified_at or now  # the first rectification counts for the KPIs
            t.overdue = False
        elif action is TicketAction.VERIFY:
            t.confirmed_by = f.signed_by or actor
            t.confirmed_at = now
            t.verified_at = now
        elif action is TicketAction.REJECT:
            if not note:
                raise TicketInputError("a failed re-inspection needs a note saying what is still wrong")
            t.ready_at = None
        elif action is TicketAction.CLOSE:
            t.leader_signed_by = f.signed_by or actor
            t.leader_signed_at = now
            t.closed_at = now
        elif action is TicketAction.EXTEND:
            if f.deadline is None or not note:
                raise TicketInputError("extend needs the new deadline and a note giving the reason")
            self._set_deadline(t, f.deadline, now)

    @staticmethod
    def _set_deadline(t: TicketRow, deadline: float, now: float) -> None:
        if deadline <= now:
            raise TicketInputError(f"the deadline {_fmt(deadline)} is not in the future")
        t.deadline = deadline
        t.overdue = False  # the overdue alarm clears on the next tick

    def edit(self, ticket_id: int, actor: str, role: Role, edit: TicketEdit, note: str = "") -> TicketRow:
        """Correct the description of a ticket that is not closed. The event records each field's
        old and new value, so the ledger shows what the form said before."""
        changes = edit.changes()
        if not changes:
            raise TicketInputError("nothing to change: give at least one field")
        now = self.clock()

        def work(s: Session) -> TicketRow:
            t = self._locked(s, ticket_id)
            permitted(TicketAction.EDIT, TicketStatus(t.status), role)
            diffs = []
            for name, value in changes.items():
                old = getattr(t, name)
                if old != value:
                    diffs.append(f"{name}: {old or '—'} → {value}")
                    setattr(t, name, value)
            if not diffs:
                raise TicketInputError("the ticket already says that: nothing changed")
            text = "; ".join(diffs) + (f"（{note}）" if note else "")
            self._log(s, t, TicketAction.EDIT, actor, role.value, text[:4000], t.status, now)
            return t

        return self.write(work)

    def comment(self, ticket_id: int, actor: str, role: Role, text: str) -> TicketCommentRow:
        now = self.clock()

        def work(s: Session) -> TicketCommentRow:
            t = self._locked(s, ticket_id)
            permitted(TicketAction.COMMENT, TicketStatus(t.status), role)
            c = TicketCommentRow(ticket_id=t.id, ts=now, author=actor, text=text)
            s.add(c)
            self._log(s, t, TicketAction.COMMENT, actor, role.value, text[:200], t.status, now)
            return c

        return self.write(work)

    def attach(
        self,
        ticket_id: int,
        actor: str,
        role: Role,
        filename: str,
        content_type: str,
        data: bytes,
        note: str = "",
    ) -> TicketEvidenceRow:
        if len(data) > self.policy.evidence_max_bytes:
            raise TicketInputError(
                f"{filename}: {len(data)} bytes is over the limit of {self.policy.evidence_max_bytes} "
                "(tickets.evidence_max_bytes): send a smaller photo"
            )
        if not data:
            raise TicketInputError(f"{filename}: the file is empty")
        now = self.clock()

        def work(s: Session) -> TicketEvidenceRow:
            t = self._locked(s, ticket_id)
            permitted(TicketAction.ATTACH, TicketStatus(t.status), role)
            e = self._evidence(t.id, actor, filename, content_type, data, note, now)
            s.add(e)
            self._log(
                s, t, TicketAction.ATTACH, actor, role.value, f"{filename}（{len(data)} 字节）", t.status, now
            )
            return e

        return self.write(work)

    @staticmethod
    def _evidence(
        ticket_id: int, actor: str, filename: str, content_type: str, data: bytes, note: str, now: float
    ) -> TicketEvidenceRow:
        return TicketEvidenceRow(
            ticket_id=ticket_id,
            ts=now,
            uploaded_by=actor,
            filename=filename,
            content_type=content_type,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            note=note,
            data=data,
        )

    def patrol_route(self, name: str) -> PatrolRoute:
        for route in self.policy.patrols:
            if route.name == name:
                return route
        known = ", ".join(r.name for r in self.policy.patrols) or "none configured (tickets.patrols)"
        raise TicketInputError(f"no patrol route {name!r}; known: {known}")

    def record_patrol(
        self,
        route_name: str,
        inspectors: str,
        started_at: float,
        finished_at: float,
        visits: list[PatrolVisit],
        actor: str,
        role: Role,
    ) -> PatrolResult:
        """Record a patrol round (巡查): the checkpoints visited, each problem found as a ticket, and
        checkpoints of the route left out as one `patrol.incomplete` hazard. The round resets the
        route's schedule."""
        check_reporter(role)
        route = self.patrol_route(route_name)
        if finished_at < started_at:
            raise TicketInputError("the round finished before it started")
        unknown = sorted({v.checkpoint for v in visits} - set(route.checkpoints))
        if unknown:
            raise TicketInputError(f"checkpoints not on route {route.name!r}: {', '.join(unknown)}")
        now = self.clock()

        def work(s: Session) -> PatrolResult:
            visited = {v.checkpoint for v in visits}
            missed = [c for c in route.checkpoints if c not in visited]
            problems = [v for v in visits if v.problem is not None]
            rnd = PatrolRoundRow(
                route=route.name,
                site=route.site,
                inspectors=inspectors,
                started_at=started_at,
                finished_at=finished_at,
                visits=[
                    {"checkpoint": v.checkpoint, "ts": v.ts, "ok": v.ok and v.problem is None, "note": v.note}
                    for v in visits
                ],
                missed=missed,
                problems=len(problems),
                recorded_by=actor,
            )
            s.add(rnd)
            s.flush()
            changes: list[TicketChange] = []
            for v in problems:
                assert v.problem is not None
                r = v.problem
                report = HazardReport(
                    site=route.site,
                    problem=r.problem,
                    inspectors=inspectors,
                    inspection_time=v.ts,
                    source=TicketSource.PATROL,
                    category=r.category,
                    hazard_type=r.hazard_type,
                    department=r.department or route.department,
                    responsible=r.responsible or route.responsible,
                    measures=r.measures,
                    place=r.place or v.checkpoint,
                    device_id=r.device_id,
                    deadline=r.deadline,
                )
                changes.append(self._report(s, report, actor, role.value, rnd.id, now))
            if missed:
                report = HazardReport(
                    site=route.site,
                    problem=f"巡查路线「{route.title_zh}」{_fmt(finished_at)} 的巡查"
                    f"漏检 {len(missed)} 个点位：" + "、".join(missed),
                    inspectors=inspectors,
                    inspection_time=finished_at,
                    source=TicketSource.PATROL,
                    hazard_type=INCOMPLETE_PATROL,
                    department=route.department,
                    responsible=route.responsible,
                    measures="补查漏检点位，核实漏检原因并落实巡查责任。",
                )
                changes.append(
                    self._report(s, report, AUTO_INSPECTOR, "", rnd.id, now, subject=f"patrol:{route.name}")
                )
            run = self._run(s, f"patrol:{route.name}", route.site, now)
            run.last_done = max(run.last_done or 0.0, finished_at)
            run.next_due = run.last_done + route.every_hours * 3600.0
            return PatrolResult(rnd.id, missed, changes)

        return self.write(work)

    @staticmethod
    def _run(s: Session, plan: str, site: str, first_due: float) -> PlanRunRow:
        run = s.get(PlanRunRow, (plan, site), with_for_update=True)
        if run is None:
            run = PlanRunRow(plan=plan, site=site, last_done=None, next_due=first_due, ticket_id=None)
            s.add(run)
            s.flush()
        return run

    # --- what falls due with time ----------------------------------------------------------------
    def tick(self) -> list[Transition]:
        """Deadlines, schedules and re-inspection; returns the alarm transitions of overdue tickets
        (for the caller to publish like any other)."""
        now = self.clock()
        for job in (self._flag_overdue, self._due_plans, self._missed_patrols):
            self.write(_clocked(job, now))
        if self.telemetry is not None:
            reinspection.mark_ready(self, self.telemetry, now)
        return self._escalate_overdue(now)

    def _flag_overdue(self, s: Session, now: float) -> None:
        late = s.scalars(
            select(TicketRow)
            .where(TicketRow.status.in_(_OPEN), TicketRow.deadline < now, TicketRow.overdue.is_(False))
            .with_for_update()
        ).all()
        for t in late:
            t.overdue = True
            t.overdue_at = t.overdue_at or now
            note = f"已超过整改时限 {_fmt(t.deadline)}，尚未整改"
            self._log(s, t, TicketAction.OVERDUE, AUTO_INSPECTOR, "", note, t.status, now)
            if t.source == TicketSource.MAINTENANCE.value and t.plan is not None:
                # Overdue maintenance is itself a hazard (DESIGN §5).
                report = HazardReport(
                    site=t.site,
                    problem=f"维保/测试任务 {t.number}（{t.problem.splitlines()[0][:80]}）超期未完成，"
                    f"整改时限 {_fmt(t.deadline)}。",
                    inspectors=AUTO_INSPECTOR,
                    inspection_time=now,
                    hazard_type=MAINTENANCE_OVERDUE,
                    department=t.department,
                    responsible=t.responsible,
                    measures="尽快完成超期的维保/测试任务，查明超期原因。",
                    place=t.place,
                )
                self._report(s, report, AUTO_INSPECTOR, "", None, now, subject=f"plan:{t.plan}:{t.site}")

    def _plan_sites(self, plan: MaintenancePlan) -> list[str]:
        return plan.sites or sorted(set(self.index.sites))

    def _due_plans(self, s: Session, now: float) -> None:
        for plan in self.policy.plans:
            for site in self._plan_sites(plan):
                run = self._run(s, f"plan:{plan.name}", site, now)  # unknown history: due now
                if run.ticket_id is not None:
                    t = s.get(TicketRow, run.ticket_id)
                    if t is None or t.status != TicketStatus.CLOSED.value:
                        continue
                    run.last_done = t.rectified_at or t.closed_at
                    run.next_due += plan.every_days * 86_400.0  # a fixed calendar: lateness does not shift it
                    run.ticket_id = None
                if now < run.next_due:
                    continue
                covered = self._devices_of(site, plan.kinds)
                report = HazardReport(
                    site=site,
                    problem=f"{plan.title_zh}：按计划应于 {_fmt(run.next_due)} 完成"
                    + (f"，涉及设备 {covered} 台" if plan.kinds else "")
                    + "。",
                    inspectors=AUTO_INSPECTOR,
                    inspection_time=run.next_due,
                    source=TicketSource.MAINTENANCE,
                    hazard_type=f"maintenance.{plan.name}",
                    department=plan.department,
                    responsible=plan.responsible,
                    measures=f"按维保计划完成{plan.title_zh}，记录测试结果，发现问题另行登记隐患。",
                    deadline=max(run.next_due, now) + plan.deadline_hours * 3600.0,
                )
                change = self._report(
                    s, report, AUTO_INSPECTOR, "", None, now, f"plan:{plan.name}:{site}", plan.name
                )
                run.ticket_id = change.ticket_id

    def _devices_of(self, site: str, kinds: list[str]) -> int:
        return sum(
            1
            for dev, s in enumerate(self.index.sites)
            if s == site and self.index.profiles[dev].kind.value in kinds
        )

    def _missed_patrols(self, s: Session, now: float) -> None:
        for route in self.policy.patrols:
            every = route.every_hours * 3600.0
            run = self._run(
                s, f"patrol:{route.name}", route.site, now + every
            )  # first round: one interval on
            if now <= run.next_due + route.grace_hours * 3600.0:
                continue
            report = HazardReport(
                site=route.site,
                problem=f"巡查路线「{route.title_zh}」未按时巡查：应于 {_fmt(run.next_due)} 前完成一轮，"
                f"宽限 {route.grace_hours:g} 小时后仍无巡查记录。",
                inspectors=AUTO_INSPECTOR,
                inspection_time=now,
                source=TicketSource.PATROL,
                hazard_type=MISSED_PATROL,
                department=route.department,
                responsible=route.responsible,
                measures="立即补巡，查明漏巡原因，落实巡查责任与排班。",
            )
            self._report(s, report, AUTO_INSPECTOR, "", None, now, subject=f"patrol:{route.name}")
            run.next_due += every  # the next miss is a recurrence on the same ticket

    def _escalate_overdue(self, now: float) -> list[Transition]:
        """Level, not edge: every overdue ticket has an active `ticket.overdue` alarm and no other
        ticket has one. Reconciling each tick repairs a crash between the flag and the alarm."""
        if self.alarms is None:
            return []
        with self.sessions() as s:
            overdue = s.scalars(
                select(TicketRow).where(TicketRow.overdue.is_(True), TicketRow.status.in_(_OPEN))
            ).all()
            active = {
                d
                for (d,) in s.execute(
                    select(AlarmRow.device_id).where(
                        AlarmRow.alarm_type == OVERDUE_ALARM,
                        AlarmRow.state.in_(("active_unacknowledged", "active_acknowledged")),
                    )
                )
            }
        wanted = {f"ticket:{t.number}": t for t in overdue}
        events = [
            DetectorEvent(
                device_id=key,
                alarm_type=OVERDUE_ALARM,
                kind=DetectorEventKind.RAISE,
                category=AlarmCategory.HAZARD,
                ts=now,
                detail=f"隐患整改单 {t.number} 已超过整改时限 {_fmt(t.deadline)}（{t.department or t.site}）",
                basis="site policy: tickets.deadline_hours",
                extra={"site": t.site, "place": t.place, "department": t.department},
            )
            for key, t in wanted.items()
            if key not in active
        ]
        events += [
            DetectorEvent(
                device_id=key,
                alarm_type=OVERDUE_ALARM,
                kind=DetectorEventKind.CLEAR,
                category=AlarmCategory.HAZARD,
                ts=now,
            )
            for key in active - wanted.keys()
        ]
        if not events:
            return []
        transitions, _ = self.alarms.apply(events)
        return transitions


def _clocked(job: Callable[[Session, float], None], now: float) -> Callable[[Session], None]:
    """`job` as a write that several workers' clocks may run at once (docs/scale.md: a takeover can
    overlap two for a few seconds): under its advisory lock, the second to come skipping it (what
    is still due, its next tick does). A plan's first schedule row would otherwise be inserted by
    both, and the loser's transaction fail."""

    def work(s: Session) -> None:
        if try_hold(s.connection(), Space.TICKET_CLOCK, job.__name__):
            job(s, now)

    return work
