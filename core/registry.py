"""The registry of places and devices, loaded from YAML or JSON.

Places form a tree site > building > floor > zone > room (DESIGN §2); a place is addressed by its
path of ids, e.g. ``sxzyy/b1/f3/z2/r305``. A device names the place it is installed in; its site,
building, floor, zone and room follow from that path.

Devices are held as columns (`core.device_columns`); `Registry.devices`, `.specs` and `.locations`
are read-only mappings by device id that make a `Device` or `Location` when one is looked up. The
place tree is held as columns too (`core.place_columns`): `Registry.places` is a read-only mapping
by path that makes a `Place` when one is looked up, `Registry.sites` the `SiteSpec`s when asked
for, and the registry is exported from the columns.
"""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar, overload

import numpy as np
import numpy.typing as npt
import orjson
import yaml
from pydantic import ValidationError

from core.device_columns import DeviceColumns, Values, numbered, row_values
from core.place_columns import ZONE, PlaceColumns
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
T = TypeVar("T")


class ByRow(Mapping[str, V]):
    """A read-only mapping over a table's rows by key (`row_of`); `at(row)` makes the value, so
    nothing is held per key but the row number."""

    def __init__(self, row_of: dict[str, int]) -> None:
        self._row_of = row_of

    def at(self, row: int) -> V:
        raise NotImplementedError

    def __getitem__(self, key: str) -> V:
        return self.at(self._row_of[key])

    def __contains__(self, key: object) -> bool:
        return key in self._row_of

    def __iter__(self) -> Iterator[str]:
        return iter(self._row_of)

    def __len__(self) -> int:
        return len(self._row_of)

    def keys(self) -> KeysView[str]:
        return self._row_of.keys()

    @overload
    def get(self, key: str, /) -> V | None: ...

    @overload
    def get(self, key: str, /, default: V | T) -> V | T: ...

    def get(self, key: str, /, default: object = None) -> object:
        """Without raising and catching a KeyError for a key not there (an alarm's label reads its
        place and the places above it)."""
        row = self._row_of.get(key)
        return default if row is None else self.at(row)


class ByDeviceId(ByRow[V]):
    """A read-only mapping by device id over the registry's rows."""

    def __init__(self, registry: Registry) -> None:
        super().__init__(registry.row_of)
        self._registry = registry


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


class PlaceFields(NamedTuple):
    """The fields of many places, a list per `Place` field."""

    path: list[str]
    kind: list[PlaceKind]
    id: list[str]
    name: list[str]
    parent: list[str | None]
    department: list[str]


