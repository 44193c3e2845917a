"""Tables of the state store. Times are epoch seconds (float) throughout: one clock, no time zones."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class PlaceRow(Base):
    __tablename__ = "places"
    path: Mapped[str] = mapped_column(String(400), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    site: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(200))
    parent: Mapped[str | None] = mapped_column(String(400))
    department: Mapped[str] = mapped_column(String(100), default="")


class DeviceRow(Base):
    __tablename__ = "devices"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    profile: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    system: Mapped[str] = mapped_column(String(32))
    site: Mapped[str] = mapped_column(String(64), index=True)
    building: Mapped[str] = mapped_column(String(64))
    floor: Mapped[str] = mapped_column(String(64))
    zone: Mapped[str] = mapped_column(String(64))
    room: Mapped[str] = mapped_column(String(64))
    place: Mapped[str] = mapped_column(String(400))
    name: Mapped[str] = mapped_column(String(200), default="")
    department: Mapped[str] = mapped_column(String(100), default="")
    responsible: Mapped[str] = mapped_column(String(100), default="")
    installed: Mapped[str | None] = mapped_column(String(10))
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)


class RegistryMirrorRow(Base):
    """The registry that `places` and `devices` hold, by fingerprint (storage/registry_sync.py): one
    row, present only while they hold all of it."""

    __tablename__ = "registry_mirror"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    devices: Mapped[int] = mapped_column(Integer)
    places: Mapped[int] = mapped_column(Integer)
    synced: Mapped[float] = mapped_column(Float)


class AlarmRow(Base):
    __tablename__ = "alarms"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(64), index=True)
    alarm_type: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(16), index=True)
    severity: Mapped[str] = mapped_column(String(16))
    system: Mapped[str] = mapped_column(String(32))
    site: Mapped[str] = mapped_column(String(64), index=True)
    place: Mapped[str] = mapped_column(String(400))
    state: Mapped[str] = mapped_column(String(32), index=True)
    occurrences: Mapped[int] = mapped_column(Integer, default=1)
    first_ts: Mapped[float] = mapped_column(Float, index=True)  # KPI periods select on it
    last_ts: Mapped[float] = mapped_column(Float)
    cleared_ts: Mapped[float | None] = mapped_column(Float)
    acked_ts: Mapped[float | None] = mapped_column(Float)
    acked_by: Mapped[str | None] = mapped_column(String(100))
    ack_note: Mapped[str | None] = mapped_column(Text)
    false_alarm: Mapped[bool] = mapped_column(Boolean, default=False)
    closed_ts: Mapped[float | None] = mapped_column(Float)
    value: Mapped[float | None] = mapped_column(Float)
    peak: Mapped[float | None] = mapped_column(Float)
    channel: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text, default="")
    basis: Mapped[str] = mapped_column(Text, default="")
    department: Mapped[str] = mapped_column(String(100), default="")
    false_alarms: Mapped[int] = mapped_column(Integer, default=0)  # false-alarm acknowledgements
    raised_ts: Mapped[float] = mapped_column(Float)  # the last time it became active
    # Policy state (alarms/policy.py): who has been told, when the next step or reminder is due.
    escalation: Mapped[str | None] = mapped_column(String(64))
    escalation_step: Mapped[int] = mapped_column(Integer, default=0)
    escalate_at: Mapped[float | None] = mapped_column(Float, index=True)
    remind_at: Mapped[float | None] = mapped_column(Float, index=True)
    flapping: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    maintenance_id: Mapped[int | None] = mapped_column(Integer, index=True)
    shelved_until: Mapped[float | None] = mapped_column(Float, index=True)
    shelved_by: Mapped[str | None] = mapped_column(String(100))
    shelve_note: Mapped[str | None] = mapped_column(Text)
    # A latched fire alarm whose reading fell back: when it did (None while the condition is present,
    # and on every other alarm). The alarm stays active until reset (GB 4717); this tells whoever
    # goes to reset it that the detector reads normal again.
    normal_ts: Mapped[float | None] = mapped_column(Float)
    # The incident (火情/事件) this alarm belongs to (alarms/incidents.py): set when it is raised.
    incident_id: Mapped[int | None] = mapped_column(Integer, index=True)
    # The drill (演练, storage/drill_models.py) it was raised in: its pushes go to the drill's
    # recipients only and it counts in no false-alarm figure (docs/drills.md). None: a real alarm.
    drill_id: Mapped[int | None] = mapped_column(Integer, index=True)

    __table_args__ = (
        # One open alarm per (device, alarm type): the database refuses a second one even if two
        # writers race (SQLite and PostgreSQL both support partial unique indexes).
        Index(
            "uq_alarms_open_key",
            "device_id",
            "alarm_type",
            unique=True,
            sqlite_where=text("state != 'closed'"),
            postgresql_where=text("state != 'closed'"),
        ),
    )


class IncidentRow(Base):
    """One incident (火情/事件): the alarms of one fire, gas leak, outage or fault group, handled as
    one (alarms/incidents.py decides the grouping, alarms/incident_service.py keeps this row)."""

    __tablename__ = "incidents"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)  # core.domain.IncidentKind
    category: Mapped[str] = mapped_column(String(16))  # the worst category of its alarms
    severity: Mapped[str] = mapped_column(String(16))
    site: Mapped[str] = mapped_column(String(64), index=True)
    group_key: Mapped[str] = mapped_column(String(400), index=True)  # what alarms of one incident share
    place: Mapped[str] = mapped_column(String(400))  # the deepest place holding all its alarms
    places: Mapped[list[str]] = mapped_column(JSON, default=list)  # its alarms' places, first first
    zones: Mapped[list[str]] = mapped_column(JSON, default=list)  # zones it has reached, in order
    floors: Mapped[list[str]] = mapped_column(JSON, default=list)  # floors it has reached, in order
    state: Mapped[str] = mapped_column(String(16), index=True)  # core.domain.IncidentState
    first_alarm_id: Mapped[int] = mapped_column(Integer)
    alarm_count: Mapped[int] = mapped_column(Integer, default=1)
    device_count: Mapped[int] = mapped_column(Integer, default=1)
    active_count: Mapped[int] = mapped_column(Integer, default=1)
    zone_confirmed_ts: Mapped[float | None] = mapped_column(Float)  # two detectors of a zone agreed
    # An outage incident's devices: every device its outage alarms held, and its offline devices
    # (not in the snapshot that travels with each step: it may hold a site's worth of ids).
    devices: Mapped[list[str]] = mapped_column(JSON, default=list, deferred=True)  # loaded when read
    first_ts: Mapped[float] = mapped_column(Float, index=True)  # its first alarm's time
    last_ts: Mapped[float] = mapped_column(Float)  # its latest alarm's time
    opened_ts: Mapped[float] = mapped_column(Float)  # when firewatch opened it
    fire_ts: Mapped[float | None] = mapped_column(Float)  # when it first held a fire alarm
    acked_ts: Mapped[float | None] = mapped_column(Float)
    acked_by: Mapped[str | None] = mapped_column(String(100))
    ack_note: Mapped[str] = mapped_column(Text, default="")
    verification: Mapped[str] = mapped_column(String(16))  # core.domain.Verification
    verifier: Mapped[str | None] = mapped_column(String(100))  # who went to check
    verifying_ts: Mapped[float | None] = mapped_column(Float)
    verdict_ts: Mapped[float | None] = mapped_column(Float)
    verdict_by: Mapped[str | None] = mapped_column(String(100))
    cause: Mapped[str | None] = mapped_column(String(16))  # core.domain.FalseAlarmCause
    verdict_note: Mapped[str] = mapped_column(Text, default="")
    verify_due_ts: Mapped[float | None] = mapped_column(Float, index=True)
    verify_overdue_ts: Mapped[float | None] = mapped_column(Float)
    call_119_ts: Mapped[float | None] = mapped_column(Float)
    call_119_by: Mapped[str | None] = mapped_column(String(100))
    call_119_note: Mapped[str] = mapped_column(Text, default="")
    reset_ts: Mapped[float | None] = mapped_column(Float)
    reset_by: Mapped[str | None] = mapped_column(String(100))
    ended_ts: Mapped[float | None] = mapped_column(Float)
    closed_ts: Mapped[float | None] = mapped_column(Float)
    notified: Mapped[bool] = mapped_column(Boolean, default=False)  # its first notice went out
    escalation: Mapped[str | None] = mapped_column(String(64))
    escalation_step: Mapped[int] = mapped_column(Integer, default=0)
    escalate_at: Mapped[float | None] = mapped_column(Float, index=True)
    remind_at: Mapped[float | None] = mapped_column(Float, index=True)
    drill_id: Mapped[int | None] = mapped_column(Integer, index=True)  # a drill's incident (演练)


class IncidentEventRow(Base):
    """The incident's timeline: every step, who took it and when (the incident report reads it)."""

    __tablename__ = "incident_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    ts: Mapped[float] = mapped_column(Float)
    action: Mapped[str] = mapped_column(String(16))  # core.domain.IncidentAction
    actor: Mapped[str] = mapped_column(String(100))
    note: Mapped[str] = mapped_column(Text, default="")
    alarm_id: Mapped[int | None] = mapped_column(Integer)  # the alarm that caused it, if one did
    targets: Mapped[list[str]] = mapped_column(JSON, default=list)  # duty roles addressed
    after: Mapped[dict[str, Any]] = mapped_column(JSON)  # the incident after this step


