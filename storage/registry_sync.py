"""Mirror the registry (places and devices) into the state store, for queries and dashboards.

Written as a diff, in bulk, in small transactions: the alarm path shares this database (SQLite has
one writer at a time), so no write here holds it for more than `_CHUNK` rows. Only the rows that
differ are deleted and inserted, with Core `insert()` executemany (no ORM objects); rows are made
from the registry's columns a chunk at a time, so a million devices never sit in memory as rows.

The mirror keeps a fingerprint of the registry it holds (`registry_mirror`): a start with the same
registry compares fingerprints and reads nothing back. The fingerprint is removed before any row is
written and stored once all are, so a sync that stops half-way (a crash, a stop) leaves none and the
next one compares row by row (docs/benchmarks.md, "Registry at scale"; decision 0010).
"""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from sqlalchemy import Column, Table, delete, func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from core.registry import Registry, location_of
from device_profiles.schema import Profile
from storage.db import IMMEDIATE
from storage.models import DeviceRow, DiscoveredDeviceRow, PlaceRow, RegistryMirrorRow

_CHUNK = 500  # rows per transaction and ids per IN (...) list: the alarm path waits behind one at most

DEVICES: Table = DeviceRow.__table__  # type: ignore[assignment]
PLACES: Table = PlaceRow.__table__  # type: ignore[assignment]
DISCOVERED: Table = DiscoveredDeviceRow.__table__  # type: ignore[assignment]
MIRROR: Table = RegistryMirrorRow.__table__  # type: ignore[assignment]
DEVICE_COLUMNS = (
    "id",
    "profile",
    "kind",
    "system",
    "site",
    "building",
    "floor",
    "zone",
    "room",
    "place",
    "name",
    "department",
    "responsible",
    "installed",
    "tags",
)
PLACE_COLUMNS = ("path", "kind", "site", "name", "parent", "department")
# Part of every fingerprint: a change to what a row holds (columns, their text) must not let a
# mirror written the old way pass for the same registry.
LAYOUT = "devices:" + ",".join(DEVICE_COLUMNS) + ";places:" + ",".join(PLACE_COLUMNS) + ";1"

Row = tuple[Any, ...]  # a table's columns in the order of DEVICE_COLUMNS or PLACE_COLUMNS


@dataclass(frozen=True)
class Synced:
    """What a sync did."""

    skipped: bool  # the mirror held this registry already (same fingerprint): nothing read or written
    complete: bool  # False: stopped before the end (`stop` was set); no fingerprint is stored then
    written: int = 0  # rows inserted, places and devices
    deleted: int = 0  # rows deleted (a changed row is deleted and inserted)


class DeviceRows:
    """The `devices` rows of a registry, made from its columns a range of rows at a time: each
    field's text (and the profile's kind and system) once per distinct value, not per device, and
    no `Device` made."""

    def __init__(self, registry: Registry, profiles: dict[str, Profile]) -> None:
        columns = registry.columns
        items = columns.values.items
        self.ids = columns.ids
        self.names = columns.names

        def coded(codes: npt.NDArray[np.int32], convert: Callable[[Any], Any]) -> tuple[list[Any], Any]:
            """(the distinct values, converted, and each row's position among them)."""
            distinct, inverse = np.unique(codes, return_inverse=True)
            return [convert(items[c]) for c in distinct.tolist()], inverse.astype(np.int32)

        same: Callable[[Any], Any] = lambda v: v  # noqa: E731
        self.profile = coded(columns.profile, same)
        self.kind = [profiles[p].kind.value for p in self.profile[0]]
        self.system = [profiles[p].system.value for p in self.profile[0]]
        self.place = coded(columns.place, same)
        self.department = coded(registry.devices.department, same)
        self.responsible = coded(columns.responsible, same)
        self.installed = coded(columns.installed, lambda d: d.isoformat() if d else None)
        self.tags = coded(columns.tags, list)

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self, start: int, stop: int) -> list[Row]:
        """The rows of registry rows [start, stop), in registry order."""

        def column(coded: tuple[list[Any], Any]) -> list[Any]:
            values, inverse = coded
            return list(map(values.__getitem__, inverse[start:stop].tolist()))

        profile_at = self.profile[1][start:stop].tolist()
        places = column(self.place)
        # Split per chunk, not kept per distinct place: a `Location` for each of a million rooms
        # would hold about 300 MB while the service ingests beside this sync.
        locations = list(map(location_of, places))
        return list(
            zip(
                self.ids[start:stop],
                map(self.profile[0].__getitem__, profile_at),
                map(self.kind.__getitem__, profile_at),
                map(self.system.__getitem__, profile_at),
                (loc.site for loc in locations),
                (loc.building for loc in locations),
                (loc.floor for loc in locations),
                (loc.zone for loc in locations),
                (loc.room for loc in locations),
                places,
                self.names[start:stop],
                column(self.department),
                column(self.responsible),
                column(self.installed),
                [list(t) for t in column(self.tags)],
                strict=True,
            )
        )

    def digest(self, h: Any) -> None:
        """Feed every row's content to hash `h`: each column as its distinct values and each row's
        position among them (equal rows, equal input)."""
        h.update(orjson.dumps(self.ids))
        h.update(orjson.dumps(self.names))
        for values, inverse in (
            self.profile,
            self.place,
            self.department,
            self.responsible,
            self.installed,
            self.tags,
        ):
            h.update(orjson.dumps(values))
            h.update(np.ascontiguousarray(inverse, dtype="<i4").tobytes())
        h.update(orjson.dumps([self.kind, self.system]))