class PlaceView(ByRow[Place]):
    """Places by path, made from the place tree's columns when looked up (in walk order: a site,
    then everything in it, then the next site)."""

    def __init__(self, tree: PlaceColumns) -> None:
        super().__init__(tree.row_of)
        self._tree = tree

    def at(self, row: int) -> Place:
        tree = self._tree
        v = tree.values.items
        up = int(tree.parent[row])
        return Place(
            tree.paths[row],
            tree.kind(row),
            v[tree.id[row]],
            v[tree.name[row]],
            tree.paths[up] if up >= 0 else None,
            v[tree.in_effect[row]],
        )

    def values(self) -> ValuesView[Place]:
        return _PlaceValues(self)

    def items(self) -> ItemsView[str, Place]:
        return _PlaceItems(self)

    def all(self) -> Iterator[Place]:
        """Every place, in walk order, made from `fields`."""
        return map(Place, *self.fields())

    def fields(self) -> PlaceFields:
        """Every place's fields, a list per field, in walk order (the order of `self`): for a
        reader of every place (the mirror's rows, the index's names) without a `Place` each, which
        would cost a million-place tree seconds."""
        tree = self._tree
        v = tree.values.items
        paths = tree.paths
        return PlaceFields(
            paths,
            [LEVELS[level] for level in tree.level.tolist()],
            [v[c] for c in tree.id.tolist()],
            [v[c] for c in tree.name.tolist()],
            [paths[up] if up >= 0 else None for up in tree.parent.tolist()],
            [v[c] for c in tree.in_effect.tolist()],
        )

    def __eq__(self, other: object) -> bool:
        """Equal to a mapping of the same places; to another registry's places without making
        any (registries edited from one another share their tree)."""
        if isinstance(other, PlaceView):
            return other._tree is self._tree or (
                len(other) == len(self) and other._fields() == self._fields()
            )
        return super().__eq__(other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None  # type: ignore[assignment]

    def _fields(self) -> list[tuple[Any, ...]]:
        """Every place's fields, in path order."""
        return sorted(zip(*self.fields(), strict=True))


class _PlaceValues(ValuesView[Place]):
    _mapping: PlaceView

    def __iter__(self) -> Iterator[Place]:
        return self._mapping.all()


class _PlaceItems(ItemsView[str, Place]):
    _mapping: PlaceView

    def __iter__(self) -> Iterator[tuple[str, Place]]:
        return ((place.path, place) for place in self._mapping.all())


class PlaceNames(ByRow[str]):
    """Place names by path, read from the place tree's columns (no `Place` made)."""

    def __init__(self, tree: PlaceColumns) -> None:
        super().__init__(tree.row_of)
        self._tree = tree

    def at(self, row: int) -> str:
        return str(self._tree.values.items[self._tree.name[row]])


class Registry:
    """Places and devices, with the lookups the pipeline needs. Treated as immutable: a change is
    a new Registry (`with_device`, `without_device`, ...), validated whole.

    `specs` are the devices as given, in the order given; `devices` the same with departments
    inherited from the room or zone filled in; `locations` where each is. `columns` holds them,
    `row_of` is each device's row there. `places` are the places by path, `place_names` their
    names, `sites` the tree as specified; `tree` holds them."""

    def __init__(
        self, sites: Iterable[SiteSpec] | PlaceColumns, devices: Iterable[Device] | DeviceColumns
    ) -> None:
        tree = sites if isinstance(sites, PlaceColumns) else PlaceColumns.from_sites(sites)
        duplicate = tree.duplicate()
        if duplicate is not None:
            raise RegistryError(f"place {duplicate!r} is defined twice")
        self.tree = tree
        self.places: PlaceView = PlaceView(tree)
        self.place_names: PlaceNames = PlaceNames(tree)
        columns = devices if isinstance(devices, DeviceColumns) else DeviceColumns.from_devices(devices)
        self.columns = columns
        self.row_of: dict[str, int] = numbered(columns.ids)
        # Per place, not per device: devices share rooms (codes of `columns.values`).
        items = columns.values.items
        place_codes = np.unique(columns.place)
        place_rows = np.fromiter(
            (tree.row_of.get(items[code], -1) for code in place_codes.tolist()), np.int64, len(place_codes)
        )
        known = place_rows >= 0
        if len(self.row_of) != len(columns) or not known.all() or (tree.level[place_rows] < ZONE).any():
            issues = self._issues()
            raise RegistryError(_joined([i.message for i in issues]), issues)
        department = columns.department.copy()
        unset = np.array([v == "" for v in items], dtype=np.bool_)[department]
        if unset.any():
            # The department in effect at each place, coded in the devices' table.
            places = tree.values.items
            lookup = np.zeros(len(items), dtype=np.int32)
            in_effect = tree.in_effect[place_rows].tolist()
            lookup[place_codes] = columns.values.codes_of([places[c] for c in in_effect])
            department[unset] = lookup[columns.place[unset]]
        self.specs: DeviceView = DeviceView(self, columns.department)
        self.devices: DeviceView = DeviceView(self, department)
        self.locations: LocationView = LocationView(self)

    @property
    def sites(self) -> list[SiteSpec]:
        """The place tree as specified, made from its columns when asked for."""
        return self.tree.sites()

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
        for device_row, device_id in enumerate(columns.ids):
            place_path = columns.values.items[columns.place[device_row]]
            if device_id in seen:
                issues.append(RegistryIssue(f"device {device_id!r} is listed twice", device_id))
                continue
            row = self.tree.row_of.get(place_path)
            if row is None:
                issues.append(
                    RegistryIssue(
                        f"device {device_id!r}: place {place_path!r} is not in the place tree", device_id
                    )
                )
                continue
            if self.tree.level[row] < ZONE:
                issues.append(
                    RegistryIssue(
                        f"device {device_id!r}: place {place_path!r} is a {self.tree.kind(row)}, "
                        "not a zone or room",
                        device_id,
                    )
                )
                continue
            seen.add(device_id)
        return issues

    def with_devices(self, devices: Iterable[Device]) -> Registry:
        """The same place tree with another device list (validated like any registry)."""
        return Registry(self.tree, devices)

    def with_device(self, device: Device) -> Registry:
        """This registry and one more device, listed last."""
        if device.id in self.row_of:
            raise DuplicateDeviceError(f"device {device.id!r} is registered already")
        return Registry(self.tree, self.columns.extended([device]))

    def replacing_device(self, device: Device) -> Registry:
        """This registry with the device of the same id specified anew, in its place in the list."""
        row = self.row_of.get(device.id)
        if row is None:
            raise UnknownDeviceError(f"device {device.id!r} is not registered")
        n = len(self.columns)
        extended = self.columns.extended([device])
        order = np.arange(n, dtype=np.intp)
        order[row] = n  # the new row in the old one's place
        return Registry(self.tree, extended.take(order))

    def without_device(self, device_id: str) -> Registry:
        row = self.row_of.get(device_id)
        if row is None:
            raise UnknownDeviceError(f"device {device_id!r} is not registered")
        keep = np.arange(len(self.columns), dtype=np.intp)
        return Registry(self.tree, self.columns.take(np.delete(keep, row)))

    def to_yaml(self) -> str:
        """This registry as `load_registry` reads it (devices as specified, in order): the text
        `dump_registry` gives, dumped from the columns without a model per place or device."""
        return _yaml_text(self.tree.document(), self.columns)

    def to_json(self) -> str:
        """The same document as JSON, which `load_registry` reads from a `.json` file: the text
        `dump_registry_json` gives, dumped from the columns."""
        return _json_text(self.tree.document(), self.columns)

    def to_text(self, path: Path) -> str:
        """The document for a registry file: JSON for a `.json` file, else YAML."""
        return self.to_json() if is_json(path) else self.to_yaml()

    def department_of(self, path: str) -> str:
        """The department in effect at a place: a room's own, else its zone's ('' above zones, or
        for a path not in the tree)."""
        row = self.tree.row_of.get(path)
        return "" if row is None else str(self.tree.values.items[self.tree.in_effect[row]])

    def ancestors(self, path: str) -> Iterator[Place]:
        """The place itself and every place above it, nearest first."""
        row = self.tree.row_of.get(path, -1)
        while row >= 0:
            yield self.places.at(row)
            row = int(self.tree.parent[row])


# libyaml's safe loader and dumper where PyYAML was built with it: the same documents, several
# times faster, which a generated hospital of 100,000 devices needs (docs/simulators.md).
YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
YAML_DUMPER: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _joined(errors: list[str]) -> str:
    return "; ".join(errors[:20]) + (f" (and {len(errors) - 20} more)" if len(errors) > 20 else "")


_DUMP_CHUNK = 20_000  # devices dumped at a time


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
    try:
        return Registry(sites, devices)
    except RegistryError as exc:
        raise RegistryError(f"{path}: {exc}", exc.issues) from exc


def registry_from_json(data: bytes) -> Registry:
    """A registry from the JSON document `Registry.to_json` gives (a cluster's shared copy,
    storage/shared_registry.py); RegistryError if it is not one."""
    try:
        raw: object = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise RegistryError(f"not a registry document: {exc}") from exc
    read = _columns_of(raw)
    if read is not None:
        return Registry(*read)
    try:
        spec = RegistryFile.model_validate_json(data)
    except ValidationError as exc:
        raise RegistryError(str(exc)) from exc
    return Registry(spec.sites, spec.devices)


def _read_document(
    path: Path,
) -> tuple[PlaceColumns | list[SiteSpec], DeviceColumns | list[Device]]:
    """The place tree and the devices of a registry file (the parsed document is dropped here,
    before the registry is built from it)."""
    if is_json(path):
        data = path.read_bytes()
        try:
            raw: object = orjson.loads(data)
        except orjson.JSONDecodeError:
            raw = None  # pydantic reports where, as it always has
    else:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=YAML_LOADER)
    read = _columns_of(raw)
    if read is not None:
        del raw
        blob, tree, columns = _packed(*read)
        del read  # the last of the parsed document: its small objects are freed before unpacking
        return _unpacked(blob, tree, columns)
    spec = RegistryFile.model_validate_json(data) if is_json(path) else RegistryFile.model_validate(raw)
    return spec.sites, spec.devices


