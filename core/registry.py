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


@dataclass(frozen=True, slots=True)
class RegistryIssue:
    """One problem of a registry: what is wrong, and with which device (None: the place tree or the
    document as a whole), so an importer can point at the line it came from."""

    message: str
    device_id: str | None = None


class RegistryError(ValueError):
    """The registry file is unreadable or inconsistent; the message says where and what.

    `issues` lists every problem found (the message shows the first twenty).
    """

    def __init__(self, message: str, issues: list[RegistryIssue] | None = None) -> None:
        super().__init__(message)
        self.issues = issues if issues is not None else [RegistryIssue(message)]


class DuplicateDeviceError(RegistryError):
    """A device id that is registered already."""


class UnknownDeviceError(RegistryError):
    """A device id that is not registered."""


class _Shared:
    """Makes equal field values of many devices one object: profile, place, responsible person,
    tags, the set of fields given, ... repeat across a hospital's devices, and a million devices each
    holding their own copies took about a gigabyte more (docs/benchmarks.md, "Registry at scale").
    Values are only replaced by equal ones, so a device compares, dumps and copies as before."""

    _FIELDS = ("profile", "place", "department", "responsible", "installed", "gateway")

    def __init__(self) -> None:
        self._values: dict[object, object] = {}

    def share(self, device: Device) -> Device:
        values = device.__dict__
        for name in self._FIELDS:
            value = values[name]
            values[name] = self._values.setdefault(value, value)
        tags = values["tags"]
        values["tags"] = self._values.setdefault(("tags", *tags), tags)
        given = device.__pydantic_fields_set__
        # pydantic copies this set before changing it (model_copy), so one set may serve many.
        object.__setattr__(
            device, "__pydantic_fields_set__", self._values.setdefault(frozenset(given), given)
        )
        return device


class Registry:
    """Places and devices, with the lookups the pipeline needs. Treated as immutable: a change is
    a new Registry (`with_device`, `without_device`, ...), validated whole."""

    def __init__(self, sites: Iterable[SiteSpec], devices: Iterable[Device]) -> None:
        # The specs as given, for export: `devices` below fills in inherited departments.
        self.sites: list[SiteSpec] = list(sites)
        self.specs: dict[str, Device] = {}
        self.places: dict[str, Place] = {}
        for site in self.sites:
            self._add_site(site)
        self.devices: dict[str, Device] = {}
        self.locations: dict[str, Location] = {}
        issues: list[RegistryIssue] = []
        # Per place, not per device: devices share rooms, and a million devices would otherwise
        # each carry a Location of five fresh strings and walk the tree for their department.
        location_of: dict[str, Location] = {}
        department_of: dict[str, str] = {}
        shared = _Shared()
        for device in devices:
            shared.share(device)
            if device.id in self.devices:
                issues.append(RegistryIssue(f"device {device.id!r} is listed twice", device.id))
                continue
            place = self.places.get(device.place)
            if place is None:
                issues.append(
                    RegistryIssue(
                        f"device {device.id!r}: place {device.place!r} is not in the place tree", device.id
                    )
                )
                continue
            if place.kind not in (PlaceKind.ZONE, PlaceKind.ROOM):
                issues.append(
                    RegistryIssue(
                        f"device {device.id!r}: place {device.place!r} is a {place.kind}, not a zone or room",
                        device.id,
                    )
                )
                continue
            location = location_of.get(device.place)
            if location is None:
                parts = [*device.place.split("/"), ""]
                location = location_of[device.place] = Location(*parts[:5])
            self.locations[device.id] = location
            self.specs[device.id] = device
            if not device.department:
                department = department_of.get(device.place)
                if department is None:
                    department = department_of[device.place] = self.department_of(device.place)
                if department:
                    device = shared.share(device.model_copy(update={"department": department}))
            self.devices[device.id] = device
        if issues:
            raise RegistryError(_joined([i.message for i in issues]), issues)

    def with_devices(self, devices: Iterable[Device]) -> Registry:
        """The same place tree with another device list (validated like any registry)."""
        return Registry(self.sites, devices)

    def with_device(self, device: Device) -> Registry:
        """This registry and one more device, listed last."""
        if device.id in self.specs:
            raise DuplicateDeviceError(f"device {device.id!r} is registered already")
        return self.with_devices([*self.specs.values(), device])

    def replacing_device(self, device: Device) -> Registry:
        """This registry with the device of the same id specified anew, in its place in the list."""
        if device.id not in self.specs:
            raise UnknownDeviceError(f"device {device.id!r} is not registered")
        return self.with_devices(device if d.id == device.id else d for d in self.specs.values())

    def without_device(self, device_id: str) -> Registry:
        if device_id not in self.specs:
            raise UnknownDeviceError(f"device {device_id!r} is not registered")
        return self.with_devices(d for d in self.specs.values() if d.id != device_id)

    def to_yaml(self) -> str:
        """This registry as `load_registry` reads it (devices as specified, in order)."""
        return dump_registry(self.sites, list(self.specs.values()))

    def to_json(self) -> str:
        """The same document as JSON, which `load_registry` reads from a `.json` file."""
        return dump_registry_json(self.sites, list(self.specs.values()))

    def to_text(self, path: Path) -> str:
        """The document for a registry file: JSON for a `.json` file, else YAML."""
        return self.to_json() if is_json(path) else self.to_yaml()

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
YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
YAML_DUMPER: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _joined(errors: list[str]) -> str:
    return "; ".join(errors[:20]) + (f" (and {len(errors) - 20} more)" if len(errors) > 20 else "")


def is_json(path: Path) -> bool:
    return path.suffix.lower() == ".json"


def load_registry(path: Path) -> Registry:
    """Read a registry file, YAML or (named `.json`) the same document as JSON; every problem is
    reported with the file name.

    JSON is for large registries: PyYAML's loader builds every node in Python even with libyaml's
    parser (about 30 s for 100,000 devices), while pydantic parses and validates JSON in one pass
    in compiled code (under 2 s; docs/benchmarks.md, "Registry at scale").
    """
    try:
        if is_json(path):
            spec = RegistryFile.model_validate_json(path.read_bytes())
        else:
            raw = yaml.load(path.read_text(encoding="utf-8"), Loader=YAML_LOADER)
            spec = RegistryFile.model_validate(raw)
    except (OSError, yaml.YAMLError) as exc:
        raise RegistryError(f"{path}: cannot read registry: {exc}") from exc
    except ValidationError as exc:
        raise RegistryError(f"{path}: {exc}") from exc
    try:
        return Registry(spec.sites, spec.devices)
    except RegistryError as exc:
        raise RegistryError(f"{path}: {exc}", exc.issues) from exc


def write_registry_text(path: Path, registry: Registry) -> None:
    """Write `registry` to `path` in the format its name says (`.json`: JSON, else YAML)."""
    path.write_text(registry.to_text(path), encoding="utf-8")


def dump_registry_json(sites: list[SiteSpec], devices: list[Device]) -> str:
    """The JSON text of a registry, as `load_registry` reads it from a `.json` file."""
    return RegistryFile(sites=sites, devices=devices).model_dump_json(exclude_defaults=True) + "\n"


def dump_registry(sites: list[SiteSpec], devices: list[Device]) -> str:
    """The YAML text of a registry, as `load_registry` reads it."""
    data = RegistryFile(sites=sites, devices=devices).model_dump(mode="json", exclude_defaults=True)
    return yaml.dump(data, Dumper=YAML_DUMPER, allow_unicode=True, sort_keys=False, width=120)