def place_rows(registry: Registry) -> Iterator[Row]:
    """The `places` rows of a registry, in its order, made column by column (no `Place` per place)."""
    f = registry.places.fields()
    return (
        (path, kind.value, path.split("/", 1)[0], name, parent, department)
        for path, kind, name, parent, department in zip(
            f.path, f.kind, f.name, f.parent, f.department, strict=True
        )
    )


def device_rows(registry: Registry, profiles: dict[str, Profile]) -> dict[str, Row]:
    """The `devices` rows of a registry, by id."""
    made = DeviceRows(registry, profiles)
    return {row[0]: row for row in made.rows(0, len(made))}


def device_row(registry: Registry, profiles: dict[str, Profile], device_id: str) -> Row:
    """One device's row, from its `Device` (the reference `DeviceRows` is checked against)."""
    device = registry.devices[device_id]
    loc = registry.locations[device_id]
    profile = profiles[device.profile]
    return (
        device.id,
        device.profile,
        profile.kind.value,
        profile.system.value,
        loc.site,
        loc.building,
        loc.floor,
        loc.zone,
        loc.room,
        device.place,
        device.name,
        device.department,
        device.responsible,
        device.installed.isoformat() if device.installed else None,
        list(device.tags),
    )


def fingerprint(registry: Registry, profiles: dict[str, Profile], made: DeviceRows | None = None) -> str:
    """A digest of every row the mirror of `registry` holds: equal registries (and profiles' kind and
    system) give equal fingerprints; any difference in a row gives another, but for the odds of a
    160-bit hash collision."""
    h = hashlib.blake2b(LAYOUT.encode(), digest_size=20)
    (made or DeviceRows(registry, profiles)).digest(h)
    places = place_rows(registry)
    while chunk := list(itertools.islice(places, 50_000)):
        h.update(orjson.dumps(chunk))
    return h.hexdigest()


def stored_fingerprint(sessions: sessionmaker[Session]) -> str | None:
    """The fingerprint of the registry the mirror holds, None while it holds none complete."""
    with sessions() as s:
        return s.execute(select(MIRROR.c.fingerprint).where(MIRROR.c.id == 1)).scalar_one_or_none()


def sync_registry(
    sessions: sessionmaker[Session],
    registry: Registry,
    profiles: dict[str, Profile],
    *,
    previous: Registry | None = None,
    stop: threading.Event | None = None,
    pause: float = 0.0,
) -> Synced:
    """Make the mirror match `registry`; registered devices leave the list of discovered ones.

    Without `previous`: skipped when the mirror's fingerprint is the registry's, else against what
    the mirror holds (all inserted when it is empty; else compared `_CHUNK` rows at a time). With
    `previous` (what the mirror holds now, the service running), only the devices that differ
    between the two are written. Either way `_CHUNK` rows per transaction: a fire alarm must not
    wait behind the import of a whole hospital. Between two transactions the sync waits `pause`
    times as long as the last one took (leaving the writer lock and the interpreter to the
    service), and ends there, incomplete, once `stop` is set.
    """
    made = DeviceRows(registry, profiles)
    wanted = fingerprint(registry, profiles, made)
    writer = _Writer(sessions, stop, pause)
    if previous is None and stored_fingerprint(sessions) == wanted:
        _forget_discovered(sessions, registry)
        return Synced(skipped=True, complete=True)
    writer.transaction(lambda s: s.execute(delete(MIRROR)))  # from here on, the mirror is not whole
    if previous is None:
        _sync_table(writer, PLACES, PLACES.c.path, PLACE_COLUMNS, place_rows(registry), registry.places)
        device_chunks = (made.rows(i, i + _CHUNK) for i in range(0, len(made), _CHUNK))
        _sync_table(
            writer,
            DEVICES,
            DEVICES.c.id,
            DEVICE_COLUMNS,
            itertools.chain.from_iterable(device_chunks),
            registry.row_of,
        )
    else:
        if previous.places != registry.places:
            _sync_table(writer, PLACES, PLACES.c.path, PLACE_COLUMNS, place_rows(registry), registry.places)
        gone = sorted(previous.devices.keys() - registry.devices.keys())
        changed = [
            row
            for row, d in enumerate(registry.columns.ids)
            if d not in previous.row_of or previous.device_key(d) != registry.device_key(d)
        ]
        for i in range(0, len(gone), _CHUNK):
            writer.replace(DEVICES, DEVICES.c.id, DEVICE_COLUMNS, gone[i : i + _CHUNK], [])
        for i in range(0, len(changed), _CHUNK):
            rows = [made.rows(r, r + 1)[0] for r in changed[i : i + _CHUNK]]
            writer.replace(DEVICES, DEVICES.c.id, DEVICE_COLUMNS, [r[0] for r in rows], rows)
    if writer.stopped():
        return writer.result(complete=False)
    _forget_discovered(sessions, registry)
    writer.transaction(
        lambda s: s.execute(
            insert(MIRROR),
            [
                {
                    "id": 1,
                    "fingerprint": wanted,
                    "devices": len(made),
                    "places": len(registry.places),
                    "synced": time.time(),
                }
            ],
        )
    )
    return writer.result(complete=True)


