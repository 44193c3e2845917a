"""Registered devices held as columns, a `Device` made only when one is asked for.

A pydantic `Device` per device cost a million-device registry about 3.7 GB and 25 s to load
(docs/benchmarks.md, "Registry at scale"). Here ids and names are lists of strings, and every other
field is an integer code into one small table of the distinct values (a hospital has a handful of
profiles, departments and people, and its rooms by the thousand): a device is a row. `spec(row)`
builds the `Device` as it was specified, equal to the one pydantic would have validated.

`from_document` reads the device list of a parsed registry document (JSON or YAML) into columns,
checking each column in bulk against the `Device` schema; a document of any other shape returns
None, and the caller validates it with pydantic instead, whose messages then name the device.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt

from core.registry_spec import Device

Codes = npt.NDArray[np.int32]

# The `Device` fields, in the model's order; those below are required.
FIELDS = frozenset(Device.model_fields)
REQUIRED = ("id", "profile", "place")
# One line per value, so a whole column is checked by one match (ids cannot hold a newline).
_ID_LINES = re.compile(r"(?:[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\n)*")
_GATEWAY_LINES = re.compile(r"(?:[A-Za-z0-9._-]{0,64}\n)*")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def each_matches(lines: re.Pattern[str], values: list[str]) -> bool:
    """Every value matches `lines`' line pattern: the column checked in one match of its values one
    per line. A value holding a newline of its own would read as two lines that each match, so the
    lines are counted too (such an id is refused, as pydantic refuses it)."""
    joined = "".join(v + "\n" for v in values)
    return joined.count("\n") == len(values) and lines.fullmatch(joined) is not None
_ABSENT = object()  # a field a device does not give (unlike one given as null)


_NUMBERS: list[int] = []
_NUMBERS_LOCK = threading.Lock()


def numbered(keys: Sequence[Any]) -> dict[Any, int]:
    """`{key: its position}`, with the positions as int objects shared by every such dictionary:
    a million-device registry has several (rows by device id, by path, codes by value), and an int
    object of its own per entry (28 bytes; CPython shares only -5 to 256) cost about 28 MB each."""
    n = len(keys)
    with _NUMBERS_LOCK:
        if len(_NUMBERS) < n:
            _NUMBERS.extend(range(len(_NUMBERS), n))
        numbers = _NUMBERS  # only ever extended: its first n entries stay 0, 1, ..., n - 1
    return dict(zip(keys, itertools.islice(numbers, n), strict=True))


class Values:
    """The distinct field values of device columns, each named by its code (its position here).

    Append-only: a code, once given, names the same value for as long as the table lives, so a
    registry derived from another may share its table (`take`) while the first is read. `encode`
    is only run on a table no other registry reads yet (`extended` copies it first)."""

    def __init__(self, items: Iterable[Any] = ()) -> None:
        self.items: list[Any] = list(items)
        self._lookup: dict[Any, int] | None = None

    @property
    def _code(self) -> dict[Any, int]:
        """Codes by value, made when first needed: the tables of a loaded registry are read by
        code, and the devices' holds a path per place with devices (at a million devices this
        dictionary alone was about 40 MB)."""
        if self._lookup is None:
            self._lookup = numbered(self.items)
        return self._lookup

    def codes_of(self, wanted: Sequence[Any]) -> list[int]:
        """The codes of `wanted`, new values appended: while the table has no dictionary, by one
        pass over it (a registry's load needs the codes of a few departments, not the dictionary)."""
        if self._lookup is not None:
            return [self.code(value) for value in wanted]
        distinct = set(wanted)
        found = {value: code for code, value in enumerate(self.items) if value in distinct}
        for value in wanted:
            if value not in found:
                found[value] = len(self.items)
                self.items.append(value)
        return [found[value] for value in wanted]

    def copy(self) -> Values:
        return Values(self.items)

    def code(self, value: Any) -> int:
        code = self._code.get(value)
        if code is None:
            code = self._code[value] = len(self.items)
            self.items.append(value)
        return code

    def encode(self, column: Iterable[Any], n: int) -> Codes:
        """The codes of `n` values, new ones added: the lookups run in C (dict.setdefault over
        map), which a million devices need; new values get provisional codes, renumbered after."""
        base = len(self.items)
        codes = np.fromiter(map(self._code.setdefault, column, itertools.count(base)), np.int64, n)
        new = list(itertools.islice(self._code.items(), base, None))
        if new:
            renumber = np.zeros(n, dtype=np.int64)
            for j, (value, provisional) in enumerate(new):
                renumber[provisional - base] = self._code[value] = base + j
                self.items.append(value)
            fresh = codes >= base
            codes[fresh] = renumber[codes[fresh] - base]
        return codes.astype(np.int32)


@dataclass(frozen=True, eq=False, slots=True)
class DeviceColumns:
    """Devices as rows: `ids[row]`, `names[row]`, and codes into `values` for the other fields."""

    values: Values
    ids: list[str]
    names: list[str]
    profile: Codes
    place: Codes
    department: Codes  # as specified ('' where it is inherited from the room or zone)
    responsible: Codes
    installed: Codes  # a date or None
    gateway: Codes
    tags: Codes  # a tuple of tags
    given: Codes  # the frozenset of the fields given (pydantic's `model_fields_set`)
    position: npt.NDArray[np.float64]  # (rows, 2); 0 where has_position is False
    has_position: npt.NDArray[np.bool_]
    plan: npt.NDArray[np.float64]  # (rows, 2): x, y on the floor's plan; 0 where has_plan is False
    has_plan: npt.NDArray[np.bool_]

    def __len__(self) -> int:
        return len(self.ids)

    def spec(self, row: int) -> Device:
        """The device of `row` as specified."""
        return self.device(row, int(self.department[row]))

    def device(self, row: int, department: int) -> Device:
        """The device of `row` with the department of code `department` (an inherited one: the
        field counts as given, as pydantic's `model_copy(update=...)` made it)."""
        v = self.values.items
        given = set(v[self.given[row]])
        if department != self.department[row]:
            given.add("department")
        position = (
            (float(self.position[row, 0]), float(self.position[row, 1])) if self.has_position[row] else None
        )
        plan = (float(self.plan[row, 0]), float(self.plan[row, 1])) if self.has_plan[row] else None
        return Device.model_construct(
            given,
            id=self.ids[row],
            profile=v[self.profile[row]],
            place=v[self.place[row]],
            name=self.names[row],
            department=v[department],
            responsible=v[self.responsible[row]],
            installed=v[self.installed[row]],
            position=position,
            tags=list(v[self.tags[row]]),
            plan=plan,
            gateway=v[self.gateway[row]],
        )

    def documents(self, start: int, stop: int) -> list[dict[str, Any]]:
        """Rows `start` to `stop` as a registry document's devices, as `Device.model_dump(mode="json",
        exclude_defaults=True)` gives them, made from the columns without a `Device` per row (each
        distinct value decoded once)."""
        rows = slice(start, stop)
        v = self.values.items

        def decoded(codes: Codes, convert: Any = None) -> list[Any]:
            distinct = np.unique(codes).tolist()
            shown = [v[c] if convert is None else convert(v[c]) for c in distinct]
            return list(map(dict(zip(distinct, shown, strict=True)).__getitem__, codes.tolist()))

        positions: list[list[float] | None] = [
            xy if has else None
            for xy, has in zip(self.position[rows].tolist(), self.has_position[rows].tolist(), strict=True)
        ]
        plans: list[list[float] | None] = [
            xy if has else None
            for xy, has in zip(self.plan[rows].tolist(), self.has_plan[rows].tolist(), strict=True)
        ]
        out: list[dict[str, Any]] = []
        fields = zip(
            self.ids[rows],
            decoded(self.profile[rows]),
            decoded(self.place[rows]),
            self.names[rows],
            decoded(self.department[rows]),
            decoded(self.responsible[rows]),
            decoded(self.installed[rows], lambda d: None if d is None else d.isoformat()),
            positions,
            decoded(self.tags[rows]),
            plans,
            decoded(self.gateway[rows]),
            strict=True,
        )
        for (
            device_id,
            profile,
            place,
            name,
            department,
            responsible,
            installed,
            position,
            tags,
            plan,
            gateway,
        ) in fields:
            # A field equal to its default is left out, as exclude_defaults does.
            device: dict[str, Any] = {"id": device_id, "profile": profile, "place": place}
            if name != "":
                device["name"] = name
            if department != "":
                device["department"] = department
            if responsible != "":
                device["responsible"] = responsible
            if installed is not None:
                device["installed"] = installed
            if position is not None:
                device["position"] = position
            if tags:
                device["tags"] = list(tags)
            if plan is not None:
                device["plan"] = plan
            if gateway != "":
                device["gateway"] = gateway
            out.append(device)
        return out

    def take(self, rows: npt.NDArray[np.intp]) -> DeviceColumns:
        """These rows, in this order (the value table is shared: it is append-only)."""
        picked = rows.tolist()
        return DeviceColumns(
            self.values,
            [self.ids[r] for r in picked],
            [self.names[r] for r in picked],
            self.profile[rows],
            self.place[rows],
            self.department[rows],
            self.responsible[rows],
            self.installed[rows],
            self.gateway[rows],
            self.tags[rows],
            self.given[rows],
            self.position[rows],
            self.has_position[rows],
            self.plan[rows],
            self.has_plan[rows],
        )

    def extended(self, devices: Sequence[Device]) -> DeviceColumns:
        """These rows and `devices` after them, coded in a copy of the value table (so a registry
        built from this one never changes the table this one reads)."""
        more = DeviceColumns.from_devices(devices, self.values.copy())
        return DeviceColumns(
            more.values,
            [*self.ids, *more.ids],
            [*self.names, *more.names],
            *(
                np.concatenate([getattr(self, name), getattr(more, name)])
                for name in (
                    "profile",
                    "place",
                    "department",
                    "responsible",
                    "installed",
                    "gateway",
                    "tags",
                    "given",
                    "position",
                    "has_position",
                    "plan",
                    "has_plan",
                )
            ),
        )

    @classmethod
    def from_devices(cls, devices: Iterable[Device], values: Values | None = None) -> DeviceColumns:
        devices = list(devices)
        table = values if values is not None else Values()
        n = len(devices)
        positions = [d.position for d in devices]
        position = np.zeros((n, 2), dtype=np.float64)
        has_position = np.array([p is not None for p in positions], dtype=np.bool_).reshape(n)
        if has_position.any():
            position[has_position] = [p for p in positions if p is not None]
        plans = [d.plan for d in devices]
        plan = np.zeros((n, 2), dtype=np.float64)
        has_plan = np.array([p is not None for p in plans], dtype=np.bool_).reshape(n)
        if has_plan.any():
            plan[has_plan] = [p for p in plans if p is not None]
        return cls(
            table,
            [d.id for d in devices],
            [d.name for d in devices],
            table.encode((d.profile for d in devices), n),
            table.encode((d.place for d in devices), n),
            table.encode((d.department for d in devices), n),
            table.encode((d.responsible for d in devices), n),
            table.encode((d.installed for d in devices), n),
            table.encode((d.gateway for d in devices), n),
            table.encode((tuple(d.tags) for d in devices), n),
            table.encode((frozenset(d.model_fields_set) for d in devices), n),
            position,
            has_position,
            plan,
            has_plan,
        )

    @classmethod
    def from_document(cls, devices: object) -> DeviceColumns | None:
        """The `devices` list of a parsed registry document as columns, if every device is a
        mapping of `Device` fields with values of exactly the schema's types (strings, a date or
        an ISO date string, two numbers, a list of strings); None otherwise (validate with pydantic).
        """
        if type(devices) is not list:
            return None
        n = len(devices)
        if not all_of(devices, dict):
            return None
        if not set().union(*devices) <= FIELDS:
            return None
        ids, profiles, places = ([d.get(f, _ABSENT) for d in devices] for f in REQUIRED)
        names, departments, responsibles, gateways = (
            [d.get(f, "") for d in devices] for f in ("name", "department", "responsible", "gateway")
        )
        strings = (ids, profiles, places, names, departments, responsibles, gateways)
        if not all(all_of(column, str) for column in strings):
            return None
        if not (each_matches(_ID_LINES, ids) and each_matches(_GATEWAY_LINES, gateways)):
            return None
        installed = _dates([d.get("installed") for d in devices])
        tags = [d.get("tags", ()) for d in devices]
        if not all_of(tags, list, tuple) or not all_of(itertools.chain.from_iterable(tags), str):
            return None
        xy = _positions([d.get("position") for d in devices])
        on_plan = _positions([d.get("plan") for d in devices])
        if installed is None or xy is None or on_plan is None:
            return None
        fractions = on_plan[0][on_plan[1]]
        if not ((fractions >= 0.0) & (fractions <= 1.0)).all():  # NaN too: pydantic says which device
            return None
        table = Values()
        return cls(
            table,
            ids,
            names,
            table.encode(profiles, n),
            table.encode(places, n),
            table.encode(departments, n),
            table.encode(responsibles, n),
            table.encode(installed, n),
            table.encode(gateways, n),
            table.encode(map(tuple, tags), n),
            table.encode(map(frozenset, devices), n),
            *xy,
            *on_plan,
        )


def row_values(columns: DeviceColumns, row: int, department: int) -> tuple[Any, ...]:
    """The field values of a row, with the department of code `department`: equal for two rows
    exactly when the `Device`s made of them are."""
    v = columns.values.items
    return (
        columns.ids[row],
        columns.names[row],
        v[department],
        *(
            v[getattr(columns, name)[row]]
            for name in ("profile", "place", "responsible", "installed", "gateway", "tags")
        ),
        tuple(columns.position[row].tolist()) if columns.has_position[row] else None,
        tuple(columns.plan[row].tolist()) if columns.has_plan[row] else None,
    )


def all_of(values: Iterable[object], *types: type) -> bool:
    """Whether every value is exactly of one of `types` (a subclass, e.g. bool for int, is not)."""
    return set(map(type, values)) <= set(types)


def _dates(column: list[object]) -> list[date | None] | None:
    """Dates or None as pydantic reads them from JSON or YAML (a date, or 'YYYY-MM-DD'); None if
    any is something else."""
    read: dict[object, date | None] = {}
    try:
        distinct = set(column)
    except TypeError:  # a list or a mapping
        return None
    for value in distinct:
        if value is None or type(value) is date:
            read[value] = value
        elif type(value) is str and _ISO_DATE.fullmatch(value):
            try:
                read[value] = date.fromisoformat(value)
            except ValueError:
                return None
        else:
            return None
    return list(map(read.__getitem__, column))


def _positions(
    column: list[object],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]] | None:
    """(x, y per row, which rows have one) from [x, y] lists of numbers or None; None if any row
    holds something else."""
    n = len(column)
    has = np.fromiter((p is not None for p in column), np.bool_, n)
    given = [p for p in column if p is not None]
    position = np.zeros((n, 2), dtype=np.float64)
    if not given:
        return position, has
    if not all_of(given, list) or set(map(len, given)) != {2}:  # type: ignore[arg-type]
        return None
    xs = [p[0] for p in given]  # type: ignore[index]
    ys = [p[1] for p in given]  # type: ignore[index]
    if not all_of(xs, int, float) or not all_of(ys, int, float):
        return None
    try:
        position[has, 0] = xs
        position[has, 1] = ys
    except OverflowError:  # an integer too large for a float: pydantic says so
        return None
    return position, has
