"""The roster in the state store: shifts and their members, people's contacts, and who is on duty.

Every change is checked by roster/rules.py first and saved whole or not at all; the dispatcher asks
`on_duty` at send time (firewatch/roster_channel.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session, sessionmaker

from roster.addresses import MAX_ADDRESSES, unusable
from roster.rules import Member, ShiftDraft, Span, Verdict, check, gaps, when
from roster.xlsx import SheetError, read_sheet
from storage.db import IMMEDIATE
from storage.models import UserRow
from storage.roster_models import ContactRow, ShiftMemberRow, ShiftRow

# How far around a shift its neighbours are looked for (overlaps and gaps).
NEIGHBOURS_S = 7 * 86_400.0


# A transaction-scoped PostgreSQL advisory lock of the roster's own ("FW" + 1): roster writes take it
# so that a shift's overlap check and its write are one step for every writer.
ROSTER_LOCK = 0x46570001


def _one_writer_at_a_time(s: Session) -> None:
    """Begin `s` so no other roster write runs between its reads and its writes: SQLite takes its
    write lock at BEGIN (IMMEDIATE); PostgreSQL, whose default isolation would let two overlapping
    shifts each pass the check unseen by the other, takes the roster's advisory lock."""
    conn = s.connection(execution_options=IMMEDIATE)
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ROSTER_LOCK})