class _Writer:
    """Short write transactions, counted, paced and stoppable."""

    def __init__(self, sessions: sessionmaker[Session], stop: threading.Event | None, pause: float) -> None:
        self.sessions = sessions
        self._stop = stop
        self._pause = pause
        self.written = 0
        self.deleted = 0

    def stopped(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    def transaction(self, work: Callable[[Session], object]) -> bool:
        """Run `work` in a write transaction, unless stopped; then pause. False: stopped, not run."""
        if self.stopped():
            return False
        began = time.perf_counter()
        with self.sessions.begin() as s:
            s.connection(execution_options=IMMEDIATE)  # read-modify-write: take the write lock at BEGIN
            work(s)
        if self._pause > 0 and self._stop is not None:
            self._stop.wait(self._pause * (time.perf_counter() - began))
        return True

    def replace(
        self, table: Table, key: Column[str], columns: Sequence[str], stale: list[str], fresh: list[Row]
    ) -> None:
        """Delete the rows of keys `stale`, insert `fresh`, in one transaction."""
        if not stale and not fresh:
            return
        params = [dict(zip(columns, row, strict=True)) for row in fresh]  # made before the lock is taken

        def work(s: Session) -> None:
            _delete_ids(s, table, key, stale)
            if params:
                s.execute(insert(table), params)

        if self.transaction(work):
            self.written += len(fresh)
            self.deleted += len(stale)

    def result(self, *, complete: bool) -> Synced:
        return Synced(skipped=False, complete=complete, written=self.written, deleted=self.deleted)


def _sync_table(
    writer: _Writer,
    table: Table,
    key: Column[str],
    columns: Sequence[str],
    wanted: Iterable[Row],
    registered: Any,  # a mapping or set the registry's keys are `in`
) -> None:
    """Make `table` hold the rows `wanted` (keyed by their first column), `_CHUNK` rows at a time:
    all inserted into an empty table, else each chunk compared with the rows of the same keys."""
    with writer.sessions() as s:
        empty = not s.execute(select(func.count()).select_from(table)).scalar_one()
    rows = iter(wanted)
    while not writer.stopped() and (chunk := list(itertools.islice(rows, _CHUNK))):
        if empty:
            writer.replace(table, key, columns, [], chunk)
            continue
        keys = [row[0] for row in chunk]
        with writer.sessions() as s:
            held = {
                r[0]: tuple(r) for r in s.execute(select(*[table.c[c] for c in columns]).where(key.in_(keys)))
            }
        fresh = [row for row in chunk if held.get(row[0]) != row]
        writer.replace(table, key, columns, [row[0] for row in fresh if row[0] in held], fresh)
    if empty or writer.stopped():
        return
    with writer.sessions() as s:  # rows of keys the registry no longer has
        stale = [k for k in s.execute(select(key)).scalars() if k not in registered]
    for i in range(0, len(stale), _CHUNK):
        writer.replace(table, key, columns, stale[i : i + _CHUNK], [])


def _forget_discovered(sessions: sessionmaker[Session], registry: Registry) -> None:
    """Registered devices leave the list of discovered ones (a list bounded by the reject store)."""
    with sessions() as s:
        known = s.execute(select(DISCOVERED.c.device_id)).scalars().all()
    registered = [d for d in known if d in registry.row_of]
    for i in range(0, len(registered), _CHUNK):
        with sessions.begin() as s:
            s.connection(execution_options=IMMEDIATE)
            _delete_ids(s, DISCOVERED, DISCOVERED.c.device_id, registered[i : i + _CHUNK])


def _delete_ids(s: Session, table: Table, column: Column[str], ids: Iterable[str]) -> None:
    wanted = sorted(ids)
    for i in range(0, len(wanted), _CHUNK):
        s.execute(delete(table).where(column.in_(wanted[i : i + _CHUNK])))
