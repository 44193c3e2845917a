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

from collections import defaultdict
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Dialect, Float, String, Table
from sqlalchemy.exc import DBAPIError

from storage.db import json_dumps


def write_changed(
    conn: Connection,
    table: Table,
    columns: tuple[str, ...],
    rows: Iterable[tuple[Any, ...]],
    written: dict[int, tuple[Any, ...]],
    json_positions: frozenset[int] = frozenset(),
) -> None:
    """Write `rows` (each a row's values now, in `columns` order, its id first) as they are: a row
    in `written` (its values as the database holds them) as an UPDATE of the columns that differ,
    grouped so that each set of changed columns is one statement; the others as one INSERT. The
    updates go first (a row they change may free a unique key a new row takes). The values at
    `json_positions` are JSON encoded with the columns' own encoder."""
    updates: dict[tuple[int, ...], list[tuple[Any, ...]]] = defaultdict(list)
    inserts: list[tuple[Any, ...]] = []
    but_id = range(1, len(columns))  # the id never changes
    everything = tuple(range(len(columns)))

    def driver(values: tuple[Any, ...], positions: tuple[int, ...]) -> list[Any]:
        return [json_dumps(values[i]) if i in json_positions else values[i] for i in positions]

    for now in rows:
        before = written.get(now[0])
        if before is None:
            inserts.append(tuple(driver(now, everything)) if json_positions else now)
        elif now != before:
            changed = tuple([i for i in but_id if now[i] != before[i]])
            updates[changed].append((*driver(now, changed), now[0]))
    for changed, group in updates.items():
        update_many(conn, table, tuple(columns[i] for i in changed), group)
    insert_many(conn, table, columns, inserts)


def insert_many(
    conn: Connection, table: Table, columns: tuple[str, ...], rows: Sequence[tuple[Any, ...]]
) -> None:
    """INSERT `rows` (tuples in `columns` order) into `table`: one executemany on SQLite, one COPY on
    PostgreSQL (psycopg's executemany sends and tracks each row as a statement of its own, a pipeline
    of prepared executions, which cost more in this process than the rest of the write; COPY streams
    the rows, formatted by psycopg's C code, in this transaction)."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        conn.exec_driver_sql(_insert_sql(conn.dialect, table.name, columns), list(rows))
        return
    sql = _copy_sql(conn.dialect, table.name, columns)
    driver = conn.connection.driver_connection
    assert driver is not None  # the connection is checked out for this transaction
    try:
        with driver.cursor() as cursor, cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row(row)
    except conn.dialect.loaded_dbapi.Error as exc:
        # As SQLAlchemy would have raised it: the alarm service retries a transaction on an
        # IntegrityError of an open key (a racing writer's new alarm), storage/db.py retryable.
        raise DBAPIError.instance(
            sql, None, exc, conn.dialect.loaded_dbapi.Error, dialect=conn.dialect
        ) from exc


def update_many(
    conn: Connection, table: Table, columns: tuple[str, ...], rows: Sequence[tuple[Any, ...]]
) -> None:
    """UPDATE `table` SET `columns` WHERE id = the last value of each row (tuples: the new values in
    `columns` order, then the id): one executemany on SQLite; on PostgreSQL one statement, the
    rows passed as one array per column and joined by id (`UPDATE ... FROM unnest(...)`), for the
    reason COPY inserts there."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        conn.exec_driver_sql(_update_sql(conn.dialect, table.name, columns), list(rows))
        return
    arrays = [list(values) for values in zip(*rows, strict=True)]
    for i in _float_columns(table, columns):
        # psycopg types an array by its first value: an int among floats (a whole-number reading)
        # must not make the column's array an integer one.
        arrays[i] = [None if v is None else float(v) for v in arrays[i]]
    conn.exec_driver_sql(_pg_update_sql(conn.dialect, table, columns), tuple(arrays))


def fetch_plain(conn: Connection, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """The rows of a SELECT run on the driver's own cursor, as the driver returns them: only for
    columns it returns as SQLAlchemy would (integers, strings; not booleans, which SQLite returns as
    0 and 1, nor JSON). `sql` marks its parameters with `mark(dialect)`. SQLAlchemy's result made a
    Python round of work per row (an incident's members are read a row per alarm). A failure is
    raised as SQLAlchemy raises a failed statement (`DBAPIError.instance`)."""
    driver = conn.connection.driver_connection
    assert driver is not None  # the connection is checked out for this transaction
    try:
        cursor = driver.cursor()
        try:
            cursor.execute(sql, params)
            return list(cursor.fetchall())
        finally:
            cursor.close()
    except conn.dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(
            sql, params, exc, conn.dialect.loaded_dbapi.Error, dialect=conn.dialect
        ) from exc


def mark(dialect: Dialect) -> str:
    """How the driver marks a positional parameter."""
    return _mark(dialect)


def _mark(dialect: Dialect) -> str:
    # sqlite3 takes qmark; psycopg takes %s for positional parameters.
    return "?" if dialect.paramstyle == "qmark" else "%s"


@lru_cache(maxsize=256)
def _insert_sql(dialect: Dialect, table: str, columns: tuple[str, ...]) -> str:
    q = dialect.identifier_preparer.quote
    marks = ", ".join([_mark(dialect)] * len(columns))
    return f"INSERT INTO {q(table)} ({', '.join(q(c) for c in columns)}) VALUES ({marks})"


@lru_cache(maxsize=256)
def _copy_sql(dialect: Dialect, table: str, columns: tuple[str, ...]) -> str:
    q = dialect.identifier_preparer.quote
    return f"COPY {q(table)} ({', '.join(q(c) for c in columns)}) FROM STDIN"


@lru_cache(maxsize=256)
def _float_columns(table: Table, columns: tuple[str, ...]) -> list[int]:
    return [i for i, c in enumerate(columns) if isinstance(table.c[c].type, Float)]


@lru_cache(maxsize=256)
def _pg_update_sql(dialect: Dialect, table: Table, columns: tuple[str, ...]) -> str:
    q = dialect.identifier_preparer.quote
    # Arrays of the columns' types, strings without their length: a cast to varchar(n) would cut
    # a longer value, where the assignment refuses it (as an UPDATE of the value itself does).
    types = [
        "VARCHAR" if isinstance(table.c[c].type, String) else table.c[c].type.compile(dialect=dialect)
        for c in (*columns, "id")
    ]
    names = [f"v{i}" for i in range(len(columns))]
    sets = ", ".join(f"{q(c)} = v.{n}" for c, n in zip(columns, names, strict=True))
    arrays = ", ".join(f"%s::{t}[]" for t in types)
    return (
        f"UPDATE {q(table.name)} SET {sets} FROM unnest({arrays}) AS v({', '.join(names)}, id_) "
        f"WHERE {q(table.name)}.{q('id')} = v.id_"
    )


@lru_cache(maxsize=256)
def _update_sql(dialect: Dialect, table: str, columns: tuple[str, ...]) -> str:
    q = dialect.identifier_preparer.quote
    mark = _mark(dialect)
    sets = ", ".join(f"{q(c)} = {mark}" for c in columns)
    return f"UPDATE {q(table)} SET {sets} WHERE {q('id')} = {mark}"
