"""The registry document's schema: the place tree and the device list as written in a registry file.

Validated by pydantic where a document is small or unusual; `core.device_columns` and
`core.place_columns` read the common shape of a large one straight into columns and fall back to
these models for anything else, so their error messages stay the registry's.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

ID_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"  # no '/', '+', '#': ids are MQTT topic levels
Id = Annotated[str, Field(pattern=ID_RE)]
# Where on its floor's plan a device is, as a fraction of the plan's width or height (0 to 1, from
# the top left): the plan can be replaced by a larger scan without moving a device (docs/floor-plans.md).
PlanFraction = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PlaceKind(StrEnum):
    SITE = "site"
    BUILDING = "building"
    FLOOR = "floor"
    ZONE = "zone"
    ROOM = "room"


LEVELS: tuple[PlaceKind, ...] = tuple(PlaceKind)


class RoomSpec(_Strict):
    id: Id
    name: str
    department: str = ""
    tags: list[str] = Field(default_factory=list)


class ZoneSpec(_Strict):
    id: Id
    name: str
    department: str = ""
    rooms: list[RoomSpec] = Field(default_factory=list)


class FloorSpec(_Strict):
    id: Id
    name: str
    zones: list[ZoneSpec] = Field(default_factory=list)


class BuildingSpec(_Strict):
    id: Id
    name: str
    floors: list[FloorSpec] = Field(default_factory=list)


class SiteSpec(_Strict):
    id: Id
    name: str
    buildings: list[BuildingSpec] = Field(default_factory=list)


class Device(_Strict):
    id: Id
    profile: str
    place: str = Field(description="path of place ids, site/building/floor/zone[/room]")
    name: str = ""
    department: str = ""  # 科室; defaults to the room's or zone's department
    responsible: str = ""  # 责任人
    installed: date | None = None
    position: tuple[float, float] | None = Field(default=None, description="floor-plan x, y in metres")
    tags: list[str] = Field(default_factory=list)
    plan: tuple[PlanFraction, PlanFraction] | None = Field(
        default=None,
        description="where on its floor's plan: x, y as fractions of the plan's width and height (0 to 1, "
        "from the top left); none: not placed",
    )
    gateway: str = Field(
        default="",
        max_length=64,
        pattern=r"^[A-Za-z0-9._-]*$",
        description="the gateway, switch or panel the device reports through: devices lost together "
        "under one are one outage (detectors/liveness.py); empty: none known",
    )


class RegistryFile(_Strict):
    sites: list[SiteSpec] = Field(min_length=1)
    devices: list[Device] = Field(default_factory=list)
