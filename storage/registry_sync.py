"""Mirror the registry (places and devices) into the state store, for queries and dashboards.

Written as a diff, in bulk: the rows the registry wants are compared with the rows the mirror holds,
and only those that differ are deleted and inserted, with Core `insert()` executemany (no ORM
objects). A restart with an unchanged registry of a million devices reads the mirror and writes
nothing; the first start writes it in one bulk statement per chunk (docs/benchmarks.md, "Registry
at scale").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy import Column, Table, delete, insert, select
from sqlalchemy.orm import Session, sessionmaker

from core.registry import Registry, location_of
from device_profiles.schema import Profile
from storage.db import IMMEDIATE
from storage.models import DeviceRow, DiscoveredDeviceRow, PlaceRow

_CHUNK = 500  # ids per IN (...) list, and rows per transaction while the service runs
_INSERT_CHUNK = 20_000  # rows per executemany at start: bounded memory for the driver's parameters

DEVICES: Table = DeviceRow.__table__  # type: ignore[assignment]
PLACES: Table = PlaceRow.__table__  # type: ignore[assignment]
DISCOVERED: Table = DiscoveredDeviceRow.__table__  # type: ignore[assignment]
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

Row = tuple[Any, ...]  # a table's columns in the order of DEVICE_COLUMNS or PLACE_COLUMNS


def sync_registry(
    sessions: sessionmaker[Session],
    registry: Registry,
    profiles: dict[str, Profile],
    *,
    previous: Registry | None = None,
) -> None:
    """Make the mirror match `registry`; registered devices leave the list of discovered ones.

    Without `previous`, against what the mirror holds, in one transaction (at start, before any
    alarm is written). With `previous` (what the mirror holds now, the service running), only the
    devices that differ between the two are written, `_CHUNK` devices per transaction: the alarm
    path shares this database, and a fire alarm must not wait behind the import of a whole hospital
    (SQLite has one writer at a time).
    """
    if previous is None:
        with sessions.begin() as s:
            s.connection(execution_options=IMMEDIATE)  # read-modify-write: take the write lock at BEGIN
            _apply(s, PLACES, PLACES.c.path, _diff(_read(s, PLACES, PLACE_COLUMNS), place_rows(registry)))
            _apply(
                s,
                DEVICES,
                DEVICES.c.id,
                _diff(_read(s, DEVICES, DEVICE_COLUMNS), device_rows(registry, profiles)),
            )
            known = s.execute(select(DISCOVERED.c.device_id)).scalars().all()
            _delete_ids(s, DISCOVERED, DISCOVERED.c.device_id, [d for d in known if d in registry.devices])
        return
    if previous.places != registry.places:
        with sessions.begin() as s:
            s.connection(execution_options=IMMEDIATE)
            _apply(s, PLACES, PLACES.c.path, _diff(_read(s, PLACES, PLACE_COLUMNS), place_rows(registry)))
    gone = sorted(previous.devices.keys() - registry.devices.keys())
    write = [
        d
        for d in registry.row_of
        if d not in previous.row_of or previous.device_key(d) != registry.device_key(d)
    ]
    for i in range(0, len(gone), _CHUNK):
        with sessions.begin() as s:
            s.connection(execution_options=IMMEDIATE)
            _delete_ids(s, DEVICES, DEVICES.c.id, gone[i : i + _CHUNK])
    for i in range(0, len(write), _CHUNK):
        chunk = write[i : i + _CHUNK]
        with sessions.begin() as s:
            s.connection(execution_options=IMMEDIATE)
            _delete_ids(s, DEVICES, DEVICES.c.id, chunk)
            _insert(s, DEVICES, DEVICE_COLUMNS, [device_row(registry, profiles, d) for d in chunk])
            _delete_ids(s, DISCOVERED, DISCOVERED.c.device_id, chunk)


def place_rows(registry: Registry) -> dict[str, Row]:
    """The `places` rows of a registry, by path."""
    f = registry.places.fields()  # column by column: no `Place` per place
    return {
        path: (path, kind.value, path.split("/", 1)[0], name, parent, department)
        for path, kind, name, parent, department in zip(
            f.path, f.kind, f.name, f.parent, f.department, strict=True
        )
    }


def device_rows(registry: Registry, profiles: dict[str, Profile]) -> dict[str, Row]:
    """The `devices` rows of a registry, by id: made column by column (a value's text and the
    profile's kind and system once per distinct value, not per device), with no `Device` made."""
    columns = registry.columns
    items = columns.values.items

    def decoded(codes: Any, convert: Any = None) -> list[Any]:
        distinct = np.unique(codes).tolist()
        table = dict(
            zip(distinct, (items[c] if convert is None else convert(items[c]) for c in distinct), strict=True)
        )
        return list(map(table.__getitem__, codes.tolist()))

    places = decoded(columns.place)
    locations = decoded(columns.place, location_of)
    profile = decoded(columns.profile)
    kind = decoded(columns.profile, lambda p: profiles[p].kind.value)
    system = decoded(columns.profile, lambda p: profiles[p].system.value)
    installed = decoded(columns.installed, lambda d: d.isoformat() if d else None)
    tags = [list(t) for t in decoded(columns.tags)]
    rows = zip(
        columns.ids,
        profile,
        kind,
        system,
        (loc.site for loc in locations),
        (loc.building for loc in locations),
        (loc.floor for loc in locations),
        (loc.zone for loc in locations),
        (loc.room for loc in locations),
        places,
        columns.names,
        decoded(registry.devices.department),
        decoded(columns.responsible),
        installed,
        tags,
        strict=True,
    )
    return {row[0]: row for row in rows}


def device_row(registry: Registry, profiles: dict[str, Profile], device_id: str) -> Row:
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


def _read(s: Session, table: Table, columns: Sequence[str]) -> dict[str, Row]:
    """What the mirror holds, by primary key (the first column)."""
    cols = [table.c[name] for name in columns]
    return {row[0]: tuple(row) for row in s.execute(select(*cols))}


def _diff(held: Mapping[str, Row], wanted: Mapping[str, Row]) -> tuple[list[str], list[Row]]:
    """(keys to delete, rows to insert): a changed row is both, the rest is left alone."""
    stale = [k for k, row in held.items() if wanted.get(k) != row]
    fresh = [row for k, row in wanted.items() if held.get(k) != row]
    return stale, fresh


def _apply(s: Session, table: Table, key: Column[str], change: tuple[list[str], list[Row]]) -> None:
    stale, fresh = change
    _delete_ids(s, table, key, stale)
    _insert(s, table, PLACE_COLUMNS if table is PLACES else DEVICE_COLUMNS, fresh)


def _insert(s: Session, table: Table, columns: Sequence[str], rows: Sequence[Row]) -> None:
    """Core executemany, `_INSERT_CHUNK` rows a statement."""
    for i in range(0, len(rows), _INSERT_CHUNK):
        s.execute(
            insert(table), [dict(zip(columns, row, strict=True)) for row in rows[i : i + _INSERT_CHUNK]]
        )


def _delete_ids(s: Session, table: Table, column: Column[str], ids: Iterable[str]) -> None:
    wanted = sorted(ids)
    for i in range(0, len(wanted), _CHUNK):
        s.execute(delete(table).where(column.in_(wanted[i : i + _CHUNK])))
