"""What one alarm write of many detector events reads once and keeps in memory, and the log rows it
writes at its end.

The alarm service's bulk path (`AlarmService.apply`) decides a batch's transitions from this index
instead of asking the database per event: the batch's open alarms are read with one statement per
500 devices (locked, on PostgreSQL, as the per-event reads locked them), the flapping counts and the
devices' open tickets likewise, the maintenance windows, each touched incident and its alarms'
states once. The alarms themselves are plain values (alarms/alarm_values.py), not ORM rows: every
change the batch makes is made to them (and `Tally.update` for an incident's counts), so the index
stays what the database would answer, and they are written at the batch's end (`settle_alarms`):
an UPDATE executemany per set of changed columns, one INSERT for the new ones, which took ids
reserved up front (`alarm_id`); their ticket links follow them. Until then the database holds the
alarms as the batch found them; the one read of alarms after the start (an incident's members,
`tally`) takes the batch's own values over the database's. The log rows are kept as values
(`PendingTransition`, `PendingIncidentStep`) and inserted at the batch's end with one statement per
table, whose returned ids the streams resume from.

Race-freedom is the database's, as before: on SQLite the write lock is taken when the transaction
begins (IMMEDIATE), so nothing changes under the index; on PostgreSQL the open alarms are read FOR
UPDATE and a racing writer's new alarm for the same key fails the partial unique index at the
batch's INSERT, and the whole batch is retried (`AlarmService._write`).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from operator import itemgetter
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    JSON,
    Boolean,
    ColumnElement,
    Connection,
    Delete,
    Dialect,
    Select,
    Table,
    any_,
    bindparam,
    delete,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from alarms.alarm_values import ALARMS, COLUMNS, Alarm, values_of, write
from alarms.drills import DrillScope
from alarms.driver_rows import fetch_plain, insert_many, mark
from alarms.incident_values import INCIDENTS, Incident, held
from alarms.incident_values import write as write_incidents
from core.domain import (
    ACTIVE_STATES,
    AlarmAction,
    AlarmState,
    DetectorEvent,
    DetectorEventKind,
    IncidentState,
    TicketStatus,
)
from storage.advisory import Space, hold, key_of
from storage.db import json_dumps
from storage.models import (
    AlarmEventRow,
    IncidentEventRow,
    MaintenanceRow,
    OutboxRow,
    TicketAlarmRow,
    TicketEventRow,
    TicketRow,
)

_PG_RESERVE = "SELECT nextval(pg_get_serial_sequence('alarms', 'id')) FROM generate_series(1, :n)"
_PG_NEXT_IDS = "SELECT nextval(pg_get_serial_sequence('{table}', 'id')) FROM generate_series(1, :n)"
_CLOSED = AlarmState.CLOSED.value  # looked up once: compared per event
CHUNK = 500  # ids per IN (...) list: well inside every driver's parameter limit
INFO_KEY = "fw_alarm_batch"
LOCAL_TIME = "%Y-%m-%d %H:%M:%S"  # a push's time, as the people on duty read it
_TICKET_ALARMS = cast(Table, TicketAlarmRow.__table__)
_TICKET_EVENTS = cast(Table, TicketEventRow.__table__)
_TICKET_EVENT_COLUMNS = tuple(c.name for c in _TICKET_EVENTS.c if c.name != "id")
_ALARM_EVENTS = cast(Table, AlarmEventRow.__table__)
OUTBOX = cast(Table, OutboxRow.__table__)
# An outbox row's values in this order (its id is the table's own: nothing in the write reads it).
OUTBOX_COLUMNS = (
    "route",
    "alarm_id",
    "incident_id",
    "replaceable",
    "created_ts",
    "payload",
    "attempts",
    "next_ts",
    "delivered_ts",
    "last_error",
)


def _among(column: ColumnElement[Any], name: str, postgresql: bool) -> ColumnElement[bool]:
    """`column` is one of the values bound to `name` (a list): on PostgreSQL `= ANY` of one array
    parameter, elsewhere an IN list of one parameter per value (psycopg converts and sends each of
    a statement's parameters in Python: 500 device ids were 500 of them per statement)."""
    if postgresql:
        return column == any_(bindparam(name, type_=ARRAY(column.type)))
    return column.in_(bindparam(name, expanding=True))


# The alarm columns that are booleans (NOT NULL): the one type the drivers return otherwise than
# SQLAlchemy would (SQLite: 0 and 1).
_ALARM_BOOLS = frozenset(i for i, c in enumerate(ALARMS.c) if isinstance(c.type, Boolean))
if any(ALARMS.c[i].nullable for i in _ALARM_BOOLS):
    raise AssertionError("a nullable boolean alarm column would be read as False")


@lru_cache(maxsize=64)
def _open_alarms_sql(dialect: Dialect, devices: int) -> str:
    """The devices' alarms that are not closed, every column in table order, oldest first, locked
    (on PostgreSQL): run on the driver's cursor (fetch_plain), its devices one array parameter on
    PostgreSQL, an IN list of `devices` parameters on SQLite. SQLAlchemy's execution and result
    made a round of Python work per statement and per row."""
    q = dialect.identifier_preparer.quote
    columns = ", ".join(q(c) for c in COLUMNS)
    closed = AlarmState.CLOSED.value
    among = "= ANY(%s)" if dialect.name == "postgresql" else f"IN ({', '.join(['?'] * devices)})"
    lock = " FOR UPDATE" if dialect.name == "postgresql" else ""
    return f"SELECT {columns} FROM alarms WHERE device_id {among} AND state != '{closed}' ORDER BY id{lock}"


def _raises(postgresql: bool) -> Select[Any]:
    return (
        select(ALARMS.c.device_id, ALARMS.c.alarm_type, func.count())
        .select_from(_ALARM_EVENTS.join(ALARMS, ALARMS.c.id == _ALARM_EVENTS.c.alarm_id))
        .where(_among(ALARMS.c.device_id, "devices", postgresql))
        .where(_ALARM_EVENTS.c.action == AlarmAction.RAISED.value, _ALARM_EVENTS.c.ts >= bindparam("since"))
        .group_by(ALARMS.c.device_id, ALARMS.c.alarm_type)
    )


def _open_tickets(postgresql: bool) -> Select[TicketRow]:
    return (
        select(TicketRow)
        .where(_among(cast(ColumnElement[Any], TicketRow.device_id), "devices", postgresql))
        .where(TicketRow.status != TicketStatus.CLOSED.value)
        .with_for_update()
    )


def _waiting_notices(postgresql: bool) -> Delete:
    """Delete the route's notices of the given incidents still waiting to replace (alarms/outbox.py
    enqueue_incident: replaceable, not yet tried). On PostgreSQL; SQLite's is
    _SQLITE_WAITING_NOTICES."""
    return delete(OUTBOX).where(
        OUTBOX.c.route == bindparam("route"),
        _among(OUTBOX.c.incident_id, "incidents", postgresql),
        OUTBOX.c.replaceable.is_(True),
        OUTBOX.c.delivered_ts.is_(None),
        OUTBOX.c.attempts == 0,
    )


# The batch's reads, built once per kind of database (bound per batch).
_RAISES = {True: _raises(True), False: _raises(False)}
_OPEN_TICKETS = {True: _open_tickets(True), False: _open_tickets(False)}
_WAITING_NOTICES = _waiting_notices(True)
_LINKS = select(_TICKET_ALARMS.c.ticket_id, _TICKET_ALARMS.c.alarm_id).where(
    _TICKET_ALARMS.c.ticket_id.in_(bindparam("tickets", expanding=True))
)
# An incident's members (ids, devices, states: what the driver returns as they are), on the
# driver's cursor (fetch_plain): a row per alarm.
_MEMBERS = "SELECT id, device_id, state FROM alarms WHERE incident_id = {mark}"
# On SQLite, a route's notices of one incident still waiting to be replaced: deleted for every
# (route, incident) pair in one executemany (_waiting_notices on PostgreSQL).
_SQLITE_WAITING_NOTICES = (
    "DELETE FROM outbox WHERE route = ? AND incident_id = ? AND replaceable IS 1 "
    "AND delivered_ts IS NULL AND attempts = 0"
)
_PG_NEXT_TICKET_ID = "SELECT nextval(pg_get_serial_sequence('tickets', 'id'))"
# The tables whose new rows take their ids from the batch on SQLite (next_sqlite_ids).
_SQLITE_TABLES = ("alarms", "tickets", "incidents", "alarm_events", "incident_events")
_SQLITE_LARGEST = "SELECT " + ", ".join(f"(SELECT max(id) FROM {t})" for t in _SQLITE_TABLES)
_PG_NEXT_INCIDENT_ID = "SELECT nextval(pg_get_serial_sequence('incidents', 'id'))"
# An incident by id, and the newest three an alarm of a kind and place may join (alarms/
# incident_service.py `_open_incident_for`), locked for the transaction.
_INCIDENT = select(INCIDENTS).where(INCIDENTS.c.id == bindparam("incident")).with_for_update()
_CANDIDATES = (
    select(INCIDENTS)
    .where(INCIDENTS.c.kind == bindparam("kind"), INCIDENTS.c.group_key == bindparam("key"))
    .where((INCIDENTS.c.state != IncidentState.CLOSED.value) | (INCIDENTS.c.closed_ts >= bindparam("recent")))
    .order_by(INCIDENTS.c.id.desc())
    .limit(3)
    .with_for_update()
)


class Window(NamedTuple):
    """A maintenance window in force (storage/models.py `MaintenanceRow`), what a raise asks of it."""

    id: int
    site: str
    place: str | None
    device_ids: list[str]
    ticket_id: int | None
    start_ts: float
    end_ts: float


_MAINTENANCE = cast(Table, MaintenanceRow.__table__)
_WINDOWS = select(*(_MAINTENANCE.c[name] for name in Window._fields)).where(
    _MAINTENANCE.c.ended_ts.is_(None),
    _MAINTENANCE.c.start_ts <= bindparam("now"),
    _MAINTENANCE.c.end_ts > bindparam("now"),
)


@dataclass
class PendingTransition:
    """A transition logged in the batch whose event id is known only after the insert."""

    event: dict[str, Any]  # the alarm_events row's values
    fields: dict[str, Any]  # Transition's other fields
    push: bool
    place: str


@dataclass
class PendingIncidentStep:
    """An incident step logged in the batch, likewise; whether its notices are owed is decided as it
    is logged (the incident may be notified later in the same batch)."""

    event: dict[str, Any]  # the incident_events row's values
    fields: dict[str, Any]  # IncidentUpdate's other fields
    notified: bool
    place_name: str


@dataclass
class PendingNotice:
    """An incident notice owed by the batch (alarms/outbox.py enqueue_incident): a later step of the
    same incident in the batch may still rewrite it, so it becomes a row only at the batch's end."""

    route: str
    alarm_id: int
    incident_id: int
    replaceable: bool
    created_ts: float
    payload: dict[str, Any]
    next_ts: float

    def row(self) -> tuple[Any, ...]:
        """In OUTBOX_COLUMNS order, the payload encoded as the JSON column would encode it."""
        return (
            self.route,
            self.alarm_id,
            self.incident_id,
            self.replaceable,
            self.created_ts,
            json_dumps(self.payload),
            0,
            self.next_ts,
            None,
            "",
        )


@dataclass
class AlarmBatch:
    """One bulk write's in-memory index (see the module docstring). Held in the session's `info`
    for the transaction, so the alarm and incident code find it wherever they run."""

    # (device_id, alarm_type) -> its alarm that is not closed (at most one per key)
    open: dict[tuple[str, str], Alarm] = field(default_factory=dict)
    # device_id -> its alarms not closed when the batch began or raised in it (any type)
    by_device: dict[str, list[Alarm]] = field(default_factory=lambda: defaultdict(list))
    # alarm id -> every alarm the batch holds, and the values the database holds of the loaded ones
    # (a new alarm has none until the batch's end writes it)
    by_id: dict[int, Alarm] = field(default_factory=dict)
    written: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    # (device_id, alarm_type) -> RAISED transitions since the flapping window began
    raises: dict[tuple[str, str], int] = field(default_factory=dict)
    windows: list[Window] | None = None
    # incident id -> every incident the batch holds (locked in this transaction), as values
    # (alarms/incident_values.py), and the values the database holds of the loaded ones (one opened
    # in the batch has none until the batch's end writes it)
    incidents: dict[int, Incident] = field(default_factory=dict)
    incidents_written: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    # (kind, group key) -> the incidents an alarm of that kind and place may join, newest first:
    # read once, then kept (an incident opened in the batch goes first)
    candidates: dict[tuple[str, str], list[Incident]] = field(default_factory=dict)
    tallies: dict[int, Tally] = field(default_factory=dict)  # incident id -> its alarms
    # The incident groups (`group_lock_name`) this transaction holds the advisory lock of
    # (PostgreSQL; storage/advisory.py): held until it ends, so kept as a set
    group_locks: set[str] = field(default_factory=set)
    # The drills in force, read at the first fire-side raise when several workers share the
    # database (AlarmService.drill_reader); None until then
    drills: tuple[DrillScope, ...] | None = None
    transitions: list[PendingTransition] = field(default_factory=list)
    steps: list[PendingIncidentStep] = field(default_factory=list)
    # (device_id, hazard_type) -> its open ticket, and the ticket-alarm links of those tickets, read
    # at the first need (open_ticket) for the devices with a RAISE in the batch (`raising`, None
    # once read)
    raising: list[str] | None = None
    tickets: dict[tuple[str, str], TicketRow] = field(default_factory=dict)
    ticket_links: set[tuple[int, int]] = field(default_factory=set)
    new_links: list[tuple[int, int]] = field(default_factory=list)  # (ticket, alarm), after the alarms
    # the tickets' history entries of the batch (alarms/tickets.py log_event), inserted after them
    ticket_events: list[dict[str, Any]] = field(default_factory=list)
    # Ids for the batch's new alarms, taken up front so a new row needs no flush of its own
    # (alarm_id); `new_keys` bounds how many it may need.
    new_keys: int = 0
    reserved: list[int] = field(default_factory=list)
    # The transaction's connection, asked of the session once (connection): each ask walks the
    # session's transaction state
    conn: Connection | None = None
    # On SQLite, table -> the next id this batch gives a new row of it (alarms, tickets, incidents
    # and the two logs): the largest ids, read together at the first need (next_sqlite_ids)
    sqlite_next: dict[str, int] | None = None
    # The outbox rows the batch owes, in the order they were owed (their ids follow it): a per-alarm
    # push as its row (OUTBOX_COLUMNS), an incident notice as it may still change; the notices by
    # (route, incident), one per write; and the (route, incident) pairs whose waiting notices from
    # earlier writes an urgent step replaces (deleted before the batch's rows go in).
    outbox: list[tuple[Any, ...] | PendingNotice] = field(default_factory=list)
    notices: dict[tuple[str, int], PendingNotice] = field(default_factory=dict)
    replaced: dict[str, list[int]] = field(default_factory=dict)  # route -> incident ids
    # place path -> its name in words, for the pushes: a batch names the same few places thousands
    # of times, and each naming splits and joins the path anew (DeviceIndex.place_label)
    place_names: dict[str, str] = field(default_factory=dict)
    # whole second -> its local date and time, for the pushes: a batch's alarms fall in few seconds
    seconds: dict[int, str] = field(default_factory=dict)

    @classmethod
    def load(cls, s: Session, events: Sequence[DetectorEvent], raises_since: float) -> AlarmBatch:
        batch = cls()
        # Core statements: not the session's ORM execution, nothing to flush
        conn = batch.connection(s)
        pg = conn.dialect.name == "postgresql"
        ids = sorted({e.device_id for e in events})
        for i in range(0, len(ids), CHUNK):
            chunk = ids[i : i + CHUNK]
            params = (chunk,) if pg else tuple(chunk)
            for row in fetch_plain(conn, _open_alarms_sql(conn.dialect, len(chunk)), params):
                # As SQLAlchemy returns them: SQLite gives booleans as 0 and 1.
                values: tuple[Any, ...] = tuple(
                    bool(v) if j in _ALARM_BOOLS else v for j, v in enumerate(row)
                )
                alarm = Alarm(*values)
                batch.written[alarm.id] = values
                batch.add(alarm)
        # Flapping counts and tickets matter only where an alarm may be raised (_raised is the one
        # reader of both): a batch of clears, as the readings fall back, reads neither.
        raising = sorted({e.device_id for e in events if e.kind is DetectorEventKind.RAISE})
        for i in range(0, len(raising), CHUNK):
            chunk = raising[i : i + CHUNK]
            for device_id, alarm_type, n in conn.execute(
                _RAISES[pg], {"devices": chunk, "since": raises_since}
            ):
                batch.raises[(device_id, alarm_type)] = int(n)
        batch.raising = raising  # their open tickets: read when one is first needed (open_ticket)
        raised = {(e.device_id, e.alarm_type) for e in events if e.kind is DetectorEventKind.RAISE}
        batch.new_keys = len(raised - batch.open.keys())
        s.info[INFO_KEY] = batch
        return batch

    def connection(self, s: Session) -> Connection:
        """The connection of the session's transaction (the same for the whole batch)."""
        if self.conn is None:
            self.conn = s.connection()
        return self.conn

    def open_ticket(self, s: Session, device_id: str, hazard_type: str) -> TicketRow | None:
        """The device's open ticket of this hazard type. The raising devices' open tickets and their
        alarm links are read (and locked) at the first call, once: most writes raise no alarm that
        needs a ticket (a fire alarm does not), and then read none."""
        if self.raising is not None:
            conn = self.connection(s)
            pg = conn.dialect.name == "postgresql"
            for i in range(0, len(self.raising), CHUNK):
                tickets = s.scalars(_OPEN_TICKETS[pg], {"devices": self.raising[i : i + CHUNK]}).all()
                for ticket in tickets:
                    self.tickets[(ticket.device_id or "", ticket.hazard_type)] = ticket
                if tickets:
                    links = conn.execute(_LINKS, {"tickets": [t.id for t in tickets]}).all()
                    self.ticket_links.update((t, a) for t, a in links)
            self.raising = None
        return self.tickets.get((device_id, hazard_type))

    def alarm_id(self, s: Session) -> int:
        """The id a new alarm of this batch takes: from the table's own sequence on PostgreSQL (a
        block for the batch's new keys at once; unused ones are gaps, as after a rollback), next
        after the largest on SQLite (whose write lock this transaction holds, so nobody else
        inserts meanwhile)."""
        if not self.reserved:
            n = max(1, self.new_keys)
            self.new_keys = 0  # beyond the estimate (a key raised again after closing): one by one
            if self.connection(s).dialect.name == "postgresql":
                self.reserved = [int(i) for i in s.scalars(text(_PG_RESERVE), {"n": n})]
            else:
                first = self.next_sqlite_ids(self.connection(s), "alarms", n)
                self.reserved = list(range(first, first + n))
        return self.reserved.pop(0)

    def ticket_id(self, s: Session) -> int:
        """The id a new ticket of this batch takes, so it goes in with the batch's other rows at its
        end instead of a flush of its own (its number is made from its id, and a flush mid-batch
        also wrote every incident changed so far): on PostgreSQL the next from the table's own
        sequence, taken when the ticket is made, as its insert took it; on SQLite the next after the
        largest (this transaction holds the write lock)."""
        conn = self.connection(s)
        if conn.dialect.name == "postgresql":
            return int(conn.exec_driver_sql(_PG_NEXT_TICKET_ID).scalar_one())
        return self.next_sqlite_ids(conn, "tickets", 1)

    def incident_id(self, s: Session) -> int:
        """The id an incident this batch opens takes, so it goes in with the batch's other rows at
        its end: on PostgreSQL the next from the table's own sequence, taken when it is opened, as
        its insert took it (no gaps); on SQLite the next after the largest (this transaction holds
        the write lock)."""
        conn = self.connection(s)
        if conn.dialect.name == "postgresql":
            return int(conn.exec_driver_sql(_PG_NEXT_INCIDENT_ID).scalar_one())
        return self.next_sqlite_ids(conn, "incidents", 1)

    def next_sqlite_ids(self, conn: Connection, table: str, n: int) -> int:
        """On SQLite, the first of `n` ids for new rows of `table` (one of `_SQLITE_TABLES`), the
        ones after the largest: what SQLite would give them, safe because this transaction holds
        the write lock from its BEGIN (IMMEDIATE), so only the batch inserts meanwhile, and it gives
        its rows these ids. The largest ids of every table are read with one statement at the first
        need: each was a statement of its own."""
        if self.sqlite_next is None:
            largest = conn.exec_driver_sql(_SQLITE_LARGEST).one()
            self.sqlite_next = {t: int(m or 0) + 1 for t, m in zip(_SQLITE_TABLES, largest, strict=True)}
        first = self.sqlite_next[table]
        self.sqlite_next[table] = first + n
        return first

    def add(self, row: Alarm) -> None:
        """An alarm the batch knows of: loaded open, or raised in this batch."""
        self.open[(row.device_id, row.alarm_type)] = row
        self.by_device[row.device_id].append(row)
        self.by_id[row.id] = row

    def open_alarm(self, device_id: str, alarm_type: str) -> Alarm | None:
        row = self.open.get((device_id, alarm_type))
        return row if row is not None and row.state != _CLOSED else None

    def of_device(self, device_id: str) -> list[Alarm]:
        """The device's alarms not closed, oldest first."""
        return [r for r in self.by_device.get(device_id, ()) if r.state != _CLOSED]

    def link(self, ticket_id: int, alarm_id: int) -> None:
        """The alarm joins the ticket's alarms (once): inserted after the batch's alarms."""
        if (ticket_id, alarm_id) not in self.ticket_links:
            self.ticket_links.add((ticket_id, alarm_id))
            self.new_links.append((ticket_id, alarm_id))

    def settle_alarms(self, s: Session) -> None:
        """Write the batch's alarms and incidents as they now are (alarm_values.write,
        incident_values.write), then the session's rows (the batch's new tickets and their
        history), then the new ticket links, which refer to both."""
        conn = self.connection(s)
        write(conn, list(self.by_id.values()), self.written)
        for alarm in self.by_id.values():
            self.written[alarm.id] = values_of(alarm)
        write_incidents(conn, list(self.incidents.values()), self.incidents_written)
        for inc in self.incidents.values():
            self.incidents_written[inc.id] = held(inc)
        s.flush()
        in_order = itemgetter(*_TICKET_EVENT_COLUMNS)
        insert_many(conn, _TICKET_EVENTS, _TICKET_EVENT_COLUMNS, [in_order(e) for e in self.ticket_events])
        self.ticket_events.clear()
        insert_many(conn, _TICKET_ALARMS, ("ticket_id", "alarm_id"), self.new_links)
        self.new_links.clear()

    def settle_outbox(self, s: Session) -> None:
        """The pushes the batch owes, at its end, after its alarms (which they refer to): first the
        replaced notices of earlier writes deleted, one statement per route (as each urgent step
        deleted them: a notice of this write is never waiting, `PendingNotice`), then the rows in
        the order they were owed, through the driver (alarms/driver_rows.py), as the ORM's flush
        of them inserted them."""
        conn = self.connection(s)
        if conn.dialect.name == "postgresql":
            for route, incidents in self.replaced.items():
                for i in range(0, len(incidents), CHUNK):
                    conn.execute(_WAITING_NOTICES, {"route": route, "incidents": incidents[i : i + CHUNK]})
        elif self.replaced:
            pairs = [(route, i) for route, incidents in self.replaced.items() for i in incidents]
            conn.exec_driver_sql(_SQLITE_WAITING_NOTICES, pairs)
        self.replaced.clear()
        rows = [r if isinstance(r, tuple) else r.row() for r in self.outbox]
        insert_many(conn, OUTBOX, OUTBOX_COLUMNS, rows)
        self.outbox.clear()
        self.notices.clear()

    def place_name(self, place: str, label: Callable[[str], str]) -> str:
        """`label(place)`, named once per batch (the registry's names do not change within it)."""
        name = self.place_names.get(place)
        if name is None:
            name = self.place_names[place] = label(place)
        return name

    def local_time(self, ts: float) -> str:
        """`ts` as local date and time to the second (alarms/outbox.py local_time), formatted once per
        second in the batch. `datetime.fromtimestamp` rounds to microseconds and converts the whole
        second, so a time not within a microsecond of the next second reads as its whole second."""
        second = math.floor(ts)
        if ts - second >= 0.999999:
            return datetime.fromtimestamp(ts).strftime(LOCAL_TIME)
        text = self.seconds.get(second)
        if text is None:
            text = self.seconds[second] = datetime.fromtimestamp(second).strftime(LOCAL_TIME)
        return text

    def raised(self, row: Alarm) -> None:
        key = (row.device_id, row.alarm_type)
        self.raises[key] = self.raises.get(key, 0) + 1

    def maintenance_windows(self, s: Session, now: float) -> list[Window]:
        """The maintenance windows in force at `now`, read once per batch (values: the rules only
        read them)."""
        if self.windows is None:
            rows = self.connection(s).execute(_WINDOWS, {"now": now}).all()
            self.windows = [Window(*row) for row in rows]
        return self.windows

    def incident(self, s: Session, incident_id: int) -> Incident | None:
        """The incident, locked once in this transaction (later reads come from memory)."""
        inc = self.incidents.get(incident_id)
        if inc is None:
            row = self.connection(s).execute(_INCIDENT, {"incident": incident_id}).first()
            if row is not None:
                inc = self._held(tuple(row))
        return inc

    def lock_groups(self, s: Session, names: Iterable[str]) -> None:
        """Hold the incident groups' advisory locks (`group_lock_name`) for the rest of the
        transaction, those not held yet in the order of their keys: every writer that takes several
        takes them in one order, so two never wait for each other in a cycle (one taken later, out of
        that order, can: PostgreSQL then fails one transaction as deadlocked and `_write` retries it).

        Why a lock and not the candidates' row locks alone: two workers raising the first alarms of
        one fire (devices of two partitions) both find no open incident, and there is no row to
        lock, so both would open one. Under the group's lock the second waits until the first
        commits, then finds its incident (READ COMMITTED: each statement sees what was committed
        before it began). Chosen over a unique index on open incidents per group key because an
        incident stays joinable after it ends (a real fire coming back, a recent outage), which an
        index cannot express, and because the loser of an index race would retry its whole batch."""
        conn = self.connection(s)
        if conn.dialect.name != "postgresql":
            return  # SQLite: this transaction holds the database's write lock from its BEGIN
        for name in sorted(set(names) - self.group_locks, key=key_of):
            hold(conn, Space.INCIDENT_GROUP, name)
            self.group_locks.add(name)

    def candidates_for(self, s: Session, kind: str, key: str, recent: float) -> list[Incident]:
        """The newest three incidents of this kind and group key that are open or closed since
        `recent` (an alarm of that kind and place may join one), read once per batch and locked,
        then kept: an incident opened in the batch goes first (`opened`).

        Read from the database, whose rows are as the batch found them: an incident the batch holds
        is taken as the batch has it. The selection is the same as on the batch's values: the
        batch never changes an incident's kind or group key, and what it does to the rest keeps an
        incident in it (closing one sets its closed time to now) or cannot concern one outside it (a
        closed incident outside it is not joinable, so it is never reopened)."""
        found = self.candidates.get((kind, key))
        if found is None:
            rows = self.connection(s).execute(_CANDIDATES, {"kind": kind, "key": key, "recent": recent}).all()
            found = self.candidates[(kind, key)] = [
                self.incidents.get(row[0]) or self._held(tuple(row)) for row in rows
            ]
        return found

    def _held(self, values: tuple[Any, ...]) -> Incident:
        inc = Incident(*values)
        self.incidents[inc.id] = inc
        self.incidents_written[inc.id] = held(inc)
        return inc

    def tally(self, s: Session, inc: Incident) -> Tally:
        """The incident's alarms, their devices and which are active: read once (ids, devices and
        states only), then kept as the batch changes them."""
        found = self.tallies.get(inc.id)
        if found is None:
            found = Tally()
            conn = self.connection(s)
            sql = _MEMBERS.format(mark=mark(conn.dialect))
            for alarm_id, device_id, state in fetch_plain(conn, sql, (inc.id,)):
                mine = self.by_id.get(alarm_id)
                if mine is not None:
                    # The database holds the alarm as the batch found it: the batch's values rule.
                    # (One that joined this incident in the batch was added when it joined, which
                    # read this tally first; one that left it for another is not a member.)
                    if mine.incident_id != inc.id:
                        continue
                    state = mine.state
                found.members[alarm_id] = device_id
                found.per_device[device_id] += 1
                if state in ACTIVE_STATES:
                    found.active.add(alarm_id)
            self.tallies[inc.id] = found
        return found

    def opened(self, inc: Incident) -> None:
        """An incident opened in this batch: it has no alarms yet, and joins the candidates first."""
        self.tallies[inc.id] = Tally()
        self.incidents[inc.id] = inc
        self.candidates.setdefault((inc.kind, inc.group_key), []).insert(0, inc)

    def joined(self, s: Session, alarm: Alarm, inc: Incident) -> None:
        """`alarm` now belongs to `inc` (it may have belonged to another incident before)."""
        if alarm.incident_id is not None and alarm.incident_id != inc.id:
            old = self.tallies.get(alarm.incident_id)
            if old is not None:
                old.remove(alarm)
        self.incidents.setdefault(inc.id, inc)
        self.tally(s, inc).add(alarm)

    def touch(self, alarm: Alarm) -> None:
        """`alarm`'s state changed: its incident's count of active alarms follows."""
        if alarm.incident_id is not None and (found := self.tallies.get(alarm.incident_id)) is not None:
            found.update(alarm)


@dataclass
class Tally:
    """An incident's alarms (by id) as the batch changes them, for its counts without a query per
    step. Every change of a member's state in the batch goes through `update`."""

    members: dict[int, str] = field(default_factory=dict)  # alarm id -> device id
    per_device: Counter[str] = field(default_factory=Counter)
    active: set[int] = field(default_factory=set)

    def add(self, row: Alarm) -> None:
        if row.id not in self.members:
            self.members[row.id] = row.device_id
            self.per_device[row.device_id] += 1
        self.update(row)

    def remove(self, row: Alarm) -> None:
        device_id = self.members.pop(row.id, None)
        if device_id is None:
            return
        self.active.discard(row.id)
        self.per_device[device_id] -= 1
        if self.per_device[device_id] <= 0:
            del self.per_device[device_id]

    def update(self, row: Alarm) -> None:
        if row.id not in self.members:
            return
        if row.state in ACTIVE_STATES:
            self.active.add(row.id)
        else:
            self.active.discard(row.id)


def insert_rows(
    s: Session, model: type[AlarmEventRow] | type[IncidentEventRow], rows: list[dict[str, Any]]
) -> list[int]:
    """Insert log rows together (each a value for every column but the id); their ids, in `rows`
    order: the ids are taken first, then the rows go to the driver as tuples, JSON encoded here, in
    one executemany (alarms/driver_rows.py: Core's executemany did work per row and per value).

    Not `INSERT ... RETURNING` over the batch: on SQLite its order over many rows is not promised,
    so SQLAlchemy sent one statement per row; on PostgreSQL it is one statement of a thousand rows'
    VALUES, which psycopg parses anew each time (too long for its cache). The ids are what the
    database would give: on PostgreSQL a block from the table's own sequence (ascending once
    sorted; taken in this transaction, as an insert takes them), on SQLite the ids after the largest,
    safe because this transaction holds the write lock (BEGIN IMMEDIATE), as for the alarms."""
    if not rows:
        return []
    table = cast(Table, model.__table__)
    batch = batch_of(s)
    conn = s.connection() if batch is None else batch.connection(s)
    if conn.dialect.name == "postgresql":
        taken = conn.scalars(text(_PG_NEXT_IDS.format(table=table.name)), {"n": len(rows)})
        ids = sorted(int(i) for i in taken)
    else:
        if batch is not None:
            first = batch.next_sqlite_ids(conn, table.name, len(rows))
        else:
            first = int(conn.scalar(select(func.max(table.c.id))) or 0) + 1
        ids = list(range(first, first + len(rows)))
    columns = tuple(c.name for c in table.c if c.name != "id")
    encoded = [i for i, c in enumerate(c for c in table.c if c.name != "id") if isinstance(c.type, JSON)]
    values_in_order = itemgetter(*columns)
    params: list[tuple[Any, ...]] = []
    for row, row_id in zip(rows, ids, strict=True):
        values = [row_id, *values_in_order(row)]
        for i in encoded:
            values[i + 1] = json_dumps(values[i + 1])
        params.append(tuple(values))
    insert_many(conn, table, ("id", *columns), params)
    return ids


def group_lock_name(kind: str, key: str) -> str:
    """The advisory lock guarding the incidents of a kind and group key (alarms/incidents.py
    `group_key`), the key without a drill's suffix: a drill's incidents of a building share the real
    ones' lock (coarser, never wrong)."""
    return f"{kind}:{key}"


def batch_of(s: Session) -> AlarmBatch | None:
    """The bulk write's index, when this session runs one."""
    found = s.info.get(INFO_KEY)
    return found if isinstance(found, AlarmBatch) else None