class AlarmEventRow(Base):
    __tablename__ = "alarm_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alarm_id: Mapped[int] = mapped_column(ForeignKey("alarms.id"), index=True)
    ts: Mapped[float] = mapped_column(Float)
    action: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(100))
    note: Mapped[str] = mapped_column(Text, default="")
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any]] = mapped_column(JSON)
    targets: Mapped[list[str]] = mapped_column(JSON, default=list)  # duty roles addressed
    held: Mapped[str] = mapped_column(String(16), default="")  # why notifications were held


class MaintenanceRow(Base):
    """A declared maintenance window: alarms of the devices it covers are recorded but not pushed
    (fire alarms excepted: they are pushed, marked "during maintenance"). It ends at `end_ts`, when
    a person ends it, or when its ticket closes, whichever comes first."""

    __tablename__ = "maintenance"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site: Mapped[str] = mapped_column(String(64), index=True)
    place: Mapped[str | None] = mapped_column(String(400))  # every device at or under this place
    device_ids: Mapped[list[str]] = mapped_column(JSON, default=list)  # and/or these devices
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    reason: Mapped[str] = mapped_column(Text)
    start_ts: Mapped[float] = mapped_column(Float)
    end_ts: Mapped[float] = mapped_column(Float, index=True)
    created_by: Mapped[str] = mapped_column(String(100))
    created_ts: Mapped[float] = mapped_column(Float)
    ended_ts: Mapped[float | None] = mapped_column(Float, index=True)
    ended_by: Mapped[str | None] = mapped_column(String(100))
    end_note: Mapped[str] = mapped_column(Text, default="")


