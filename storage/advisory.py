"""PostgreSQL advisory locks that let several firewatch workers share one database (docs/scale.md
"Several workers, one database"): named locks, each in a space of its own, for what row locks
cannot guard (a row that does not exist yet, a whole periodic job).

A lock is named by text and identified on the server by two 32-bit keys, (space, hash of the name):
the two-key form, whose locks never meet the one-bigint form's (PostgreSQL manual, "Advisory Lock
Functions"). A hash collision only makes two names wait for each other, never lets two holders in.

On SQLite (one node) every function here is a no-op that grants the lock: a write transaction there
takes the whole database's write lock at BEGIN (storage/db.py IMMEDIATE), which already serialises
every writer.
"""

from __future__ import annotations

import hashlib
from enum import IntEnum

from sqlalchemy import Connection, text


class Space(IntEnum):
    """What a lock guards; the first key of every lock (never renumber: workers of two releases may
    run side by side during an upgrade)."""

    INCIDENT_GROUP = 1  # looking for, then opening, the open incident of a kind and group key
    ALARM_CLOCK = 2  # AlarmService.tick: escalations, reminders, expiries
    TICKET_CLOCK = 3  # TicketService.tick: deadlines, schedules, patrols
    PUSH_ROUTE = 4  # one dispatcher at a time reads, sends and records a push route's rows


_XACT_LOCK = text("SELECT pg_advisory_xact_lock(:space, :key)")
_TRY_XACT_LOCK = text("SELECT pg_try_advisory_xact_lock(:space, :key)")
_TRY_LOCK = text("SELECT pg_try_advisory_lock(:space, :key)")
_UNLOCK = text("SELECT pg_advisory_unlock(:space, :key)")


def key_of(name: str) -> int:
    """The name's stable 32-bit signed key: the same in every worker process (Python's own `hash` of
    a string differs per process)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=4).digest(), "big", signed=True)


def _postgresql(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def hold(conn: Connection, space: Space, name: str) -> None:
    """Wait for the lock and hold it until the transaction ends (commit or rollback alike)."""
    if _postgresql(conn):
        conn.execute(_XACT_LOCK, {"space": int(space), "key": key_of(name)})


def try_hold(conn: Connection, space: Space, name: str) -> bool:
    """Take the lock for the transaction if nobody holds it; False (at once) if somebody does."""
    if not _postgresql(conn):
        return True
    return bool(conn.execute(_TRY_XACT_LOCK, {"space": int(space), "key": key_of(name)}).scalar_one())


def try_lock_session(conn: Connection, space: Space, name: str) -> bool:
    """Take the lock for the connection's session, across transactions, if nobody holds it. Released
    by `unlock_session`, or by the server when the connection ends (a worker killed lets go)."""
    if not _postgresql(conn):
        return True
    return bool(conn.execute(_TRY_LOCK, {"space": int(space), "key": key_of(name)}).scalar_one())


def unlock_session(conn: Connection, space: Space, name: str) -> None:
    if _postgresql(conn):
        conn.execute(_UNLOCK, {"space": int(space), "key": key_of(name)})
