"""Mirror the registry (places and devices) into the state store, for queries and dashboards."""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from core.registry import Registry
from device_profiles.schema import Profile
from storage.db import IMMEDIATE
from storage.models import DeviceRow, PlaceRow


def sync_registry(sessions: sessionmaker[Session], registry: Registry, profiles: dict[str, Profile]) -> None:
    with sessions.begin() as s:
        s.connection(execution_options=IMMEDIATE)  # read-modify-write: take the write lock at BEGIN
        s.execute(delete(PlaceRow))
        s.execute(delete(DeviceRow))
        s.add_all(
            PlaceRow(
                path=p.path,
                kind=p.kind.value,
                site=p.site,
                name=p.name,
                parent=p.parent,
                department=p.department,
            )
            for p in registry.places.values()
        )
        for device in registry.devices.values():
            loc = registry.locations[device.id]
            profile = profiles[device.profile]
            s.add(
                DeviceRow(
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
            )
