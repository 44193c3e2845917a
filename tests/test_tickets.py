"""The rectification loop (DESIGN §5) on SQLite and PostgreSQL: sources, workflow by role, deadlines,
schedules, patrols, telemetry-backed re-inspection and the all-or-nothing audit."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from alarms.policy import Policy
from alarms.service import AlarmService
from alarms.tickets import TicketOpener
from core.domain import (
    AlarmCategory,
    DetectorEvent,
    DetectorEventKind,
    Role,
    TicketAction,
    TicketSource,
    TicketStatus,
)
from core.settings import AlarmPolicySettings, MaintenancePlan, PatrolRoute, TicketPolicy
from ingest.index import DeviceIndex
from storage.db import open_store
from storage.models import (
    AlarmEventRow,
    AlarmRow,
    PatrolRoundRow,
    TicketCommentRow,
    TicketEventRow,
    TicketEvidenceRow,
    TicketRow,
)
from storage.telemetry import TelemetryStore
from tests.conftest import PROFILES, FakeClock, small_registry
from tickets.service import (
    ActionFields,
    HazardReport,
    PatrolVisit,
    TicketInputError,
    TicketService,
)
from tickets.workflow import RoleNotPermittedError, WrongStatusError

T0 = 1_790_000_000.0
HOUR = 3600.0
ROUTE = PatrolRoute(
    name="night",
    site="s1",
    title_zh="住院楼夜间巡查",
    checkpoints=["s1/b1/f1/z1", "s1/b1/f1/z2"],
    every_hours=2,
    grace_hours=0.5,
    department="保卫科",
    responsible="王五",
)
PLAN = MaintenancePlan(
    name="detector-test", title_zh="火灾探测器功能测试", every_days=30, deadline_hours=48, kinds=["smoke"]
)


@dataclass
class Loop:
    tickets: TicketService
    alarms: AlarmService
    clock: FakeClock
    telemetry: TelemetryStore

    def rows(self, **where: Any) -> list[TicketRow]:
        with self.tickets.sessions() as s:
            q = select(TicketRow).order_by(TicketRow.id)
            for k, v in where.items():
                q = q.where(getattr(TicketRow, k) == v)
            return list(s.scalars(q))

    def get(self, ticket_id: int) -> TicketRow:
        with self.tickets.sessions() as s:
            row = s.get(TicketRow, ticket_id)
            assert row is not None
            return row

    def events(self, ticket_id: int) -> list[TicketEventRow]:
        with self.tickets.sessions() as s:
            q = (
                select(TicketEventRow)
                .where(TicketEventRow.ticket_id == ticket_id)
                .order_by(TicketEventRow.id)
            )
            return list(s.scalars(q))


def build(url: str, tmp_path: Path, policy: TicketPolicy) -> Loop:
    clock = FakeClock(T0)
    _, sessions = open_store(url)
    index = DeviceIndex.build(small_registry(), PROFILES)
    alarms = AlarmService(
        sessions, index, TicketOpener(index, policy), clock, [], Policy(AlarmPolicySettings())
    )
    telemetry = TelemetryStore(tmp_path / "telemetry.sqlite")
    telemetry.bind(
        (index.device_ids[int(d)], c)
        for d, c in zip(index.slot_device.tolist(), index.slot_channel, strict=True)
    )
    service = TicketService(sessions, index, policy, alarms=alarms, telemetry=telemetry, clock=clock)
    return Loop(service, alarms, clock, telemetry)


@pytest.fixture
def loop(store_url: str, tmp_path: Path) -> Iterator[Loop]:
    built = build(store_url, tmp_path, TicketPolicy(plans=[], patrols=[ROUTE], normal_for_s=6 * HOUR))
    yield built
    built.telemetry.close()


def hazard(**overrides: Any) -> HazardReport:
    fields: dict[str, Any] = {
        "site": "s1",
        "problem": "药剂科危化品库房灭火器压力不足",
        "inspectors": "赵六、钱七",
        "inspection_time": T0,
        "department": "药剂科",
        "responsible": "孙八",
        "measures": "更换灭火器并检查其余灭火器压力",
        "place": "s1/b1/f1/z1",
    }
    return HazardReport(**(fields | overrides))


def walk(loop: Loop, ticket_id: int) -> None:
    """Take a ticket through the whole loop with the right person at each step."""
    t = loop.tickets
    t.act(
        ticket_id,
        TicketAction.ASSIGN,
        "保卫科 周九",
        Role.SAFETY,
        fields=ActionFields(assignee="维修组 吴十"),
    )
    loop.clock.now += HOUR
    t.act(ticket_id, TicketAction.START, "维修组 吴十", Role.MAINTENANCE)
    loop.clock.now += HOUR
    t.act(
        ticket_id,
        TicketAction.RECTIFY,
        "维修组 吴十",
        Role.MAINTENANCE,
        fields=ActionFields(feedback="已更换 2 具灭火器，其余压力正常", signed_by="孙八"),
    )
    loop.clock.now += HOUR
    t.act(ticket_id, TicketAction.VERIFY, "保卫科 周九", Role.SAFETY, "复查合格")
    loop.clock.now += HOUR
    t.act(ticket_id, TicketAction.CLOSE, "分管副院长 郑一", Role.LEADER)


# --- sources and the loop -------------------------------------------------------------------------
def test_a_hazard_found_by_an_inspection_opens_a_ticket_with_the_forms_fields(loop: Loop) -> None:
    change = loop.tickets.report(hazard(), "赵六", Role.SAFETY)
    t = loop.get(change.ticket_id)
    assert change.action == "opened"
    assert t.number.startswith("YH-")
    assert t.status == TicketStatus.OPEN
    assert (t.source, t.category, t.department, t.responsible) == ("inspection", "hazard", "药剂科", "孙八")
    assert (t.inspectors, t.inspection_time, t.problem) == (
        "赵六、钱七",
        T0,
        "药剂科危化品库房灭火器压力不足",
    )
    assert t.deadline == T0 + 168 * HOUR  # site policy for the hazard category
    assert [(e.action, e.actor, e.role) for e in loop.events(t.id)] == [("opened", "赵六", "safety")]


def test_a_viewer_may_not_report_a_hazard(loop: Loop) -> None:
    with pytest.raises(RoleNotPermittedError, match="viewer"):
        loop.tickets.report(hazard(), "someone", Role.VIEWER)


def test_a_second_finding_on_a_devices_open_ticket_is_appended_not_duplicated(loop: Loop) -> None:
    first = loop.tickets.report(hazard(device_id="smk-1-1", hazard_type="blocked"), "赵六", Role.SAFETY)
    again = loop.tickets.report(hazard(device_id="smk-1-1", hazard_type="blocked"), "钱七", Role.OPERATOR)
    assert again.ticket_id == first.ticket_id
    assert again.action == "recurred"
    t = loop.get(first.ticket_id)
    assert t.occurrences == 2
    assert t.department == "药剂科"
    assert t.place == "s1/b1/f1/z1"


def test_the_whole_loop_fills_every_sign_off_and_records_who_and_when(loop: Loop) -> None:
    ticket_id = loop.tickets.report(hazard(), "赵六", Role.SAFETY).ticket_id
    walk(loop, ticket_id)
    t = loop.get(ticket_id)
    assert t.status == TicketStatus.CLOSED
    assert (t.assignee, t.assigned_at) == ("维修组 吴十", T0)
    assert (t.feedback_signed_by, t.feedback_signed_at, t.rectified_at) == (
        "孙八",
        T0 + 2 * HOUR,
        T0 + 2 * HOUR,
    )
    assert (t.confirmed_by, t.confirmed_at) == ("保卫科 周九", T0 + 3 * HOUR)
    assert (t.leader_signed_by, t.leader_signed_at, t.closed_at) == (
        "分管副院长 郑一",
        T0 + 4 * HOUR,
        T0 + 4 * HOUR,
    )
    assert [(e.action, e.status_before, e.status_after, e.role) for e in loop.events(ticket_id)] == [
        ("opened", None, "open", "safety"),
        ("assign", "open", "assigned", "safety"),
        ("start", "assigned", "rectifying", "maintenance"),
        ("rectify", "rectifying", "rectified", "maintenance"),
        ("verify", "rectified", "verified", "safety"),
        ("close", "verified", "closed", "leader"),
    ]


def test_a_failed_re_inspection_goes_back_to_rectifying_and_needs_a_reason(loop: Loop) -> None:
    ticket_id = loop.tickets.report(hazard(), "赵六", Role.SAFETY).ticket_id
    t = loop.tickets
    t.act(ticket_id, TicketAction.ASSIGN, "周九", Role.SAFETY, fields=ActionFields(assignee="吴十"))
    t.act(ticket_id, TicketAction.START, "吴十", Role.MAINTENANCE)
    t.act(ticket_id, TicketAction.RECTIFY, "吴十", Role.MAINTENANCE, fields=ActionFields(feedback="已处理"))
    with pytest.raises(TicketInputError, match="note"):
        t.act(ticket_id, TicketAction.REJECT, "周九", Role.SAFETY)
    assert (
        t.act(ticket_id, TicketAction.REJECT, "周九", Role.SAFETY, "仍有一具压力不足").status == "rectifying"
    )


@pytest.mark.parametrize(
    ("action", "role"),
    [
        (TicketAction.VERIFY, Role.MAINTENANCE),  # nobody confirms their own work
        (TicketAction.CLOSE, Role.SAFETY),  # only the supervising leader signs the close
        (TicketAction.RECTIFY, Role.OPERATOR),
        (TicketAction.ASSIGN, Role.VIEWER),
    ],
)
def test_each_step_is_permitted_only_to_its_roles(loop: Loop, action: TicketAction, role: Role) -> None:
    ticket_id = loop.tickets.report(hazard(), "赵六", Role.SAFETY).ticket_id
    with pytest.raises(RoleNotPermittedError):
        loop.tickets.act(ticket_id, action, "someone", role, "x", ActionFields(assignee="a", feedback="f"))
    assert loop.get(ticket_id).status == TicketStatus.OPEN
    assert len(loop.events(ticket_id)) == 1


def test_a_step_out_of_order_is_refused(loop: Loop) -> None:
    ticket_id = loop.tickets.report(hazard(), "赵六", Role.SAFETY).ticket_id
    with pytest.raises(WrongStatusError, match="only when rectified"):
        loop.tickets.act(ticket_id, TicketAction.VERIFY, "周九", Role.SAFETY)


def test_a_transition_that_fails_midway_leaves_neither_the_change_nor_its_audit_entry(
    loop: Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    ticket_id = loop.tickets.report(hazard(), "赵六", Role.SAFETY).ticket_id

    def crash(*_args: Any) -> None:
        raise RuntimeError("power cut between the change and its audit entry")

    monkeypatch.setattr(TicketService, "_log", staticmethod(crash))
    with pytest.raises(RuntimeError):
        loop.tickets.act(
            ticket_id, TicketAction.ASSIGN, "周九", Role.SAFETY, fields=ActionFields(assignee="吴十")
        )
    t = loop.get(ticket_id)
    assert (t.status, t.assignee) == (TicketStatus.OPEN, None)
    assert [e.action for e in loop.events(ticket_id)] == ["opened"]


def test_comments_and_evidence_are_kept_with_an_audit_entry_and_evidence_is_size_limited(loop: Loop) -> None:
    ticket_id = loop.tickets.report(hazard(), "赵六", Role.SAFETY).ticket_id
    loop.tickets.comment(ticket_id, "吴十", Role.MAINTENANCE, "灭火器已订购，周三到货")
    photo = b"\x89PNG\r\n\x1a\n" + bytes(1000)
    e = loop.tickets.attach(
        ticket_id, "吴十", Role.MAINTENANCE, "after.png", "image/png", photo, "整改后照片"
    )
    assert e.size == len(photo)
    assert len(e.sha256) == 64
    with pytest.raises(TicketInputError, match="evidence_max_bytes"):
        loop.tickets.attach(
            ticket_id, "吴十", Role.MAINTENANCE, "huge.jpg", "image/jpeg", bytes(11 * 1024 * 1024)
        )
    with pytest.raises(RoleNotPermittedError):
        loop.tickets.comment(ticket_id, "guest", Role.VIEWER, "hello")
    with loop.tickets.sessions() as s:
        assert s.scalar(select(func.count()).select_from(TicketEvidenceRow)) == 1
        assert [c.text for c in s.scalars(select(TicketCommentRow))] == ["灭火器已订购，周三到货"]
    assert [e.action for e in loop.events(ticket_id)] == ["opened", "comment", "attach"]


# --- deadlines ------------------------------------------------------------------------------------
def test_an_overdue_ticket_is_flagged_and_escalated_as_an_alarm_until_rectified(loop: Loop) -> None:
    ticket_id = loop.tickets.report(hazard(deadline=T0 + HOUR), "赵六", Role.SAFETY).ticket_id
    assert loop.tickets.tick() == []
    loop.clock.now = T0 + 2 * HOUR
    raised = loop.tickets.tick()
    t = loop.get(ticket_id)
    assert t.overdue
    assert t.overdue_at == T0 + 2 * HOUR
    assert [(x.action, x.after["alarm_type"], x.after["category"]) for x in raised] == [
        ("raised", "ticket.overdue", "hazard")
    ]
    assert (raised[0].after["device_id"], raised[0].after["site"], raised[0].after["place"]) == (
        f"ticket:{t.number}",
        "s1",
        "s1/b1/f1/z1",
    )
    assert loop.tickets.tick() == []  # level, not edge: no second alarm while it stays overdue
    assert len(loop.rows()) == 1  # an alarm about a ticket opens no ticket of its own

    t_ = loop.tickets
    t_.act(ticket_id, TicketAction.ASSIGN, "周九", Role.SAFETY, fields=ActionFields(assignee="吴十"))
    t_.act(ticket_id, TicketAction.START, "吴十", Role.MAINTENANCE)
    t_.act(ticket_id, TicketAction.RECTIFY, "吴十", Role.MAINTENANCE, fields=ActionFields(feedback="已更换"))
    cleared = loop.tickets.tick()
    assert [x.action for x in cleared] == ["cleared"]
    assert not loop.get(ticket_id).overdue


def test_extending_the_deadline_needs_a_reason_and_ends_the_overdue_alarm(loop: Loop) -> None:
    ticket_id = loop.tickets.report(hazard(deadline=T0 + HOUR), "赵六", Role.SAFETY).ticket_id
    loop.clock.now = T0 + 2 * HOUR
    loop.tickets.tick()
    with pytest.raises(TicketInputError, match="reason"):
        loop.tickets.act(
            ticket_id, TicketAction.EXTEND, "周九", Role.SAFETY, fields=ActionFields(deadline=T0 + 9 * HOUR)
        )
    loop.tickets.act(
        ticket_id, TicketAction.EXTEND, "周九", Role.SAFETY, "备件未到", ActionFields(deadline=T0 + 9 * HOUR)
    )
    assert [x.action for x in loop.tickets.tick()] == ["cleared"]
    assert loop.get(ticket_id).deadline == T0 + 9 * HOUR


# --- scheduled maintenance and patrols ------------------------------------------------------------
def test_a_maintenance_plan_opens_one_ticket_when_due_and_the_next_after_it_closes(
    store_url: str, tmp_path: Path
) -> None:
    loop = build(store_url, tmp_path, TicketPolicy(plans=[PLAN], patrols=[]))
    loop.tickets.tick()
    loop.tickets.tick()
    (t,) = loop.rows(source="maintenance")
    assert (t.hazard_type, t.plan, t.subject) == (
        "maintenance.detector-test",
        "detector-test",
        "plan:detector-test:s1",
    )
    assert "火灾探测器功能测试" in t.problem
    assert "6 台" in t.problem
    assert t.deadline == T0 + 48 * HOUR
    walk(loop, t.id)
    loop.clock.now = T0 + 29 * 86_400
    loop.tickets.tick()
    assert len(loop.rows(source="maintenance")) == 1  # not due again before 30 days
    loop.clock.now = T0 + 30 * 86_400
    loop.tickets.tick()
    assert [x.status for x in loop.rows(source="maintenance")] == ["closed", "open"]
    loop.telemetry.close()


def test_overdue_maintenance_is_itself_a_hazard(store_url: str, tmp_path: Path) -> None:
    loop = build(store_url, tmp_path, TicketPolicy(plans=[PLAN], patrols=[]))
    loop.tickets.tick()
    loop.clock.now = T0 + 49 * HOUR
    loop.tickets.tick()
    loop.tickets.tick()
    (h,) = loop.rows(hazard_type="maintenance.overdue")
    (m,) = loop.rows(source="maintenance")
    assert m.overdue
    assert m.number in h.problem
    assert h.category == "hazard"
    loop.telemetry.close()


def test_a_missed_patrol_is_a_hazard_and_a_recorded_round_resets_the_schedule(loop: Loop) -> None:
    loop.tickets.tick()  # the route's first round is due one interval after start
    loop.clock.now = T0 + 2.4 * HOUR
    loop.tickets.tick()
    assert loop.rows(hazard_type="patrol.missed") == []
    loop.clock.now = T0 + 2.6 * HOUR  # past the grace period
    loop.tickets.tick()
    (missed,) = loop.rows(hazard_type="patrol.missed")
    assert missed.source == TicketSource.PATROL
    assert "住院楼夜间巡查" in missed.problem
    assert (missed.department, missed.responsible) == ("保卫科", "王五")

    visits = [
        PatrolVisit("s1/b1/f1/z1", T0 + 2.7 * HOUR),
        PatrolVisit(
            "s1/b1/f1/z2", T0 + 2.8 * HOUR, ok=False, problem=hazard(problem="2区安全出口堵塞", place="")
        ),
    ]
    result = loop.tickets.record_patrol(
        "night", "夜班保安", T0 + 2.65 * HOUR, T0 + 2.9 * HOUR, visits, "夜班保安", Role.SAFETY
    )
    (found,) = [loop.get(c.ticket_id) for c in result.tickets]
    assert (found.source, found.patrol_round_id, found.place) == ("patrol", result.round_id, "s1/b1/f1/z2")
    assert found.inspection_time == T0 + 2.8 * HOUR
    assert found.inspectors == "夜班保安"
    loop.clock.now = T0 + 5.3 * HOUR  # 2.4 h after the round: within 2 h + 0.5 h grace
    loop.tickets.tick()
    assert loop.get(missed.id).occurrences == 1
    loop.clock.now = T0 + 5.5 * HOUR
    loop.tickets.tick()
    assert loop.get(missed.id).occurrences == 2  # missed again: appended to the open ticket


def test_a_round_that_skips_checkpoints_records_them_and_opens_one_hazard(loop: Loop) -> None:
    result = loop.tickets.record_patrol(
        "night", "夜班保安", T0, T0 + 600, [PatrolVisit("s1/b1/f1/z1", T0 + 60)], "夜班保安", Role.SAFETY
    )
    assert result.missed == ["s1/b1/f1/z2"]
    (t,) = loop.rows(hazard_type="patrol.incomplete")
    assert "s1/b1/f1/z2" in t.problem
    with loop.tickets.sessions() as s:
        rnd = s.get(PatrolRoundRow, result.round_id)
        assert rnd is not None
        assert rnd.missed == ["s1/b1/f1/z2"]
        assert rnd.problems == 0


def test_a_round_on_an_unknown_route_or_checkpoint_is_refused(loop: Loop) -> None:
    with pytest.raises(TicketInputError, match="no patrol route"):
        loop.tickets.record_patrol("day", "x", T0, T0 + 1, [], "x", Role.SAFETY)
    with pytest.raises(TicketInputError, match="not on route"):
        loop.tickets.record_patrol("night", "x", T0, T0 + 1, [PatrolVisit("s1/b9", T0)], "x", Role.SAFETY)


# --- telemetry-backed re-inspection ---------------------------------------------------------------
def fault(kind: DetectorEventKind, ts: float) -> DetectorEvent:
    return DetectorEvent("prs-1", "pressure.low", kind, AlarmCategory.SUPERVISORY, ts, value=0.08)


def readings(loop: Loop, start: float, end: float, value: float) -> None:
    ts = np.arange(start, end, 60.0)
    slots = np.full(len(ts), loop.tickets.index.slot("prs-1", "pressure"), dtype=np.int32)
    loop.telemetry.write(slots, ts, np.full(len(ts), value), [])


def test_a_device_condition_normal_long_enough_marks_its_ticket_ready_with_the_readings_attached(
    loop: Loop,
) -> None:
    loop.alarms.apply([fault(DetectorEventKind.RAISE, T0)])
    (t,) = loop.rows(device_id="prs-1")
    loop.clock.now = T0 + HOUR
    loop.alarms.apply([fault(DetectorEventKind.CLEAR, T0 + HOUR)])
    readings(loop, T0 + HOUR, T0 + 8 * HOUR, 0.35)
    loop.clock.now = T0 + 6.9 * HOUR
    loop.tickets.tick()
    assert loop.get(t.id).ready_at is None  # normal for 5.9 h of the 6 required
    loop.clock.now = T0 + 7.1 * HOUR
    loop.tickets.tick()
    ready = loop.get(t.id)
    assert ready.ready_at == T0 + 7.1 * HOUR
    assert ready.status == TicketStatus.OPEN
    with loop.tickets.sessions() as s:
        (e,) = s.scalars(select(TicketEvidenceRow).where(TicketEvidenceRow.ticket_id == t.id))
    text = e.data.decode("utf-8-sig")
    assert e.filename.endswith("-readings.csv")
    assert "pressure" in text
    assert "0.35" in text
    assert "压力 0.35–0.35 MPa" in e.note  # the channel in words, with its unit
    assert loop.events(t.id)[-1].action == "ready"

    loop.clock.now = T0 + 8 * HOUR
    loop.alarms.apply([fault(DetectorEventKind.RAISE, T0 + 8 * HOUR)])
    again = loop.get(t.id)
    assert again.ready_at is None
    assert [e.action for e in loop.events(t.id)][-2:] == ["recurred", "not_ready"]


def test_no_readings_is_not_evidence_of_a_normal_condition(loop: Loop) -> None:
    loop.alarms.apply([fault(DetectorEventKind.RAISE, T0)])
    loop.alarms.apply([fault(DetectorEventKind.CLEAR, T0 + 60)])
    loop.clock.now = T0 + 24 * HOUR
    loop.tickets.tick()
    (t,) = loop.rows(device_id="prs-1")
    assert t.ready_at is None


# --- concurrency ----------------------------------------------------------------------------------
def test_many_alarms_and_findings_for_one_device_and_hazard_at_once_make_one_open_ticket(
    store_url: str, tmp_path: Path
) -> None:
    """Independent services (as separate processes would be) race on one key: the unique index and
    the retried transaction leave exactly one open ticket with every occurrence counted."""
    policy = TicketPolicy(plans=[], patrols=[])
    loops = [build(store_url, tmp_path / str(i), policy) for i in range(4)]
    start = threading.Barrier(len(loops))

    def writer(w: int) -> None:
        loop = loops[w]
        start.wait()
        for n in range(10):
            if w % 2:
                loop.tickets.report(
                    hazard(device_id="prs-1", hazard_type="device.fault"), f"w{w}", Role.SAFETY
                )
            else:
                ev = DetectorEvent(
                    "prs-1", "device.fault", DetectorEventKind.RAISE, AlarmCategory.FAULT, T0 + n
                )
                loop.alarms.apply([ev])
                loop.alarms.apply(
                    [
                        DetectorEvent(
                            "prs-1", "device.fault", DetectorEventKind.CLEAR, AlarmCategory.FAULT, T0 + n
                        )
                    ]
                )

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(len(loops))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    (t,) = loops[0].rows(hazard_type="device.fault")
    with loops[0].tickets.sessions() as s:
        raised = s.scalar(
            select(func.count())
            .select_from(AlarmEventRow)
            .join(AlarmRow, AlarmRow.id == AlarmEventRow.alarm_id)
            .where(AlarmRow.alarm_type == "device.fault", AlarmEventRow.action == "raised")
        )
        occurrences = s.scalar(
            select(func.sum(AlarmRow.occurrences)).where(AlarmRow.alarm_type == "device.fault")
        )
        logged = s.scalar(
            select(func.count()).select_from(TicketEventRow).where(TicketEventRow.ticket_id == t.id)
        )
    assert occurrences == 20  # every raise counted on the one alarm
    # A raise while the other writer's raise is still active is a repeat of an active alarm, not a
    # new occurrence of the hazard; every (re-)raise and every finding by people is on the ticket.
    assert t.occurrences == (raised or 0) + 20
    assert logged == t.occurrences
    for loop in loops:
        loop.telemetry.close()
