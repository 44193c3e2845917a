"""Mirror the registry (places and devices) into the state store, for queries and dashboards."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from core.registry import Registry
from device_profiles.schema import Profile
from storage.db import IMMEDIATE
from storage.models import DeviceRow, DiscoveredDeviceRow, PlaceRow

_CHUNK = 500  # ids per IN (...) list: well inside every driver's parameter limit


def sync_registry(
    sessions: sessionmaker[Session],
    registry: Registry,
    profiles: dict[str, Profile],
    *,
    previous: Registry | None = None,
) -> None:
    """Make the mirror match `registry`; registered devices leave the list of discovered ones.

    Without `previous`, in one transaction (at start, before any alarm is written). With `previous`
    (what the mirror holds now, the service running), only what differs is written, `_CHUNK`
    devices per transaction: the alarm path shares this database, and a fire alarm must not wait
    behind the import of a whole hospital (SQLite has one writer at a time).
    """
    if previous is None:
        with sessions.begin() as s:
            s.connection(execution_options=IMMEDIATE)  # read-modify-write: take the write lock at BEGIN
            s.execute(delete(PlaceRow))
            s.add_all(_place_rows(registry))
            s.execute(delete(DeviceRow))
            s.add_all(_row(registry, profiles, d) for d in registry.devices)
            _delete_ids(s, DiscoveredDeviceRow, DiscoveredDeviceRow.device_id, registry.devices)
        return
    if previous.places != registry.places:
        with sessions.begin() as s:
            s.connection(execution_options=IMMEDIATE)
            s.execute(delete(PlaceRow))
            s.add_all(_place_rows(registry))
    gone = sorted(previous.devices.keys() - registry.devices.keys())
    write = [
        d
        for d, device in registry.devices.items()
        if previous.devices.get(d) != device or previous.locations.get(d) != registry.locations[d]
    ]
    for i in range(0, len(gone), _CHUNK):
        with sessions.begin() as s:
            s.connection(execution_options=IMMEDIATE)
            _delete_ids(s, DeviceRow, DeviceRow.id, gone[i : i + _CHUNK])
    for i in range(0, len(write), _CHUNK):
        chunk = write[i : i + _CHUNK]
        with sessions.begin() as s:
            s.connection(execution_options=IMMEDIATE)
            _delete_ids(s, DeviceRow, DeviceRow.id, chunk)
            s.add_all(_row(registry, profiles, d) for d in chunk)
            _delete_ids(s, DiscoveredDeviceRow, DiscoveredDeviceRow.device_id, chunk)


def _place_rows(registry: Registry) -> list[PlaceRow]:
    return [
        PlaceRow(
            path=p.path,
            kind=p.kind.value,
            site=p.site,
            name=p.name,
            parent=p.parent,
            department=p.department,
        )
        for p in registry.places.values()
    ]


def _delete_ids(
    s: Session,
    model: type[DeviceRow | DiscoveredDeviceRow],
    column: InstrumentedAttribute[str],
    ids: Iterable[str],
) -> None:
    wanted = sorted(ids)
    for i in range(0, len(wanted), _CHUNK):
        s.execute(delete(model).where(column.in_(wanted[i : i + _CHUNK])))


def _row(registry: Registry, profiles: dict[str, Profile], device_id: str) -> DeviceRow:
    device = registry.devices[device_id]
    loc = registry.locations[device_id]
    profile = profiles[device.profile]
    return DeviceRow(
        id=device.id,
        profile=device.profile,
        kind=profile.kind.value,
        system=profile.system.value,
        site=loc.site,
        building=loc.building,
        floor=loc.floor,
        zone=loc.zone,
        room=loc.room,
        place=device.place,
        name=device.name,
        department=device.department,
        responsible=device.responsible,
        installed=device.installed.isoformat() if device.installed else None,
        tags=list(device.tags),
    )
