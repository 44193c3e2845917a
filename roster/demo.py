"""The demo hospital's roster (`firewatch demo`): day and night shifts from yesterday evening to the
day after tomorrow's morning, two people in the control room, a micro fire station member and a
leader on call each, so `GET /api/v1/roster/now` and the roster view answer from the first minute.
The people are demo accounts (the published demo password, refused outside demo mode) with
made-up phone numbers and no push address: the demo pushes nowhere."""

from __future__ import annotations

from datetime import datetime, timedelta

from accounts.passwords import DEMO_PASSWORD
from accounts.service import AccountService
from core.domain import Role
from roster.rules import Member, ShiftDraft
from roster.service import RosterService

# user name -> (display name, account role, phone)
DEMO_DUTY_PEOPLE: dict[str, tuple[str, Role, str]] = {
    "duty-liu": ("消控室 刘一", Role.OPERATOR, "138 0000 0101"),
    "duty-chen": ("消控室 陈二", Role.OPERATOR, "138 0000 0102"),
    "duty-zhang": ("消控室 张伟", Role.OPERATOR, "138 0000 0103"),
    "duty-wang": ("消控室 王芳", Role.OPERATOR, "138 0000 0104"),
    "duty-sun": ("微型消防站 孙队长", Role.OPERATOR, "138 0000 0105"),
    "duty-li": ("微型消防站 李队员", Role.OPERATOR, "138 0000 0106"),
    "duty-zhao": ("值班领导 赵主任", Role.LEADER, "138 0000 0107"),
    "duty-qian": ("值班领导 钱主任", Role.LEADER, "138 0000 0108"),
}
DAY_CREW = (
    Member("duty-liu", "control_room"),
    Member("duty-chen", "control_room"),
    Member("duty-sun", "micro_fire_station"),
    Member("duty-zhao", "leader_on_call"),
)
NIGHT_CREW = (
    Member("duty-zhang", "control_room"),
    Member("duty-wang", "control_room"),
    Member("duty-li", "micro_fire_station"),
    Member("duty-qian", "leader_on_call"),
)


def demo_shifts(now: float) -> list[ShiftDraft]:
    """白班 08:00–20:00 and 夜班 20:00–08:00 (local time), from yesterday's night shift on."""
    today = datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0)
    shifts = []
    for offset in (-1, 0, 1):
        day = today + timedelta(days=offset)
        if offset >= 0:
            start = day + timedelta(hours=8)
            shifts.append(
                ShiftDraft("白班", start.timestamp(), (start + timedelta(hours=12)).timestamp(), DAY_CREW)
            )
        start = day + timedelta(hours=20)
        shifts.append(
            ShiftDraft("夜班", start.timestamp(), (start + timedelta(hours=12)).timestamp(), NIGHT_CREW)
        )
    return shifts


def ensure_demo_roster(roster: RosterService, accounts: AccountService) -> int:
    """The demo people and the shifts not yet on the roster (a shift overlapping one there is left
    out: a demo run again keeps what the roster holds); returns how many shifts were added."""
    existing = set(roster.people())
    for user, (display, role, phone) in DEMO_DUTY_PEOPLE.items():
        if user not in existing:
            accounts.create_user(user, DEMO_PASSWORD, [role], display_name=display, demo=True)
            roster.set_contact(user, phone, [], "demo")
    drafts = demo_shifts(roster.clock())
    held = roster.shifts(min(d.start_ts for d in drafts), max(d.end_ts for d in drafts))
    free = [d for d in drafts if not any(h.start_ts < d.end_ts and d.start_ts < h.end_ts for h in held)]
    return len(roster.create_many(free, "demo")) if free else 0