def _packed(tree: PlaceColumns, columns: DeviceColumns) -> tuple[bytes, PlaceColumns, DeviceColumns]:
    """The columns' Python objects (ids, names, paths, value tables) pickled, and the columns
    without them (their numpy arrays only), for `_unpacked` to put together again.

    Why: the strings the columns keep were made by the parse, in between the millions of small
    objects of the parsed document, which are freed once it is dropped. Every memory arena still
    holding one kept string stays allocated, half empty: the registry's resident memory was twice
    what it held (decision 0010). Unpickled after the document is gone, the same values are made
    again side by side, and the document's arenas are returned whole.

    A device's place is the same text as the tree's path: one string serves both."""
    path_of = dict(zip(tree.paths, tree.paths, strict=False))
    device_values = [path_of.get(v, v) if type(v) is str else v for v in columns.values.items]
    blob = pickle.dumps(
        (tree.paths, tree.values.items, columns.ids, columns.names, device_values),
        protocol=pickle.HIGHEST_PROTOCOL,
    )
    hollow_tree = dataclasses.replace(tree, values=Values(), paths=[], row_of={})
    hollow_columns = dataclasses.replace(columns, values=Values(), ids=[], names=[])
    return blob, hollow_tree, hollow_columns


def _unpacked(blob: bytes, tree: PlaceColumns, columns: DeviceColumns) -> tuple[PlaceColumns, DeviceColumns]:
    """The columns `_packed` took apart."""
    paths, place_values, ids, names, device_values = pickle.loads(blob)  # our own bytes, from `_packed`
    return (
        dataclasses.replace(
            tree,
            values=Values(place_values),
            paths=paths,
            row_of=numbered(paths),
        ),
        dataclasses.replace(columns, values=Values(device_values), ids=ids, names=names),
    )


