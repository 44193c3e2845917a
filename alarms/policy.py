"""Alarm policy in one place (DESIGN §4): who is told, when notifications are held, when an alarm
escalates, reminds, closes, or stops flapping.

Pure decisions over small values and an injected `now`: no database, no clock of its own, so every
rule is tested without sleeping. The alarm service applies the decisions to its rows.

Safety first: nothing here ever holds a fire alarm. Shelving refuses it, maintenance marks it and
still pushes it, and a flapping fire detector keeps notifying (it also gets a hazard ticket).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from core.domain import AlarmCategory
from core.settings import AlarmPolicySettings, EscalationChain


class Hold(StrEnum):
    """Why an alarm's notifications are held (its transitions are still logged and streamed)."""

    SHELVED = "shelved"
    FLAPPING = "flapping"
    MAINTENANCE = "maintenance"


class PolicyError(ValueError):
    """A requested human action is against policy; the message says why and what to do instead."""


@dataclass(frozen=True, slots=True)
class Escalation:
    """Where an unacknowledged alarm stands in its chain."""

    chain: str
    step: int
    escalate_at: float | None  # the next step is due (None: this is the last step)
    remind_at: float  # the roles told so far are reminded


@dataclass(frozen=True, slots=True)
class EscalationDue:
    """What the escalation clock asks for now: tell a new role, or remind the ones told."""

    escalated: bool  # False: a reminder
    targets: tuple[str, ...]
    state: Escalation


@dataclass(frozen=True, slots=True)
class MaintenanceScope:
    id: int
    site: str
    place: str | None
    device_ids: tuple[str, ...]
    start_ts: float
    end_ts: float
    ended: bool
    ticket_closed: bool


class Policy:
    def __init__(self, settings: AlarmPolicySettings) -> None:
        self.settings = settings
        self._chains = {c.name: c for c in settings.escalation}

    # --- holding notifications -------------------------------------------------------------------
    def hold(
        self,
        category: AlarmCategory,
        *,
        shelved_until: float | None,
        flapping: bool,
        maintenance: bool,
        now: float,
    ) -> Hold | None:
        """Why this alarm's notifications are held now, or None when they go out.

        A fire alarm is never held: not by shelving, flapping or maintenance (DESIGN §4).
        """
        if category is AlarmCategory.FIRE:
            return None
        if shelved_until is not None and shelved_until > now:
            return Hold.SHELVED
        if flapping:
            return Hold.FLAPPING
        if maintenance:
            return Hold.MAINTENANCE
        return None

    def shelve_until(self, category: AlarmCategory, until: float, now: float) -> float:
        """Validate a shelving request; returns when it expires."""
        if category is AlarmCategory.FIRE:
            raise PolicyError("a fire alarm cannot be shelved: acknowledge it (with a note) instead")
        if until <= now:
            raise PolicyError("shelving must end in the future")
        longest = self.settings.shelve_max_s
        if until - now > longest:
            raise PolicyError(f"an alarm may be shelved for at most {longest / 3600:g} h")
        return until

    # --- escalation ------------------------------------------------------------------------------
    def chain_for(self, category: AlarmCategory, site: str) -> EscalationChain | None:
        for chain in self.settings.escalation:
            if (not chain.categories or category in chain.categories) and (
                not chain.sites or site in chain.sites
            ):
                return chain
        return None

    def chain(self, name: str | None) -> EscalationChain | None:
        return self._chains.get(name) if name is not None else None

    def start(self, chain: EscalationChain, now: float) -> Escalation:
        """The first step: its role is told now."""
        return Escalation(
            chain.name,
            0,
            now + chain.steps[0].wait_s if len(chain.steps) > 1 else None,
            now + chain.remind_every_s,
        )

    def reached(self, chain: EscalationChain, step: int) -> tuple[str, ...]:
        """Every role told so far, in chain order, each once."""
        roles: list[str] = []
        for s in chain.steps[: step + 1]:
            if s.role not in roles:
                roles.append(s.role)
        return tuple(roles)

    def due(self, chain: EscalationChain, state: Escalation, now: float) -> EscalationDue | None:
        """The escalation or reminder due at `now`, if any. Escalating also restarts the reminder
        clock, so a role is not told twice in one tick."""
        if state.escalate_at is not None and state.escalate_at <= now:
            step = state.step + 1
            last = step >= len(chain.steps) - 1
            new = Escalation(
                chain.name,
                step,
                None if last else now + chain.steps[step].wait_s,
                now + chain.remind_every_s,
            )
            return EscalationDue(True, (chain.steps[step].role,), new)
        if state.remind_at <= now:
            new = Escalation(chain.name, state.step, state.escalate_at, now + chain.remind_every_s)
            return EscalationDue(False, self.reached(chain, state.step), new)
        return None

    # --- flapping, closing -----------------------------------------------------------------------
    def is_flapping(self, raises_in_window: int) -> bool:
        """Too many raise/clear cycles in the window (counting the raise just made)."""
        return raises_in_window >= self.settings.flap_cycles

    def flap_since(self, now: float) -> float:
        return now - self.settings.flap_window_s

    def is_steady(self, last_raised_ts: float, now: float) -> bool:
        """A flapping alarm is steady again once a whole window passed without a new raise."""
        return now - last_raised_ts >= self.settings.flap_window_s

    def closes(self, cleared_ts: float | None, acked_ts: float | None, now: float) -> bool:
        """A cleared and acknowledged alarm closes after a quiet `close_after_s`."""
        if cleared_ts is None:
            return False
        quiet_since = max(cleared_ts, acked_ts or cleared_ts)
        return now - quiet_since >= self.settings.close_after_s

    # --- maintenance -----------------------------------------------------------------------------
    def maintenance_window(self, start: float, end: float, now: float) -> tuple[float, float]:
        if end <= start:
            raise PolicyError("a maintenance window must end after it starts")
        if end <= now:
            raise PolicyError("a maintenance window must end in the future")
        longest = self.settings.maintenance_max_s
        if end - start > longest:
            raise PolicyError(f"a maintenance window may last at most {longest / 86400:g} days")
        return start, end


def covers(scope: MaintenanceScope, device_id: str, site: str, place: str, now: float) -> bool:
    """Whether a maintenance window covers this device at `now`.

    >>> w = MaintenanceScope(1, "s1", "s1/b1/f2", (), 0.0, 100.0, False, False)
    >>> covers(w, "smk-9", "s1", "s1/b1/f2/z1/r201", 50.0), covers(w, "smk-9", "s1", "s1/b1/f20", 50.0)
    (True, False)
    >>> covers(w, "smk-9", "s1", "s1/b1/f2/z1", 100.0)  # expired
    False
    """
    if scope.ended or scope.ticket_closed or not (scope.start_ts <= now < scope.end_ts):
        return False
    if scope.site != site:
        return False
    if device_id in scope.device_ids:
        return True
    return scope.place is not None and (place == scope.place or place.startswith(scope.place + "/"))
