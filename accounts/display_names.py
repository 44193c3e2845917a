"""People as documents name them: by display name (保卫科 周九), as the console does (console.js `person`).

A report, a spreadsheet or a push reads the display names of the people it mentions once, with
`read_display_names`, and shows each one through `person_zh`: the display name where the account
has one, else the user name; the service's own steps (actor `firewatch`) as 系统. Other actors, such
as a GB/T 26875 gateway (`gb26875:<device>`) or an API key (`key:<name>`), have no account and show
as written, as in the console.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import UserRow

SYSTEM_ACTOR = "firewatch"  # the service's own steps (alarms/service.py SYSTEM_ACTOR)
SYSTEM_ZH = "系统"


def read_display_names(s: Session, names: Iterable[str | None]) -> dict[str, str]:
    """User name -> display name for those of `names` whose account has one, in one query."""
    wanted = sorted({n for n in names if n})
    if not wanted:
        return {}
    rows = s.execute(select(UserRow.name, UserRow.display_name).where(UserRow.name.in_(wanted)))
    return {name: display for name, display in rows if display}


def person_zh(name: str | None, display: Mapping[str, str]) -> str:
    """`name` as a person reads it: 系统 for the service, a display name, else the name itself."""
    if not name:
        return ""
    if name == SYSTEM_ACTOR:
        return SYSTEM_ZH
    return display.get(name) or name