def _columns_of(raw: object) -> tuple[PlaceColumns, DeviceColumns] | None:
    """A parsed registry document as place and device columns; None if it is not in the form the
    columns take (pydantic then validates it, and reports what is wrong)."""
    if type(raw) is not dict or "sites" not in raw or not raw.keys() <= {"sites", "devices"}:
        return None
    if not raw["sites"]:  # at least one site (`RegistryFile`): pydantic says so
        return None
    tree = PlaceColumns.from_document(raw["sites"])
    if tree is None:
        return None
    columns = DeviceColumns.from_document(raw.get("devices", []))
    if columns is None:
        return None
    return tree, columns


def write_registry_text(path: Path, registry: Registry) -> None:
    """Write `registry` to `path` in the format its name says (`.json`: JSON, else YAML)."""
    path.write_text(registry.to_text(path), encoding="utf-8")


def dump_registry_json(sites: list[SiteSpec], devices: list[Device]) -> str:
    """The JSON text of a registry, as `load_registry` reads it from a `.json` file."""
    return RegistryFile(sites=sites, devices=devices).model_dump_json(exclude_defaults=True) + "\n"


def _json_text(sites: list[dict[str, Any]], devices: DeviceColumns) -> str:
    """`dump_registry_json`'s text of a registry document given as the plain values pydantic dumps,
    the devices dumped a chunk of rows at a time (a million at once would hold a million mappings)."""
    parts = [b'{"sites":', orjson.dumps(sites)]
    if len(devices):
        parts.append(b',"devices":[')
        for start in range(0, len(devices), _DUMP_CHUNK):
            if start:
                parts.append(b",")
            parts.append(orjson.dumps(devices.documents(start, start + _DUMP_CHUNK))[1:-1])
        parts.append(b"]")
    parts.append(b"}\n")
    return b"".join(parts).decode("utf-8")


def _yaml_text(sites: list[dict[str, Any]], devices: DeviceColumns) -> str:
    """`dump_registry`'s text of a registry document given as the plain values pydantic dumps.

    A block sequence under a top-level key is written unindented, so the device list is the text of
    its chunks one after another."""
    parts = [_yaml({"sites": sites})]
    if len(devices):
        parts.append("devices:\n")
        for start in range(0, len(devices), _DUMP_CHUNK):
            parts.append(_yaml(devices.documents(start, start + _DUMP_CHUNK)))
    return "".join(parts)


def _yaml(data: object) -> str:
    return yaml.dump(data, Dumper=YAML_DUMPER, allow_unicode=True, sort_keys=False, width=120)


def dump_registry(sites: list[SiteSpec], devices: list[Device]) -> str:
    """The YAML text of a registry, as `load_registry` reads it."""
    data = RegistryFile(sites=sites, devices=devices).model_dump(mode="json", exclude_defaults=True)
    return yaml.dump(data, Dumper=YAML_DUMPER, allow_unicode=True, sort_keys=False, width=120)
