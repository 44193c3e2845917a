"""Many rows sent through the database driver's own executemany, as plain tuples.

SQLAlchemy's executemany of a Core statement does work per row in Python: a dict per row, a pass
over the statement's bind names for each, a type processor per value (JSON encoding among them). On
the alarm path's bulk writes — some 51,000 rows per run of `bench.alarm_burst` — that was a large
share of the CPU per transition (docs/decisions/0011-bulk-alarm-path.md). Here each row is a tuple
in the statement's column order, handed to the driver in one call (`exec_driver_sql`, which does no
work per row for tuples); a JSON value is encoded by the caller with `storage.db.json_dumps`, the
same encoder the JSON columns use, so the database holds the same text.

Only for columns whose values the drivers take as they are: integers, floats, strings, booleans
and None (sqlite3 and psycopg both), and JSON already encoded to a string (PostgreSQL casts it to
`json` on assignment).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Dialect, Table


def insert_many(
    conn: Connection, table: Table, columns: tuple[str, ...], rows: Sequence[tuple[Any, ...]]
) -> None:
    """INSERT `rows` (tuples in `columns` order) into `table`, one executemany."""
    if rows:
        conn.exec_driver_sql(_insert_sql(conn.dialect, table.name, columns), list(rows))


def update_many(
    conn: Connection, table: Table, columns: tuple[str, ...], rows: Sequence[tuple[Any, ...]]
) -> None:
    """UPDATE `table` SET `columns` WHERE id = the last value of each row (tuples: the new values in
    `columns` order, then the id), one executemany."""
    if rows:
        conn.exec_driver_sql(_update_sql(conn.dialect, table.name, columns), list(rows))


def _mark(dialect: Dialect) -> str:
    # sqlite3 takes qmark; psycopg takes %s for positional parameters.
    return "?" if dialect.paramstyle == "qmark" else "%s"


@lru_cache(maxsize=256)
def _insert_sql(dialect: Dialect, table: str, columns: tuple[str, ...]) -> str:
    q = dialect.identifier_preparer.quote
    marks = ", ".join([_mark(dialect)] * len(columns))
    return f"INSERT INTO {q(table)} ({', '.join(q(c) for c in columns)}) VALUES ({marks})"


@lru_cache(maxsize=256)
def _update_sql(dialect: Dialect, table: str, columns: tuple[str, ...]) -> str:
    q = dialect.identifier_preparer.quote
    mark = _mark(dialect)
    sets = ", ".join(f"{q(c)} = {mark}" for c in columns)
    return f"UPDATE {q(table)} SET {sets} WHERE {q('id')} = {mark}"