class RosterRuleError(ValueError):
    """A shift (or an imported sheet) breaks the roster's rules: each message says which and why."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("；".join(errors))
        self.errors = errors


class ShiftNotFoundError(LookupError):
    pass


class PersonNotFoundError(LookupError):
    pass


@dataclass(frozen=True)
class OnDuty:
    """A person on a shift: who, in which role, and how to reach them."""

    user: str
    display_name: str
    role: str
    phone: str
    addresses: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.display_name or self.user


@dataclass(frozen=True)
class Shift:
    id: int
    name: str
    start_ts: float
    end_ts: float
    note: str
    updated_ts: float
    updated_by: str
    members: list[OnDuty] = field(default_factory=list)


@dataclass(frozen=True)
class Contact:
    user: str
    display_name: str
    phone: str
    addresses: list[str]


class RosterService:
    def __init__(self, sessions: sessionmaker[Session], clock: Callable[[], float] = time.time) -> None:
        self.sessions = sessions
        self.clock = clock

    # --- reading --------------------------------------------------------------------------------

    def shifts(self, start: float, end: float) -> list[Shift]:
        """The shifts that overlap [start, end), in order."""
        with self.sessions() as s:
            rows = s.scalars(
                select(ShiftRow)
                .where(ShiftRow.start_ts < end, ShiftRow.end_ts > start)
                .order_by(ShiftRow.start_ts, ShiftRow.id)
            ).all()
            return self._with_members(s, rows)

    def shift(self, shift_id: int) -> Shift:
        with self.sessions() as s:
            row = s.get(ShiftRow, shift_id)
            if row is None:
                raise ShiftNotFoundError(f"值班表中没有班次 {shift_id}")
            return self._with_members(s, [row])[0]

    def gaps(self, start: float, end: float) -> list[tuple[float, float]]:
        """The stretches of [start, end) when nobody is on duty."""
        return gaps([_span(s) for s in self._spans(start, end)], start, end)

    def now(self, at: float | None = None) -> tuple[Shift | None, Shift | None]:
        """The shift on duty at `at` (None: a gap) and the next one after it, if any."""
        at = self.clock() if at is None else at
        with self.sessions() as s:
            current = s.scalars(
                select(ShiftRow).where(ShiftRow.start_ts <= at, ShiftRow.end_ts > at).order_by(ShiftRow.id)
            ).first()
            after = current.end_ts if current is not None else at
            nxt = s.scalars(
                select(ShiftRow).where(ShiftRow.start_ts >= after).order_by(ShiftRow.start_ts)
            ).first()
            found = self._with_members(s, [r for r in (current, nxt) if r is not None])
        by_id = {f.id: f for f in found}
        return (
            by_id.get(current.id) if current is not None else None,
            by_id.get(nxt.id) if nxt is not None else None,
        )

    def on_duty(self, roles: Iterable[str], at: float | None = None) -> list[OnDuty]:
        """The people on duty at `at` (default now) in any of `roles`, in shift order."""
        wanted = set(roles)
        current, _ = self.now(at)
        if current is None:
            return []
        return [m for m in current.members if m.role in wanted]

    # --- changing -------------------------------------------------------------------------------

    def create(self, draft: ShiftDraft, actor: str) -> tuple[Shift, list[str]]:
        return self._save(None, draft, actor)

    def update(self, shift_id: int, draft: ShiftDraft, actor: str) -> tuple[Shift, list[str]]:
        return self._save(shift_id, draft, actor)

    def delete(self, shift_id: int) -> None:
        with self.sessions.begin() as s:
            _one_writer_at_a_time(s)
            if s.get(ShiftRow, shift_id) is None:
                raise ShiftNotFoundError(f"值班表中没有班次 {shift_id}")
            s.execute(delete(ShiftMemberRow).where(ShiftMemberRow.shift_id == shift_id))
            s.execute(delete(ShiftRow).where(ShiftRow.id == shift_id))

    def check_all(self, drafts: list[ShiftDraft]) -> list[Verdict]:
        """Each draft checked against the roster and the drafts before it (an import)."""
        if not drafts:
            return []
        with self.sessions() as s:
            names = _names(s)
            start = min(d.start_ts for d in drafts) - NEIGHBOURS_S
            end = max(d.end_ts for d in drafts) + NEIGHBOURS_S
            stored = [_span(r) for r in self._spans(start, end, s)]
        verdicts = []
        earlier: list[Span] = []
        for i, d in enumerate(drafts):
            verdicts.append(check(d, stored + earlier, names))
            earlier.append(Span(-(i + 1), d.name, d.start_ts, d.end_ts))
        return verdicts

    def create_many(self, drafts: list[ShiftDraft], actor: str) -> list[Shift]:
        """Every draft saved in one transaction, or none (the import): checked again inside it."""
        with self.sessions.begin() as s:
            _one_writer_at_a_time(s)
            names = _names(s)
            start = min((d.start_ts for d in drafts), default=0.0) - NEIGHBOURS_S
            end = max((d.end_ts for d in drafts), default=0.0) + NEIGHBOURS_S
            spans = [_span(r) for r in self._spans(start, end, s)]
            errors: list[str] = []
            rows = []
            for i, d in enumerate(drafts):
                verdict = check(d, spans, names)
                if verdict.errors:
                    errors.extend(f"「{d.name}」{when_text(d)}：{e}" for e in verdict.errors)
                    spans.append(Span(-(i + 1), d.name, d.start_ts, d.end_ts))
                    continue
                row = self._write(s, None, d, actor)
                rows.append(row)
                spans.append(Span(row.id, d.name, d.start_ts, d.end_ts))
            if errors:
                raise RosterRuleError(errors)
            s.flush()
            return self._with_members(s, rows)

    def _save(self, shift_id: int | None, draft: ShiftDraft, actor: str) -> tuple[Shift, list[str]]:
        with self.sessions.begin() as s:
            _one_writer_at_a_time(s)  # the overlap check and the write together
            if shift_id is not None and s.get(ShiftRow, shift_id) is None:
                raise ShiftNotFoundError(f"值班表中没有班次 {shift_id}")
            others = [
                _span(r)
                for r in self._spans(draft.start_ts - NEIGHBOURS_S, draft.end_ts + NEIGHBOURS_S, s)
                if r.id != shift_id
            ]
            verdict = check(draft, others, _names(s))
            if verdict.errors:
                raise RosterRuleError(verdict.errors)
            row = self._write(s, shift_id, draft, actor)
            s.flush()
            return self._with_members(s, [row])[0], verdict.warnings

    def _write(self, s: Session, shift_id: int | None, draft: ShiftDraft, actor: str) -> ShiftRow:
        row = s.get(ShiftRow, shift_id) if shift_id is not None else None
        if row is None:
            row = ShiftRow()
            s.add(row)
        row.name, row.start_ts, row.end_ts = draft.name.strip(), draft.start_ts, draft.end_ts
        row.note, row.updated_ts, row.updated_by = draft.note, self.clock(), actor
        s.flush()
        s.execute(delete(ShiftMemberRow).where(ShiftMemberRow.shift_id == row.id))
        s.add_all(ShiftMemberRow(shift_id=row.id, user=m.user, role=m.role) for m in _unique(draft.members))
        s.flush()
        return row

    def people(self) -> dict[str, str]:
        """Everyone who may be put on duty: user name -> display name (or the user name)."""
        with self.sessions() as s:
            return _names(s)

    def import_sheet(self, data: bytes, actor: str) -> list[Shift]:
        """Every shift of an uploaded sheet (roster/xlsx.py), all saved or none: each row read, each
        shift checked against the roster and the sheet's other shifts first. SheetError lists every
        problem with its rows."""
        sheet = read_sheet(data, self.people())
        verdicts = self.check_all([s.draft for s in sheet])
        problems = [
            (s.rows, "", f"{s.draft.name}（{when_text(s.draft)}）：{e}")
            for s, v in zip(sheet, verdicts, strict=True)
            for e in v.errors
        ]
        if problems:
            raise SheetError(problems)
        try:
            return self.create_many([s.draft for s in sheet], actor)
        except RosterRuleError as exc:  # the roster changed meanwhile
            raise SheetError([([], "", e) for e in exc.errors]) from None

    # --- contacts -------------------------------------------------------------------------------

    def contacts(self) -> list[Contact]:
        """Every person who may sign in, with their phone and push addresses (empty if none)."""
        with self.sessions() as s:
            stored = {c.user: c for c in s.scalars(select(ContactRow))}
            users = s.scalars(select(UserRow).where(UserRow.disabled.is_(False)).order_by(UserRow.name))
            return [_contact(u, stored.get(u.name)) for u in users]

    def contact(self, user: str) -> Contact:
        with self.sessions() as s:
            u = s.get(UserRow, user)
            if u is None:
                raise PersonNotFoundError(f"没有这个人员：{user}")
            return _contact(u, s.get(ContactRow, user))

    def set_contact(self, user: str, phone: str, addresses: list[str], actor: str) -> Contact:
        bad = [a for a in addresses if unusable(a)]
        if bad:
            raise RosterRuleError([f"推送地址无法识别：第 {addresses.index(a) + 1} 个" for a in bad])
        if len(addresses) > MAX_ADDRESSES:
            raise RosterRuleError([f"推送地址最多 {MAX_ADDRESSES} 个"])
        with self.sessions.begin() as s:
            u = s.get(UserRow, user)
            if u is None:
                raise PersonNotFoundError(f"没有这个人员：{user}")
            row = s.get(ContactRow, user)
            if row is None:
                row = ContactRow(user=user)
                s.add(row)
            row.phone, row.addresses = phone.strip(), list(dict.fromkeys(addresses))
            row.updated_ts, row.updated_by = self.clock(), actor
            s.flush()
            return _contact(u, row)

    # --- helpers --------------------------------------------------------------------------------

    def _spans(self, start: float, end: float, s: Session | None = None) -> list[ShiftRow]:
        q = select(ShiftRow).where(ShiftRow.start_ts < end, ShiftRow.end_ts > start)
        if s is not None:
            return list(s.scalars(q).all())
        with self.sessions() as own:
            return list(own.scalars(q).all())

    def _with_members(self, s: Session, rows: Iterable[ShiftRow]) -> list[Shift]:
        rows = list(rows)
        ids = [r.id for r in rows]
        members: dict[int, list[OnDuty]] = {i: [] for i in ids}
        if ids:
            found = s.execute(
                select(ShiftMemberRow, UserRow, ContactRow)
                .join(UserRow, UserRow.name == ShiftMemberRow.user)
                .outerjoin(ContactRow, ContactRow.user == ShiftMemberRow.user)
                .where(ShiftMemberRow.shift_id.in_(ids))
                .order_by(ShiftMemberRow.id)
            ).all()
            for m, u, c in found:
                members[m.shift_id].append(
                    OnDuty(
                        m.user,
                        u.display_name,
                        m.role,
                        c.phone if c is not None else "",
                        tuple(c.addresses) if c is not None else (),
                    )
                )
        return [
            Shift(r.id, r.name, r.start_ts, r.end_ts, r.note, r.updated_ts, r.updated_by, members[r.id])
            for r in rows
        ]


def when_text(d: ShiftDraft) -> str:
    return f"{when(d.start_ts)} 至 {when(d.end_ts)}"


def _unique(members: Iterable[Member]) -> list[Member]:
    seen: set[str] = set()
    out = []
    for m in members:
        if m.user not in seen:
            seen.add(m.user)
            out.append(m)
    return out


def _names(s: Session) -> dict[str, str]:
    """Every user who may be put on duty (not disabled): user name -> display name (or the name)."""
    return {
        name: display or name
        for name, display in s.execute(
            select(UserRow.name, UserRow.display_name).where(UserRow.disabled.is_(False))
        ).all()
    }


def _span(r: ShiftRow) -> Span:
    return Span(r.id, r.name, r.start_ts, r.end_ts)


def _contact(u: UserRow, c: ContactRow | None) -> Contact:
    return Contact(
        u.name, u.display_name, c.phone if c is not None else "", list(c.addresses) if c is not None else []
    )