class AuditRow(Base):
    """Every human or policy action outside an alarm's own event log: who, when, what, on what."""

    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ts: Mapped[float] = mapped_column(Float, index=True)
    actor: Mapped[str] = mapped_column(String(100), index=True)
    action: Mapped[str] = mapped_column(String(64))  # an operation id, e.g. "acknowledge_alarm"
    subject: Mapped[str] = mapped_column(String(400), index=True)  # e.g. "maintenance:3", a path
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    role: Mapped[str] = mapped_column(String(100), default="")  # the actor's roles, comma-joined
    source: Mapped[str] = mapped_column(String(100), default="")  # where from: the client's address


class UserRow(Base):
    """A person who signs in. Passwords are kept only as Argon2 hashes (accounts/passwords.py)."""

    __tablename__ = "users"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(100), default="")
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    password_hash: Mapped[str] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # Created by `firewatch demo` with the published demo password: refused outside demo mode.
    demo: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[float] = mapped_column(Float)
    password_changed_at: Mapped[float] = mapped_column(Float)


class TokenRow(Base):
    """A bearer token: a person's login session or an integration's API key. Only the SHA-256 of
    the token is stored; the token itself is shown once, when issued."""

    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # accounts.model.TokenKind
    user: Mapped[str | None] = mapped_column(String(64), index=True)  # sessions: whose
    name: Mapped[str] = mapped_column(String(100), default="")  # API keys: what integration
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)  # API keys: what it may do
    hint: Mapped[str] = mapped_column(String(16), default="")  # the token's first characters
    created_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(64), default="")
    expires_at: Mapped[float | None] = mapped_column(Float)
    last_used_at: Mapped[float | None] = mapped_column(Float)
    revoked_at: Mapped[float | None] = mapped_column(Float)


