"""Request and response models of the ticket API: the seed form's fields, the loop's actions,
patrol rounds. Inputs forbid unknown fields and bound every string, so bad input is a 422 with the
field named, never a 500.

Who acts is the signed-in caller (api/auth.py). A caller holding several roles may name the one it
acts in (`role`); the workflow enforces what that role may do and records both.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from core.domain import AlarmCategory, Role, TicketAction, TicketSource, TicketStatus


class TicketOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    number: str = Field(description="编号, e.g. YH-20261123-00012")
    source: TicketSource
    status: TicketStatus
    category: AlarmCategory
    hazard_type: str
    device_id: str | None
    subject: str | None
    site: str
    place: str
    department: str = Field(description="科室")
    responsible: str = Field(description="责任人")
    inspection_time: float = Field(description="检查时间")
    inspectors: str = Field(description="检查人员")
    problem: str = Field(description="检查发现问题")
    measures: str = Field(description="整改措施与意见")
    deadline: float = Field(description="整改时限")
    assignee: str | None = Field(description="整改人")
    feedback: str = Field(description="整改落实情况反馈")
    feedback_signed_by: str | None = Field(description="负责人签字")
    feedback_signed_at: float | None
    confirmed_by: str | None = Field(description="整改确认签字")
    confirmed_at: float | None
    leader_signed_by: str | None = Field(description="分管领导签字")
    leader_signed_at: float | None
    occurrences: int
    overdue: bool = Field(description="past its deadline and not yet rectified")
    overdue_at: float | None
    ready_at: float | None = Field(
        description="telemetry shows the condition normal: ready for re-inspection"
    )
    plan: str | None
    patrol_round_id: int | None
    created_at: float
    assigned_at: float | None
    rectified_at: float | None
    verified_at: float | None
    updated_at: float
    closed_at: float | None


class TicketEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    ts: float
    action: TicketAction
    actor: str
    role: str
    note: str
    status_before: TicketStatus | None
    status_after: TicketStatus


class CommentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    ts: float
    author: str
    text: str


class EvidenceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    ts: float
    uploaded_by: str
    filename: str
    content_type: str
    size: int
    sha256: str
    note: str


class TicketDetailOut(TicketOut):
    events: list[TicketEventOut]
    comments: list[CommentOut]
    evidence: list[EvidenceOut]
    alarm_ids: list[int]


class Actor(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role | None = Field(
        default=None,
        description="the role to act in, when you hold several; default: the first of yours the "
        "action allows. It decides what you may do and is recorded",
    )


class HazardIn(Actor):
    """A hazard found by an inspection (检查发现问题): opens a ticket."""

    site: str = Field(default="", max_length=64, description="required unless device_id is given")
    problem: str = Field(min_length=1, max_length=4000)
    inspectors: str = Field(min_length=1, max_length=200)
    inspection_time: float | None = Field(default=None, ge=0, le=1e11, description="default: now")
    category: AlarmCategory = AlarmCategory.HAZARD
    hazard_type: str = Field(default="inspection", min_length=1, max_length=64, pattern=r"^[a-z0-9_.-]+$")
    department: str = Field(default="", max_length=100)
    responsible: str = Field(default="", max_length=100)
    measures: str = Field(default="", max_length=4000)
    place: str = Field(default="", max_length=400)
    device_id: str | None = Field(default=None, min_length=1, max_length=64)
    deadline: float | None = Field(
        default=None, ge=0, le=1e11, description="default: site policy per category"
    )


class TicketChangeOut(BaseModel):
    ticket: TicketOut
    action: Literal["opened", "recurred"]


PersonAction = Literal["assign", "start", "rectify", "verify", "reject", "close", "extend"]


class TransitionIn(Actor):
    """One step of the loop. assign: `assignee` (and optionally `responsible`, `deadline`); rectify:
    `feedback`; reject: `note` (what is still wrong); extend: `deadline` and `note`. The sign-offs
    record `signed_by`, or the actor."""

    action: PersonAction
    note: str = Field(default="", max_length=4000)
    assignee: str | None = Field(default=None, min_length=1, max_length=100)
    responsible: str | None = Field(default=None, min_length=1, max_length=100)
    deadline: float | None = Field(default=None, ge=0, le=1e11)
    feedback: str | None = Field(default=None, min_length=1, max_length=4000)
    signed_by: str | None = Field(default=None, min_length=1, max_length=100)


class TicketEditIn(Actor):
    """Corrections to the form's description (the safety office or the leader, while not closed).
    Every change is kept in the ticket's history with its old value."""

    problem: str | None = Field(default=None, min_length=1, max_length=4000)
    measures: str | None = Field(default=None, max_length=4000)
    department: str | None = Field(default=None, max_length=100)
    responsible: str | None = Field(default=None, max_length=100)
    place: str | None = Field(default=None, max_length=400)
    note: str = Field(default="", max_length=2000, description="why (recorded with the change)")


class CommentIn(Actor):
    text: str = Field(min_length=1, max_length=4000)


class PatrolProblemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    problem: str = Field(min_length=1, max_length=4000)
    measures: str = Field(default="", max_length=4000)
    category: AlarmCategory = AlarmCategory.HAZARD
    hazard_type: str = Field(default="patrol", min_length=1, max_length=64, pattern=r"^[a-z0-9_.-]+$")
    department: str = Field(default="", max_length=100)
    responsible: str = Field(default="", max_length=100)
    place: str = Field(default="", max_length=400)
    device_id: str | None = Field(default=None, min_length=1, max_length=64)
    deadline: float | None = Field(default=None, ge=0, le=1e11)


class PatrolVisitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    checkpoint: str = Field(min_length=1, max_length=400)
    ts: float = Field(ge=0, le=1e11)
    ok: bool = True
    note: str = Field(default="", max_length=2000)
    problem: PatrolProblemIn | None = None


class PatrolRoundIn(Actor):
    route: str = Field(min_length=1, max_length=64)
    inspectors: str = Field(min_length=1, max_length=200)
    started_at: float = Field(ge=0, le=1e11)
    finished_at: float = Field(ge=0, le=1e11)
    visits: list[PatrolVisitIn] = Field(max_length=1000)


class PatrolRoundOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    route: str
    site: str
    inspectors: str
    started_at: float
    finished_at: float
    visits: list[dict[str, object]]
    missed: list[str]
    problems: int
    recorded_by: str


class PatrolResultOut(BaseModel):
    round: PatrolRoundOut
    tickets: list[TicketChangeOut]


class PatrolRouteOut(BaseModel):
    name: str
    site: str
    title_zh: str
    checkpoints: list[str]
    every_hours: float
    grace_hours: float
    last_done: float | None
    next_due: float | None


class PlanRunOut(BaseModel):
    plan: str
    title_zh: str
    site: str
    every_days: float
    last_done: float | None
    next_due: float | None
    ticket_id: int | None
