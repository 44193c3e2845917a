"""Input and output models of device registration and registry import/export (api/routes/devices.py)."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict, Field

from api.schemas import DeviceOut
from core.registry import Device, Id
from core.registry_io import RegistryChange


class DeviceFields(BaseModel):
    """A device's registration, but its id (which the path names on a replace)."""

    model_config = ConfigDict(extra="forbid")
    profile: str = Field(min_length=1, max_length=64, description="device profile id, e.g. `smoke-photo`")
    place: str = Field(
        min_length=1,
        max_length=400,
        description="zone or room path of place ids, site/building/floor/zone[/room]",
        examples=["sxzyy/b1/f3/z2/r305"],
    )
    name: str = Field(default="", max_length=200)
    department: str = Field(default="", max_length=100, description="科室; empty: the room's or zone's")
    responsible: str = Field(default="", max_length=100, description="责任人")
    installed: date | None = None
    position: tuple[float, float] | None = Field(default=None, description="floor-plan x, y in metres")
    tags: list[str] = Field(default_factory=list, max_length=50)
    gateway: str = Field(
        default="",
        max_length=64,
        pattern=r"^[A-Za-z0-9._-]*$",
        description="the gateway, switch or panel it reports through: devices lost together under one "
        "are one outage",
    )

    def device(self, device_id: str) -> Device:
        return Device(**{**self.model_dump(), "id": device_id})


class DeviceIn(DeviceFields):
    """A device to register (POST /devices): a discovered device is registered under its id."""

    id: Id = Field(description="the device id of its MQTT topics, fw/v1/{site}/{id}/...")


class RegistryChangeOut(BaseModel):
    """What a registry change did (or, with dry_run, would do)."""

    applied: bool = Field(description="false for a dry run: nothing was changed")
    added: list[str] = Field(description="device ids registered by the change")
    removed: list[str] = Field(description="device ids no longer registered (their history and alarms stay)")
    changed: list[str] = Field(description="device ids whose registration changed")
    places_changed: bool = Field(description="the place tree differs")
    persisted: bool = Field(description="written to the registry file, so a restart keeps it")
    note: str = Field(description="where the registry is kept, or why it is not written to a file")

    @classmethod
    def of(cls, change: RegistryChange) -> RegistryChangeOut:
        d = change.diff
        return cls(
            applied=change.applied,
            added=d.added,
            removed=d.removed,
            changed=d.changed,
            places_changed=d.places_changed,
            persisted=change.persisted_to is not None,
            note=change.note,
        )


class DeviceChangeOut(BaseModel):
    """A device registered or replaced, as now listed, and the registry change it made."""

    device: DeviceOut
    change: RegistryChangeOut