class OutboxRow(Base):
    """A push owed to one route for one alarm transition, written in the transition's transaction.

    The dispatcher delivers it at least once: it is retried with backoff until delivered, never
    dropped, and survives restarts because it is a row, not a queue in memory.
    """

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    route: Mapped[str] = mapped_column(String(64))
    alarm_id: Mapped[int] = mapped_column(ForeignKey("alarms.id"), index=True)
    # An incident notice (alarms/outbox.py): its incident, and whether a later update of the same
    # incident on the same route may replace it while it waits (rate-limited updates).
    incident_id: Mapped[int | None] = mapped_column(Integer, index=True)
    replaceable: Mapped[bool] = mapped_column(Boolean, default=False)
    created_ts: Mapped[float] = mapped_column(Float)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_ts: Mapped[float] = mapped_column(Float)
    delivered_ts: Mapped[float | None] = mapped_column(Float)
    last_error: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (Index("ix_outbox_due", "delivered_ts", "next_ts"),)


class DeliveryRow(Base):
    """Every delivery attempt, successful or not: the audit of who was told what, when."""

    __tablename__ = "deliveries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    outbox_id: Mapped[int] = mapped_column(ForeignKey("outbox.id"), index=True)
    ts: Mapped[float] = mapped_column(Float)
    ok: Mapped[bool] = mapped_column(Boolean)
    seconds: Mapped[float] = mapped_column(Float)
    detail: Mapped[str] = mapped_column(Text, default="")
    # A roster route's send (docs/duty.md): the people it went to, each with role, name and address
    # (secrets masked), or the route's fixed url when nobody was on duty. None for other routes.
    recipients: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)


class TicketRow(Base):
    """A hazard-rectification ticket: the fields of the seed hospital's 隐患自查(督查)整改表."""

    __tablename__ = "tickets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    source: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), index=True)
    category: Mapped[str] = mapped_column(String(16))
    hazard_type: Mapped[str] = mapped_column(String(64))
    device_id: Mapped[str | None] = mapped_column(String(64), index=True)
    site: Mapped[str] = mapped_column(String(64), index=True)
    place: Mapped[str] = mapped_column(String(400))
    department: Mapped[str] = mapped_column(String(100), default="")  # 科室
    responsible: Mapped[str] = mapped_column(String(100), default="")  # 责任人
    inspection_time: Mapped[float] = mapped_column(Float)  # 检查时间
    inspectors: Mapped[str] = mapped_column(String(200), default="")  # 检查人员
    problem: Mapped[str] = mapped_column(Text)  # 检查发现问题
    measures: Mapped[str] = mapped_column(Text, default="")  # 整改措施与意见
    deadline: Mapped[float] = mapped_column(Float)  # 整改时限
    feedback: Mapped[str] = mapped_column(Text, default="")  # 整改落实情况反馈
    feedback_signed_by: Mapped[str | None] = mapped_column(String(100))  # 负责人签字
    feedback_signed_at: Mapped[float | None] = mapped_column(Float)
    confirmed_by: Mapped[str | None] = mapped_column(String(100))  # 整改确认签字
    confirmed_at: Mapped[float | None] = mapped_column(Float)
    leader_signed_by: Mapped[str | None] = mapped_column(String(100))  # 分管领导签字
    leader_signed_at: Mapped[float | None] = mapped_column(Float)
    occurrences: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[float] = mapped_column(Float, index=True)  # KPI periods select on it
    updated_at: Mapped[float] = mapped_column(Float)
    closed_at: Mapped[float | None] = mapped_column(Float)
    # What a ticket without a device is about, for its one-open-ticket key: a maintenance plan
    # ("plan:monthly-detector-test:s1") or a patrol route ("patrol:night-round").
    subject: Mapped[str | None] = mapped_column(String(200))
    assignee: Mapped[str | None] = mapped_column(String(100))  # who rectifies (整改人)
    assigned_at: Mapped[float | None] = mapped_column(Float)
    rectified_at: Mapped[float | None] = mapped_column(Float)  # first feedback: the loop's 整改 step
    verified_at: Mapped[float | None] = mapped_column(Float)
    overdue: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    overdue_at: Mapped[float | None] = mapped_column(Float)
    # Telemetry-backed re-inspection: the condition has stayed normal long enough (evidence attached).
    ready_at: Mapped[float | None] = mapped_column(Float)
    plan: Mapped[str | None] = mapped_column(String(64))  # the maintenance plan that opened it
    patrol_round_id: Mapped[int | None] = mapped_column(ForeignKey("patrol_rounds.id"))

    __table_args__ = (
        # One open ticket per (device, hazard type); recurrences are appended to it.
        Index(
            "uq_tickets_open_key",
            "device_id",
            "hazard_type",
            unique=True,
            sqlite_where=text("status != 'closed' AND device_id IS NOT NULL"),
            postgresql_where=text("status != 'closed' AND device_id IS NOT NULL"),
        ),
        # And one per (subject, hazard type) for tickets about a plan or a patrol route.
        Index(
            "uq_tickets_open_subject",
            "subject",
            "hazard_type",
            unique=True,
            sqlite_where=text("status != 'closed' AND subject IS NOT NULL"),
            postgresql_where=text("status != 'closed' AND subject IS NOT NULL"),
        ),
    )


