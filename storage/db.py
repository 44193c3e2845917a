"""The state store's engine, migrations and session factory."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


class DatabaseError(RuntimeError):
    """The state store cannot be opened or migrated; the message says what to check."""


# Execution options for a write transaction that reads before it writes (read-modify-write). On
# SQLite it takes the write lock at BEGIN, so no other writer can commit between its read and its
# write; other writers wait (busy_timeout). PostgreSQL ignores it (row locks do that job there).
IMMEDIATE: dict[str, Any] = {"sqlite_begin": "IMMEDIATE"}


# How each database names a violation of a one-open-per-key index (models.py): PostgreSQL names the
# index, SQLite the columns.
_OPEN_KEY_VIOLATIONS = (
    "uq_alarms_open_key",
    "alarms.device_id, alarms.alarm_type",
    "uq_tickets_open_key",
    "tickets.device_id, tickets.hazard_type",
    "uq_tickets_open_subject",
    "tickets.subject, tickets.hazard_type",
)


def retryable(exc: Exception) -> bool:
    """Whether a failed write transaction should be run again from the start: it lost the race to
    open an alarm or ticket (a retry finds the winner's row and appends to it), or the database was
    busy, deadlocked or could not serialise it. Any writer may touch both alarms and tickets (an
    alarm opens a ticket in its own transaction), so every writer retries on every key."""
    if isinstance(exc, IntegrityError):
        return any(name in str(exc) for name in _OPEN_KEY_VIOLATIONS)
    if isinstance(exc, OperationalError):
        text = str(exc).lower()
        return "locked" in text or "busy" in text or "deadlock" in text or "serializ" in text
    return False


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # pysqlite's own transaction handling issues BEGIN only before the first write, so a transaction's
    # reads would run outside it and a concurrent writer's commit could be silently overwritten.
    # SQLAlchemy issues BEGIN itself instead (_sqlite_begin), before the first statement.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers (the API) never block the writer (the pipeline)
    cur.execute("PRAGMA synchronous=NORMAL")  # durable at each WAL checkpoint; safe against app crashes
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False},
            json_serializer=json_dumps,
            json_deserializer=orjson.loads,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        # libpq waits for the OS's TCP timeout (minutes) by default: a server that is gone must
        # fail fast, so the alarm path journals instead of waiting (docs/reliability.md).
        connect_args["connect_timeout"] = 5
    return create_engine(
        url,
        pool_pre_ping=True,
        connect_args=connect_args,
        json_serializer=json_dumps,
        json_deserializer=orjson.loads,
    )


def json_dumps(value: Any) -> str:
    """JSON columns (the alarm log's before/after snapshots, incident timelines) through orjson:
    the alarm path writes two snapshots per transition, and the standard library's encoder was a
    tenth of its CPU (bench.alarm_burst). Same JSON for what the store holds (str keys, numbers,
    strings, lists), with non-ASCII text as UTF-8 rather than escapes."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection_engine"] = engine
    return cfg


# Held while one process migrates a PostgreSQL store: workers of a cluster starting together on a
# new database would otherwise each create the same tables (docs/scale.md).
MIGRATION_LOCK = 0x66770001


SETUP_LOCK = 0x66770002


@contextlib.contextmanager
def one_at_a_time(engine: Engine, key: int) -> Iterator[None]:
    """On PostgreSQL, hold a session advisory lock for the block: several processes on one store
    (a cluster's workers, docs/scale.md) setting it up at once take turns. Nothing on SQLite (one
    process per store)."""
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as lock:
        lock.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
        try:
            yield
        finally:
            lock.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            lock.commit()


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (idempotent); on PostgreSQL one process at a time."""
    try:
        with one_at_a_time(engine, MIGRATION_LOCK):
            command.upgrade(alembic_config(engine), "head")
    except Exception as exc:
        raise DatabaseError(
            f"cannot migrate the state store at {engine.url.render_as_string(hide_password=True)}: {exc}"
        ) from exc


def check(engine: Engine) -> None:
    """Raise if the database does not answer a query (used by readiness)."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def open_store(url: str) -> tuple[Engine, sessionmaker[Session]]:
    engine = make_engine(url)
    migrate(engine)
    return engine, sessionmaker(engine, expire_on_commit=False)
