"""The registry of places and devices, loaded from YAML or JSON.

Places form a tree site > building > floor > zone > room (DESIGN §2); a place is addressed by its
path of ids, e.g. ``sxzyy/b1/f3/z2/r305``. A device names the place it is installed in; its site,
building, floor, zone and room follow from that path.

Devices are held as columns (`core.device_columns`); `Registry.devices`, `.specs` and `.locations`
are read-only mappings by device id that make a `Device` or `Location` when one is looked up.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, KeysView, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import orjson
import yaml
from pydantic import BaseModel, ValidationError

from core.device_columns import DeviceColumns, row_values
from core.registry_spec import ID_RE as ID_RE
from core.registry_spec import LEVELS as LEVELS
from core.registry_spec import BuildingSpec as BuildingSpec
from core.registry_spec import Device as Device
from core.registry_spec import FloorSpec as FloorSpec
from core.registry_spec import Id as Id
from core.registry_spec import PlaceKind as PlaceKind
from core.registry_spec import RegistryFile as RegistryFile
from core.registry_spec import RoomSpec as RoomSpec
from core.registry_spec import SiteSpec as SiteSpec
from core.registry_spec import ZoneSpec as ZoneSpec


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


def location_of(place: str) -> Location:
    """The location of a device in `place` (made when asked for: a hospital has as many rooms as
    devices, and a `Location` kept per room cost a million-device registry about 300 MB)."""
    return Location(*[*place.split("/"), ""][:5])


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


V = TypeVar("V")


class ByDeviceId(Mapping[str, V]):
    """A read-only mapping by device id over the registry's rows; `at(row)` makes the value."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def at(self, row: int) -> V:
        raise NotImplementedError

    def __getitem__(self, device_id: str) -> V:
        return self.at(self._registry.row_of[device_id])

    def __contains__(self, device_id: object) -> bool:
        return device_id in self._registry.row_of

    def __iter__(self) -> Iterator[str]:
        return iter(self._registry.row_of)

    def __len__(self) -> int:
        return len(self._registry.row_of)

    def keys(self) -> KeysView[str]:
        return self._registry.row_of.keys()


class DeviceView(ByDeviceId[Device]):
    """Devices by id, made from the registry's columns when looked up."""

    def __init__(self, registry: Registry, department: npt.NDArray[np.int32]) -> None:
        super().__init__(registry)
        self.department = department  # per row, a code of the registry's value table

    def at(self, row: int) -> Device:
        return self._registry.columns.device(row, int(self.department[row]))


class LocationView(ByDeviceId[Location]):
    """Locations by device id, one `Location` per place shared by the devices in it."""

    def at(self, row: int) -> Location:
        return location_of(self._registry.columns.values.items[self._registry.columns.place[row]])