class TicketAlarmRow(Base):
    __tablename__ = "ticket_alarms"
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), primary_key=True)
    alarm_id: Mapped[int] = mapped_column(ForeignKey("alarms.id"), primary_key=True)


class TicketEventRow(Base):
    __tablename__ = "ticket_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    ts: Mapped[float] = mapped_column(Float)
    action: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16), default="")  # the actor's role ("" for firewatch)
    note: Mapped[str] = mapped_column(Text, default="")
    status_before: Mapped[str | None] = mapped_column(String(16))
    status_after: Mapped[str] = mapped_column(String(16))


class TicketCommentRow(Base):
    __tablename__ = "ticket_comments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    ts: Mapped[float] = mapped_column(Float)
    author: Mapped[str] = mapped_column(String(100))
    text: Mapped[str] = mapped_column(Text)


class TicketEvidenceRow(Base):
    """A photo or file attached to a ticket (size-limited by site policy), kept in the state store
    so it is backed up and transactional with the ticket."""

    __tablename__ = "ticket_evidence"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    ts: Mapped[float] = mapped_column(Float)
    uploaded_by: Mapped[str] = mapped_column(String(100))
    filename: Mapped[str] = mapped_column(String(200))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[bytes] = mapped_column(LargeBinary)


class PatrolRoundRow(Base):
    """One patrol round (巡查) walked by people: the checkpoints visited, each with its result."""

    __tablename__ = "patrol_rounds"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    route: Mapped[str] = mapped_column(String(64), index=True)
    site: Mapped[str] = mapped_column(String(64), index=True)
    inspectors: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[float] = mapped_column(Float, index=True)
    visits: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    missed: Mapped[list[str]] = mapped_column(JSON, default=list)  # checkpoints of the route not visited
    problems: Mapped[int] = mapped_column(Integer, default=0)
    recorded_by: Mapped[str] = mapped_column(String(100))


class PlanRunRow(Base):
    """The schedule state of one maintenance plan ("plan:<name>") or patrol route ("patrol:<name>")
    at one site: when it was last done and when it is next due. The plans and routes themselves are
    site policy, in the settings."""

    __tablename__ = "plan_runs"
    plan: Mapped[str] = mapped_column(String(80), primary_key=True)
    site: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_done: Mapped[float | None] = mapped_column(Float)
    next_due: Mapped[float] = mapped_column(Float)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))


class RejectRow(Base):
    __tablename__ = "rejects"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    received: Mapped[float] = mapped_column(Float, index=True)
    topic: Mapped[str] = mapped_column(Text)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    reason: Mapped[str] = mapped_column(String(32), index=True)
    detail: Mapped[str] = mapped_column(Text)
    device_id: Mapped[str | None] = mapped_column(String(64))


class RejectTotalRow(Base):
    """Rejects counted by reason since the store was created (the raw store itself is bounded)."""

    __tablename__ = "reject_totals"
    reason: Mapped[str] = mapped_column(String(32), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


class DiscoveredDeviceRow(Base):
    """Devices that published but are not registered: listed for registration."""

    __tablename__ = "discovered_devices"
    device_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    site: Mapped[str] = mapped_column(String(200))
    first_seen: Mapped[float] = mapped_column(Float)
    last_seen: Mapped[float] = mapped_column(Float)
    messages: Mapped[int] = mapped_column(Integer, default=0)


class JournalMarkRow(Base):
    """The newest entry of a local journal (storage/telemetry.py) recorded here, written in the same
    transaction as what the entry recorded: an entry is applied once, whatever crashes between."""

    __tablename__ = "journal_marks"
    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_id: Mapped[int] = mapped_column(BigInteger)
    updated: Mapped[float] = mapped_column(Float)


# Tables kept in modules of their own, registered on Base.metadata with the rest.
import storage.cluster_models  # noqa: E402
import storage.drill_models  # noqa: E402
import storage.duty_models  # noqa: E402
import storage.plan_models  # noqa: E402
import storage.report_models  # noqa: E402
import storage.roster_models  # noqa: E402,F401
