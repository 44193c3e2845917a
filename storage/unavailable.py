"""Which failures mean "a store is unavailable" (wait and retry, or keep the work elsewhere) rather
than "this input is bad" (isolate it). In storage, so the stores can tell too; firewatch.faults
re-exports it for the service."""

from __future__ import annotations

import sqlite3

from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError


def is_unavailable(exc: BaseException) -> bool:
    """True when `exc` says a store or server could not be reached or could not take the write now
    (connection refused or lost, timed out, disk full, database locked): the same work is retried
    as it is. False for an error the same input would raise again (bad data, a bug)."""
    if isinstance(exc, (OperationalError, InterfaceError, DisconnectionError, PoolTimeoutError)):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (OSError, TimeoutError, sqlite3.OperationalError, sqlite3.InterfaceError))