class Registry:
    """Places and devices, with the lookups the pipeline needs. Treated as immutable: a change is
    a new Registry (`with_device`, `without_device`, ...), validated whole.

    `specs` are the devices as given, in the order given; `devices` the same with departments
    inherited from the room or zone filled in; `locations` where each is. `columns` holds them,
    `row_of` is each device's row there."""

    def __init__(self, sites: Iterable[SiteSpec], devices: Iterable[Device] | DeviceColumns) -> None:
        # The specs as given, for export: `devices` below fills in inherited departments.
        self.sites: list[SiteSpec] = list(sites)
        self.places: dict[str, Place] = {}
        for site in self.sites:
            self._add_site(site)
        columns = devices if isinstance(devices, DeviceColumns) else DeviceColumns.from_devices(devices)
        self.columns = columns
        self.row_of: dict[str, int] = dict(zip(columns.ids, range(len(columns)), strict=True))
        # Per place, not per device: devices share rooms (codes of `columns.values`).
        items = columns.values.items
        place_codes = np.unique(columns.place).tolist()
        kinds = {code: self.places[items[code]].kind for code in place_codes if items[code] in self.places}
        if len(self.row_of) != len(columns) or any(
            kinds.get(code) not in (PlaceKind.ZONE, PlaceKind.ROOM) for code in place_codes
        ):
            issues = self._issues()
            raise RegistryError(_joined([i.message for i in issues]), issues)
        inherited = {code: columns.values.code(self.department_of(items[code])) for code in place_codes}
        department = columns.department.copy()
        unset = np.array([v == "" for v in items], dtype=np.bool_)[department]
        if unset.any():
            lookup = np.zeros(len(items), dtype=np.int32)
            lookup[list(inherited)] = list(inherited.values())
            department[unset] = lookup[columns.place[unset]]
        self.specs: DeviceView = DeviceView(self, columns.department)
        self.devices: DeviceView = DeviceView(self, department)
        self.locations: LocationView = LocationView(self)

    def device_key(self, device_id: str) -> tuple[object, ...]:
        """A device's fields as the service sees them (department filled in), as a tuple: equal for
        two registries exactly when their `devices[device_id]` (and so locations) are equal, without
        making either `Device`."""
        row = self.row_of[device_id]
        return row_values(self.columns, row, int(self.devices.department[row]))

    def _issues(self) -> list[RegistryIssue]:
        """Every problem of the device list, in its order (the first device of an id counts)."""
        issues: list[RegistryIssue] = []
        seen: set[str] = set()
        columns = self.columns
        for row, device_id in enumerate(columns.ids):
            place_path = columns.values.items[columns.place[row]]
            if device_id in seen:
                issues.append(RegistryIssue(f"device {device_id!r} is listed twice", device_id))
                continue
            place = self.places.get(place_path)
            if place is None:
                issues.append(
                    RegistryIssue(
                        f"device {device_id!r}: place {place_path!r} is not in the place tree", device_id
                    )
                )
                continue
            if place.kind not in (PlaceKind.ZONE, PlaceKind.ROOM):
                issues.append(
                    RegistryIssue(
                        f"device {device_id!r}: place {place_path!r} is a {place.kind}, not a zone or room",
                        device_id,
                    )
                )
                continue
            seen.add(device_id)
        return issues

    def with_devices(self, devices: Iterable[Device]) -> Registry:
        """The same place tree with another device list (validated like any registry)."""
        return Registry(self.sites, devices)

    def with_device(self, device: Device) -> Registry:
        """This registry and one more device, listed last."""
        if device.id in self.row_of:
            raise DuplicateDeviceError(f"device {device.id!r} is registered already")
        return Registry(self.sites, self.columns.extended([device]))

    def replacing_device(self, device: Device) -> Registry:
        """This registry with the device of the same id specified anew, in its place in the list."""
        row = self.row_of.get(device.id)
        if row is None:
            raise UnknownDeviceError(f"device {device.id!r} is not registered")
        n = len(self.columns)
        extended = self.columns.extended([device])
        order = np.arange(n, dtype=np.intp)
        order[row] = n  # the new row in the old one's place
        return Registry(self.sites, extended.take(order))

    def without_device(self, device_id: str) -> Registry:
        row = self.row_of.get(device_id)
        if row is None:
            raise UnknownDeviceError(f"device {device_id!r} is not registered")
        keep = np.arange(len(self.columns), dtype=np.intp)
        return Registry(self.sites, self.columns.take(np.delete(keep, row)))

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
    parser (about 30 s for 100,000 devices), while orjson parses JSON in compiled code. The devices
    go straight into columns (`DeviceColumns.from_document`, each column checked in bulk); a
    document it does not take is validated by pydantic, whose messages name the device and field
    (docs/benchmarks.md, "Registry at scale").
    """
    try:
        sites, devices = _read_document(path)
    except (OSError, yaml.YAMLError) as exc:
        raise RegistryError(f"{path}: cannot read registry: {exc}") from exc
    except ValidationError as exc:
        raise RegistryError(f"{path}: {exc}") from exc
    _share_values(sites)
    try:
        return Registry(sites, devices)
    except RegistryError as exc:
        raise RegistryError(f"{path}: {exc}", exc.issues) from exc


def _share_values(sites: list[SiteSpec]) -> None:
    """Make equal values of the place tree one object: a hospital has a room per device or so, and
    each room's model held its own set of given fields and empty tag list (about 270 bytes a room).
    Values are only replaced by equal ones, so specs compare and dump as before."""
    given_sets: dict[frozenset[str], set[str]] = {}
    no_tags: list[str] = []

    def share(spec: BaseModel) -> None:
        given = spec.__pydantic_fields_set__
        # pydantic copies this set before changing it (model_copy), so one set may serve many.
        object.__setattr__(spec, "__pydantic_fields_set__", given_sets.setdefault(frozenset(given), given))

    for site in sites:
        share(site)
        for building in site.buildings:
            share(building)
            for floor in building.floors:
                share(floor)
                for zone in floor.zones:
                    share(zone)
                    for room in zone.rooms:
                        share(room)
                        if not room.tags:
                            room.__dict__["tags"] = no_tags


def _read_document(path: Path) -> tuple[list[SiteSpec], DeviceColumns | list[Device]]:
    """The place tree and the devices of a registry file (the parsed document is dropped here,
    before the registry is built from it)."""
    if is_json(path):
        data = path.read_bytes()
        try:
            raw: object = orjson.loads(data)
        except orjson.JSONDecodeError:
            raw = None  # pydantic reports where, as it always has
        read = _columns_of(raw)
        if read is not None:
            return read
        spec = RegistryFile.model_validate_json(data)
    else:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=YAML_LOADER)
        read = _columns_of(raw)
        if read is not None:
            return read
        spec = RegistryFile.model_validate(raw)
    return spec.sites, spec.devices


def _columns_of(raw: object) -> tuple[list[SiteSpec], DeviceColumns] | None:
    """A parsed registry document as sites and device columns; None if it is not in the form the
    columns take (pydantic then validates it, and reports what is wrong)."""
    if type(raw) is not dict or "sites" not in raw or not raw.keys() <= {"sites", "devices"}:
        return None
    columns = DeviceColumns.from_document(raw.get("devices", []))
    if columns is None:
        return None
    try:
        sites = RegistryFile.model_validate({"sites": raw["sites"]}).sites
    except ValidationError:
        return None
    return sites, columns


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
