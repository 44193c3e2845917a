"""A per-address limit on anonymous submissions (the staff hazard report): at most `limit` in any
`window_s`, then 429 with the seconds to wait.

`RateLimit` keeps the admissions in memory, like the sign-in throttle (accounts/throttle.py): a
restart forgets them, and the remembered addresses are bounded. A cluster's workers share them in
PostgreSQL instead (`SharedRateLimit`), with the same sliding window, so the sixth report from an
address is refused whichever workers took the five before."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from storage.outage_note import OutageNote

logger = logging.getLogger(__name__)

MAX_ADDRESSES = 10_000
SWEEP_EVERY_S = 60.0


class Limit(Protocol):
    async def check(self, address: str, now: float) -> float:
        """0 and the submission is counted; otherwise the seconds until one more is allowed."""
        ...


class RateLimit:
    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    async def check(self, address: str, now: float) -> float:
        return self.wait_s(address, now)  # in memory: no need to leave the event loop

    def wait_s(self, address: str, now: float) -> float:
        """0 and the submission is counted; otherwise the seconds until one more is allowed."""
        with self._lock:
            times = self._seen.setdefault(address, deque())
            while times and times[0] <= now - self.window_s:
                times.popleft()
            if len(times) >= self.limit:
                return times[0] + self.window_s - now
            times.append(now)
            if len(self._seen) > MAX_ADDRESSES:  # forget the addresses with nothing recent
                for key in [k for k, v in self._seen.items() if not v or v[-1] <= now - self.window_s]:
                    del self._seen[key]
            return 0.0


# One statement per call: the row is made or locked (ON CONFLICT DO UPDATE sees the latest committed
# version, whichever worker wrote it), the admissions older than the window are dropped, this one is
# added when fewer than `limit` remain, and what was decided comes back. `:now` is cast once, so the
# statement's parameters have one type each.
_ADMIT = text(
    "INSERT INTO rate_limits AS r (scope, key, times, admitted, last_at) "
    "VALUES (:scope, :key, ARRAY[CAST(:now AS float8)], :limit >= 1, :now) "
    "ON CONFLICT (scope, key) DO UPDATE SET "
    " admitted = (SELECT count(*) FROM unnest(r.times) AS t WHERE t > :since) < :limit,"
    " times = CASE WHEN (SELECT count(*) FROM unnest(r.times) AS t WHERE t > :since) < :limit"
    "  THEN ARRAY(SELECT t FROM unnest(r.times || CAST(:now AS float8)) AS t WHERE t > :since ORDER BY t)"
    "  ELSE ARRAY(SELECT t FROM unnest(r.times) AS t WHERE t > :since ORDER BY t) END,"
    " last_at = GREATEST(r.last_at, :now) "
    "RETURNING r.admitted, r.times[1]"
)
_SWEEP = text(
    "DELETE FROM rate_limits WHERE (scope, key) IN ("
    " SELECT scope, key FROM rate_limits WHERE scope = :scope AND last_at <= :since FOR UPDATE SKIP LOCKED)"
)


class SharedRateLimit:
    """`RateLimit` for a cluster: the admissions of `scope` in the shared PostgreSQL, one row per
    address. Every call is one statement (its cost: bench/shared_limits.py). Keys whose last call
    is older than the window are deleted by each worker once a minute.

    Fails open: while PostgreSQL fails, every submission is admitted (logged once per outage); a
    staff report that cannot be stored is refused by the store anyway."""

    def __init__(self, sessions: sessionmaker[Session], scope: str, limit: int, window_s: float) -> None:
        self.sessions = sessions
        self.scope = scope
        self.limit = limit
        self.window_s = window_s
        self.note = OutageNote(logger, f"the shared rate limit {scope!r}", "every request is admitted")
        self._next_sweep = 0.0

    async def check(self, address: str, now: float) -> float:
        return await asyncio.to_thread(self.wait_s, address, now)  # a round trip: off the event loop

    def wait_s(self, address: str, now: float) -> float:
        now = float(now)  # float8 in the statement, whatever clock gave it
        since = now - self.window_s
        try:
            with self.sessions.begin() as s:
                admitted, oldest = s.execute(
                    _ADMIT,
                    {"scope": self.scope, "key": address, "now": now, "since": since, "limit": self.limit},
                ).one()
                if now >= self._next_sweep:
                    self._next_sweep = now + SWEEP_EVERY_S
                    s.execute(_SWEEP, {"scope": self.scope, "since": since})
        except SQLAlchemyError as exc:
            self.note.failed(exc)
            return 0.0
        self.note.answered()
        return 0.0 if admitted else float(oldest) + self.window_s - now
