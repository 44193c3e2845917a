"""The demo's roster (roster/demo.py): somebody is on duty from the first minute, today and
tomorrow, by the roster's own rules; a demo started again adds nothing."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from roster.demo import ensure_demo_roster
from roster.service import RosterService
from storage.db import open_store
from tests.conftest import FakeClock, make_accounts


def test_the_demo_roster_covers_today_and_tomorrow_with_two_in_the_control_room_and_a_leader(
    tmp_path: Path,
) -> None:
    _, sessions = open_store(f"sqlite:///{tmp_path / 'state.sqlite'}")
    clock = FakeClock(datetime(2026, 12, 5, 3, 30).timestamp())
    roster, accounts = RosterService(sessions, clock), make_accounts(sessions)
    assert ensure_demo_roster(roster, accounts) == 5
    start = datetime(2026, 12, 4, 20, 0).timestamp()
    end = datetime(2026, 12, 7, 8, 0).timestamp()
    assert roster.gaps(start, end) == []
    assert [s.name for s in roster.shifts(start, end)] == ["夜班", "白班", "夜班", "白班", "夜班"]
    for hour in (3.5, 12, 22, 24 + 9, 24 + 23):
        clock.now = datetime(2026, 12, 5).timestamp() + hour * 3600
        current, _ = roster.now()
        assert current is not None
        roles = sorted(m.role for m in current.members)
        assert roles == ["control_room", "control_room", "leader_on_call", "micro_fire_station"]
        assert all(m.phone for m in current.members)
    clock.now = datetime(2026, 12, 5, 3, 30).timestamp()
    assert ensure_demo_roster(roster, accounts) == 0  # started again: nothing added, nothing refused
