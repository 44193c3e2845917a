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

from sqlalchemy import Engine, text
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
    address. A call is one statement (its cost: bench/shared_limits.py); an address this worker
    was told is refused is refused from memory until its wait ends, so a flood from one address
    costs the database one statement per worker and wait. Keys whose last call is older than the
    window are deleted by each worker once a minute.

    Fails open: while PostgreSQL fails, every submission is admitted (logged once per outage); a
    staff report that cannot be stored is refused by the store anyway."""

    def __init__(self, sessions: sessionmaker[Session], scope: str, limit: int, window_s: float) -> None:
        engine: Engine = sessions.kw["bind"]
        self.engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.scope = scope
        self.limit = limit
        self.window_s = window_s
        self.note = OutageNote(logger, f"the shared rate limit {scope!r}", "every request is admitted")
        self._next_sweep = 0.0
        self._refused_until: dict[str, float] = {}  # address -> until when it is refused
        self._lock = threading.Lock()

    async def check(self, address: str, now: float) -> float:
        return await asyncio.to_thread(self.wait_s, address, now)  # a round trip: off the event loop

    def wait_s(self, address: str, now: float) -> float:
        now = float(now)  # float8 in the statement, whatever clock gave it
        # A refusal this worker was told of stands until its oldest admission leaves the window:
        # nothing can be admitted before that, so the answer from memory is the cluster's.
        until = self._refused_until.get(address)
        if until is not None and now < until:
            return until - now
        since = now - self.window_s
        try:
            # Each statement its own transaction: no BEGIN and COMMIT round trips (a third less time
            # per call, bench/shared_limits.py).
            with self.engine.connect() as conn:
                admitted, oldest = conn.execute(
                    _ADMIT,
                    {"scope": self.scope, "key": address, "now": now, "since": since, "limit": self.limit},
                ).one()
                if now >= self._next_sweep:
                    self._next_sweep = now + SWEEP_EVERY_S
                    conn.execute(_SWEEP, {"scope": self.scope, "since": since})
        except SQLAlchemyError as exc:
            self.note.failed(exc)
            return 0.0
        self.note.answered()
        if admitted:
            return 0.0
        until = float(oldest) + self.window_s
        with self._lock:
            if len(self._refused_until) >= MAX_ADDRESSES:
                self._refused_until = {k: v for k, v in self._refused_until.items() if v > now}
            self._refused_until[address] = until
        return until - now
