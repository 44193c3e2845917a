"""The registry of places and devices, loaded from YAML.

Places form a tree site > building > floor > zone > room (DESIGN §2); a place is addressed by its
path of ids, e.g. ``sxzyy/b1/f3/z2/r305``. A device names the place it is installed in; its site,
building, floor, zone and room follow from that path.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

ID_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"  # no '/', '+', '#': ids are MQTT topic levels
Id = Annotated[str, Field(pattern=ID_RE)]


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


class RegistryFile(_Strict):
    sites: list[SiteSpec] = Field(min_length=1)
    devices: list[Device] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Place:
    path: str
    kind: PlaceKind
    id: str
    name: str
    parent: str | None
    department: str = ""

    @property
    def site(self) -> str:
        return self.path.split("/", 1)[0]


@dataclass(frozen=True, slots=True)
class Location:
    """Where a device is: the id at each level of the place tree ('' where the path stops short)."""

    site: str
    building: str
    floor: str
    zone: str
    room: str

    @property
    def zone_path(self) -> str:
        return "/".join(p for p in (self.site, self.building, self.floor, self.zone) if p)


class RegistryError(ValueError):
    """The registry file is unreadable or inconsistent; the message says where and what."""


class Registry:
    """Places and devices, with the lookups the pipeline needs."""

    def __init__(self, sites: Iterable[SiteSpec], devices: Iterable[Device]) -> None:
        self.places: dict[str, Place] = {}
        for site in sites:
            self._add_site(site)
        self.devices: dict[str, Device] = {}
        self.locations: dict[str, Location] = {}
        errors: list[str] = []
        for device in devices:
            if device.id in self.devices:
                errors.append(f"device {device.id!r} is listed twice")
                continue
            place = self.places.get(device.place)
            if place is None:
                errors.append(f"device {device.id!r}: place {device.place!r} is not in the place tree")
                continue
            if place.kind not in (PlaceKind.ZONE, PlaceKind.ROOM):
                errors.append(
                    f"device {device.id!r}: place {device.place!r} is a {place.kind}, not a zone or room"
                )
                continue
            parts = [*device.place.split("/"), ""]
            self.locations[device.id] = Location(*parts[:5])
            if not device.department:
                device = device.model_copy(update={"department": self.department_of(device.place)})
            self.devices[device.id] = device
        if errors:
            raise RegistryError(
                "; ".join(errors[:20]) + (f" (and {len(errors) - 20} more)" if len(errors) > 20 else "")
            )

    def _add(
        self, path: str, kind: PlaceKind, spec_id: str, name: str, parent: str | None, dept: str = ""
    ) -> None:
        if path in self.places:
            raise RegistryError(f"place {path!r} is defined twice")
        self.places[path] = Place(path, kind, spec_id, name, parent, dept)

    def _add_site(self, site: SiteSpec) -> None:
        self._add(site.id, PlaceKind.SITE, site.id, site.name, None)
        for b in site.buildings:
            bp = f"{site.id}/{b.id}"
            self._add(bp, PlaceKind.BUILDING, b.id, b.name, site.id)
            for f in b.floors:
                fp = f"{bp}/{f.id}"
                self._add(fp, PlaceKind.FLOOR, f.id, f.name, bp)
                for z in f.zones:
                    zp = f"{fp}/{z.id}"
                    self._add(zp, PlaceKind.ZONE, z.id, z.name, fp, z.department)
                    for r in z.rooms:
                        self._add(
                            f"{zp}/{r.id}", PlaceKind.ROOM, r.id, r.name, zp, r.department or z.department
                        )

    def department_of(self, path: str) -> str:
        place: Place | None = self.places.get(path)
        while place is not None:
            if place.department:
                return place.department
            place = self.places.get(place.parent) if place.parent else None
        return ""

    def ancestors(self, path: str) -> Iterator[Place]:
        """The place itself and every place above it, nearest first."""
        place: Place | None = self.places.get(path)
        while place is not None:
            yield place
            place = self.places.get(place.parent) if place.parent else None


# libyaml's safe loader and dumper where PyYAML was built with it: the same documents, several
# times faster, which a generated hospital of 100,000 devices needs (docs/simulators.md).
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def load_registry(path: Path) -> Registry:
    """Read a registry YAML file; every problem is reported with the file name."""
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER)
    except (OSError, yaml.YAMLError) as exc:
        raise RegistryError(f"{path}: cannot read registry: {exc}") from exc
    try:
        spec = RegistryFile.model_validate(raw)
    except ValidationError as exc:
        raise RegistryError(f"{path}: {exc}") from exc
    try:
        return Registry(spec.sites, spec.devices)
    except RegistryError as exc:
        raise RegistryError(f"{path}: {exc}") from exc


def dump_registry(sites: list[SiteSpec], devices: list[Device]) -> str:
    """The YAML text of a registry, as `load_registry` reads it."""
    data = RegistryFile(sites=sites, devices=devices).model_dump(mode="json", exclude_defaults=True)
    return yaml.dump(data, Dumper=_DUMPER, allow_unicode=True, sort_keys=False, width=120)
