"""The sign-in throttle of a cluster: its workers count failures together in PostgreSQL, so after
five wrong passwords for a pair the next attempt waits, whichever workers took them
(accounts/throttle.py has the rules; they are the same here, through `SignInThrottle.refusal` and
`counted`).

An attempt's check and count are one short transaction: one statement makes the pair's and the
address's rows if missing, locks them and reads them (INSERT ... ON CONFLICT DO UPDATE ...
RETURNING, the pair first: every transaction locks in that order, so two never wait on each other);
the same rules decide; a second statement writes the counted records back. A success deletes the
pair's row and takes the attempt back from the address's. A wait the worker already knows of (it
read it from the cluster) is refused from memory, with no round trip. Rows quiet for twice the
longest wait are deleted, and each kind is trimmed to its newest `MAX_KEYS`, by each worker once a
minute (rows locked by an attempt are skipped, so the sweep never waits for one).

PostgreSQL failing must not lock anyone out: an attempt the store cannot count is counted in this
worker's memory instead, as on one node (logged once per outage). That memory holds the cluster's
counts as this worker last read them, so a guesser it already saw stays refused, but during an
outage each worker counts on its own: N workers allow up to N times the attempts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from accounts.throttle import MAX_KEYS, Record, Refusal, SignInThrottle, Throttle
from storage.outage_note import OutageNote

logger = logging.getLogger(__name__)

SWEEP_EVERY_S = 60.0
PAIR, ADDRESS = "pair", "address"

_LOCK = text(
    "INSERT INTO sign_in_failures AS f (kind, name, address, failures, last, blocked_until) "
    "VALUES ('pair', :name, :address, 0, :now, 0), ('address', '', :address, 0, :now, 0) "
    "ON CONFLICT (kind, name, address) DO UPDATE SET failures = f.failures "
    "RETURNING f.kind, f.failures, f.last, f.blocked_until"
)
_WRITE = text(
    "UPDATE sign_in_failures SET failures = :failures, last = :last, blocked_until = :blocked_until "
    "WHERE kind = :kind AND name = :name AND address = :address"
)
_FORGIVE_PAIR = text(
    "DELETE FROM sign_in_failures WHERE kind = 'pair' AND name = :name AND address = :address"
)
_UNCOUNT_ADDRESS = text(
    "UPDATE sign_in_failures SET failures = failures - 1, "
    "blocked_until = CASE WHEN failures - 1 < :limit THEN 0 ELSE blocked_until END "
    "WHERE kind = 'address' AND name = '' AND address = :address AND failures > 0"
)
_SWEEP_STALE = text(
    "DELETE FROM sign_in_failures WHERE (kind, name, address) IN ("
    " SELECT kind, name, address FROM sign_in_failures"
    " WHERE last < :quiet_since AND blocked_until <= :now FOR UPDATE SKIP LOCKED)"
)
_TRIM = text(
    "DELETE FROM sign_in_failures WHERE (kind, name, address) IN ("
    " SELECT kind, name, address FROM sign_in_failures WHERE kind = :kind"
    " ORDER BY last DESC OFFSET :keep FOR UPDATE SKIP LOCKED)"
)


class SharedSignInThrottle:
    """`SignInThrottle`'s `begin` and `succeeded`, counted in the cluster's PostgreSQL."""

    def __init__(self, sessions: sessionmaker[Session], local: SignInThrottle) -> None:
        self.sessions = sessions
        self.local = local  # the rules, and the count while PostgreSQL fails
        self.note = OutageNote(
            logger, "the shared sign-in throttle", "each worker counts sign-ins on its own"
        )
        self._next_sweep = 0.0

    def begin(self, name: str, address: str, now: float) -> Refusal | None:
        # A wait this worker already knows of is answered from memory: a flood of refused attempts
        # costs the database nothing. Nothing else can end a wait early but a success of an attempt
        # begun before it, so this refuses exactly as the cluster would, but in that race.
        known = self.local.waiting(name, address, now)
        if known is not None:
            return known
        try:
            decided = self._begin(name, address, now)
        except SQLAlchemyError as exc:
            self.note.failed(exc)
            return self.local.begin(name, address, now)
        self.note.answered()
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_EVERY_S
            self._guarded(lambda: self.sweep(now))
        return decided

    def succeeded(self, name: str, address: str) -> None:
        self.local.succeeded(name, address)
        self._guarded(lambda: self._succeeded(name, address))

    def _begin(self, name: str, address: str, now: float) -> Refusal | None:
        keys = {"name": name, "address": address}
        pairs, addresses = self.local.pairs, self.local.addresses
        with self.sessions.begin() as s:
            rows = {
                kind: Record(failures, last, blocked)
                for kind, failures, last, blocked in s.execute(_LOCK, {**keys, "now": now})
            }
            pair = _fresh(pairs, rows[PAIR], now)
            by_address = _fresh(addresses, rows[ADDRESS], now)
            refusal = self.local.refusal(name, address, pair, by_address, now)
            if refusal is not None:
                self.local.remember(name, address, pair, by_address)
                return refusal
            pair, by_address = self.local.counted(pair, by_address, now)
            s.execute(
                _WRITE,
                [
                    {**_values(pair), "kind": PAIR, **keys},
                    {**_values(by_address), "kind": ADDRESS, "name": "", "address": address},
                ],
            )
        self.local.remember(name, address, pair, by_address)
        return None

    def _succeeded(self, name: str, address: str) -> None:
        with self.sessions.begin() as s:
            s.execute(_FORGIVE_PAIR, {"name": name, "address": address})
            s.execute(_UNCOUNT_ADDRESS, {"address": address, "limit": self.local.addresses.limit})

    def sweep(self, now: float) -> None:
        """Delete the rows of keys quiet long enough to start afresh, and trim each kind to its
        newest MAX_KEYS (as one node's memory keeps at most that many)."""
        quiet_since = now - 2 * self.local.pairs.max_wait_s
        with self.sessions.begin() as s:
            s.execute(_SWEEP_STALE, {"quiet_since": quiet_since, "now": now})
            for kind in (PAIR, ADDRESS):
                s.execute(_TRIM, {"kind": kind, "keep": MAX_KEYS})

    def _guarded(self, step: Callable[[], None]) -> None:
        try:
            step()
        except SQLAlchemyError as exc:
            self.note.failed(exc)
        else:
            self.note.answered()


def _fresh(throttle: Throttle, record: Record, now: float) -> Record | None:
    """None for a key that starts afresh: just made (no failure counted) or quiet long enough."""
    return (
        None
        if (record.failures == 0 and record.blocked_until == 0) or throttle.stale(record, now)
        else record
    )


def _values(record: Record) -> dict[str, Any]:
    return {"failures": record.failures, "last": record.last, "blocked_until": record.blocked_until}
