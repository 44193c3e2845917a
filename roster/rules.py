"""The rules a shift of the roster must keep, checked before anything is saved (docs/duty.md).

Pure functions over plain values, so the API, the XLSX import and the tests check the same thing.
Messages are Chinese: they are shown to the safety office as they are.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from alarms.labels import duty_role_zh


class DutyRole(StrEnum):
    """The duty roles of the shipped fire escalation chain (core/settings.py default_fire_chain). A
    site may staff roles of its own too (any name a push route's `roles` uses)."""

    CONTROL_ROOM = "control_room"  # 消防控制室
    MICRO_FIRE_STATION = "micro_fire_station"  # 微型消防站
    LEADER_ON_CALL = "leader_on_call"  # 值班领导


ROLE_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
# GB 25506-2010 §4.2.1: the fire control room is staffed 24 hours a day, at least two people a shift.
CONTROL_ROOM_MIN = 2
# Site policy: one leader on call (值班领导) answers for each shift, so escalation reaches one person.
LEADERS_PER_SHIFT = 1
LONGEST_SHIFT_S = 24 * 3600.0


@dataclass(frozen=True)
class Member:
    user: str
    role: str


@dataclass(frozen=True)
class ShiftDraft:
    """A shift as asked for, before it is checked."""

    name: str
    start_ts: float
    end_ts: float
    members: tuple[Member, ...]
    note: str = ""


@dataclass(frozen=True)
class Span:
    """Another shift of the roster, as far as the overlap and gap checks need it."""

    id: int
    name: str
    start_ts: float
    end_ts: float


@dataclass
class Verdict:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def when(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def check(draft: ShiftDraft, others: list[Span], names: dict[str, str]) -> Verdict:
    """The errors that refuse `draft` and the warnings shown with it. `others`: the roster's other
    shifts near it; `names`: the display name of every user who exists (and is not disabled)."""
    v = Verdict()
    if not draft.name.strip():
        v.errors.append("班次名称不能为空")
    if draft.end_ts <= draft.start_ts:
        v.errors.append("结束时间须晚于开始时间")
    elif draft.end_ts - draft.start_ts > LONGEST_SHIFT_S:
        v.errors.append("一个班次最长 24 小时")
    counts = Counter(m.user for m in draft.members)
    for user, n in counts.items():
        if n > 1:
            v.errors.append(f"同一人在一个班次中只能出现一次：{names.get(user, user)}")
    for m in draft.members:
        if m.user not in names:
            v.errors.append(f"没有这个人员（或账号已停用）：{m.user}")
    by_role = Counter(m.role for m in draft.members)
    control = by_role[DutyRole.CONTROL_ROOM]
    if control < CONTROL_ROOM_MIN:
        v.errors.append(
            f"{duty_role_zh(DutyRole.CONTROL_ROOM)}每班至少 {CONTROL_ROOM_MIN} 人"
            f"（GB 25506-2010 4.2.1：24 小时值班，每班不少于 2 人），本班 {control} 人"
        )
    leaders = by_role[DutyRole.LEADER_ON_CALL]
    if leaders != LEADERS_PER_SHIFT:
        v.errors.append(f"{duty_role_zh(DutyRole.LEADER_ON_CALL)}须恰好 1 人，本班 {leaders} 人")
    # One shift at a time: each shift holds every duty role, so "who is on duty now" has one answer
    # and escalation never has to choose between two shifts' people (docs/duty.md).
    for o in others:
        if o.start_ts < draft.end_ts and draft.start_ts < o.end_ts:
            v.errors.append(
                f"与班次「{o.name}」（{when(o.start_ts)} 至 {when(o.end_ts)}）时间重叠："
                "同一时间只能有一个班次"
            )
    if not v.errors:
        v.warnings.extend(gap_warnings(draft, others))
    return v


def gap_warnings(draft: ShiftDraft, others: list[Span]) -> list[str]:
    """A gap before or after the shift, up to its neighbours: shown, not refused (the roster may be
    written a shift at a time), and `GET /roster/now` says when nobody is on duty."""
    before = [o for o in others if o.end_ts <= draft.start_ts]
    after = [o for o in others if o.start_ts >= draft.end_ts]
    warnings = []
    if before:
        prev = max(before, key=lambda o: o.end_ts)
        if prev.end_ts < draft.start_ts:
            warnings.append(
                f"与上一班次「{prev.name}」之间有空档：{when(prev.end_ts)} 至 {when(draft.start_ts)} 无人值班"
            )
    if after:
        nxt = min(after, key=lambda o: o.start_ts)
        if nxt.start_ts > draft.end_ts:
            warnings.append(
                f"与下一班次「{nxt.name}」之间有空档：{when(draft.end_ts)} 至 {when(nxt.start_ts)} 无人值班"
            )
    return warnings


def gaps(spans: list[Span], start: float, end: float) -> list[tuple[float, float]]:
    """The stretches of [start, end) that no shift covers, in order."""
    found: list[tuple[float, float]] = []
    cursor = start
    for s in sorted(spans, key=lambda s: s.start_ts):
        if s.end_ts <= cursor:
            continue
        if s.start_ts > cursor:
            found.append((cursor, min(s.start_ts, end)))
        cursor = max(cursor, s.end_ts)
        if cursor >= end:
            break
    if cursor < end:
        found.append((cursor, end))
    return [(a, b) for a, b in found if b > a]
