"""Two people saving overlapping shifts at the same moment: one is saved, the other refused, on
SQLite and on PostgreSQL (whose default isolation would let both pass the overlap check)."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import pytest

from core.domain import Role
from roster.rules import Member, ShiftDraft, Verdict, check
from roster.service import RosterRuleError, RosterService
from storage.db import open_store
from tests.conftest import make_accounts

T0 = 1_800_000_000.0
HOUR = 3600.0


def draft(name: str, start: float, people: tuple[str, str, str]) -> ShiftDraft:
    a, b, leader = people
    return ShiftDraft(
        name,
        start,
        start + 8 * HOUR,
        (Member(a, "control_room"), Member(b, "control_room"), Member(leader, "leader_on_call")),
    )


def test_two_overlapping_shifts_saved_at_the_same_moment_are_not_both_saved(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, sessions = open_store(store_url)
    accounts = make_accounts(sessions)
    for name in ("zhang", "li", "wang", "zhao", "chen", "sun"):
        accounts.create_user(name, "a-long-enough-password", [Role.OPERATOR])
    service = RosterService(sessions, clock=lambda: T0)

    # Each save waits at its check for the other's (for at most 2 s): without one writer at a time
    # both would read the roster before either wrote, and both overlapping shifts would be saved.
    both_checking = threading.Barrier(2, timeout=2.0)
    def check_together(*args: Any, **kwargs: Any) -> Verdict:
        # A broken barrier: the other save waits for this one to end, which is the point.
        with contextlib.suppress(threading.BrokenBarrierError):
            both_checking.wait()
        return check(*args, **kwargs)

    monkeypatch.setattr("roster.service.check", check_together)
    outcomes: dict[str, str] = {}

    def save(name: str, start: float, people: tuple[str, str, str]) -> None:
        try:
            service.create(draft(name, start, people), "chief")
            outcomes[name] = "saved"
        except RosterRuleError as exc:
            outcomes[name] = str(exc)

    day = threading.Thread(target=save, args=("白班", T0, ("zhang", "li", "chen")))
    late = threading.Thread(target=save, args=("加班", T0 + HOUR, ("wang", "zhao", "sun")))
    day.start()
    late.start()
    day.join(30)
    late.join(30)

    assert sorted(outcomes.values()).count("saved") == 1, outcomes
    refused = next(v for v in outcomes.values() if v != "saved")
    assert "时间重叠" in refused
    assert len(service.shifts(T0 - HOUR, T0 + 10 * HOUR)) == 1
