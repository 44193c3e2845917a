"""The registry as a document: YAML and CSV in and out, every problem with its line number.

Pure functions over text (no files, no service), so the API, a CLI and tests share them. YAML is
exactly what `load_registry` reads (the whole registry: place tree and devices); CSV is the device
list alone, one row per device, for spreadsheets, and is imported against an existing place tree.

>>> from core.registry import BuildingSpec, Device, FloorSpec, Registry, SiteSpec, ZoneSpec
>>> ward = ZoneSpec(id="z1", name="东区", department="心内科")
>>> site = SiteSpec(id="s1", name="医院", buildings=[BuildingSpec(id="b1", name="住院楼",
...     floors=[FloorSpec(id="f1", name="1F", zones=[ward])])])
>>> reg = Registry([site], [Device(id="smk-1", profile="smoke", place="s1/b1/f1/z1", name="走廊烟感",
...     tags=["corridor", "night"])])
>>> text = registry_to_csv(reg)
>>> text.splitlines()[1]
'smk-1,smoke,s1/b1/f1/z1,走廊烟感,,,,,,corridor;night,,,'
>>> [d.id for d in registry_from_csv(text, base=reg, profiles={"smoke"}).devices.values()]
['smk-1']
>>> registry_from_csv(text.replace("smoke,s1", "heat,s1"), base=reg, profiles={"smoke"})
Traceback (most recent call last):
...
core.registry_io.RegistryImportError: line 2: unknown profile 'heat' (known: smoke)
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml
from pydantic import ValidationError

from core.registry import YAML_LOADER, Device, Registry, RegistryError, RegistryFile, RegistryIssue

CSV_COLUMNS: tuple[str, ...] = (
    "id",
    "profile",
    "place",
    "name",
    "department",
    "responsible",
    "installed",
    "position_x",
    "position_y",
    "tags",
    "gateway",
    "plan_x",  # where on the floor's plan, fractions 0 to 1 (docs/floor-plans.md)
    "plan_y",
)
# Pairs of columns that make one field of a `Device`.
PAIRS = {"position": ("position_x", "position_y"), "plan": ("plan_x", "plan_y")}
REQUIRED_COLUMNS = ("id", "profile", "place")
TAG_SEPARATOR = ";"
BOM = "\ufeff"  # Excel reads a CSV file as UTF-8 (Chinese names intact) only when it starts with one
MAX_ISSUES = 1_000  # reported per import at most; the rest are counted


@dataclass(frozen=True, slots=True)
class LineIssue:
    """One problem of an imported document: the line it is on (None: the document as a whole)."""

    line: int | None
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line is not None else self.message


class RegistryImportError(RegistryError):
    """An imported registry document with problems; `lines` has every one, nothing was applied."""

    def __init__(self, lines: list[LineIssue]) -> None:
        shown = "; ".join(str(i) for i in lines[:20])
        more = f" (and {len(lines) - 20} more)" if len(lines) > 20 else ""
        super().__init__(shown + more, [RegistryIssue(str(i)) for i in lines])
        self.lines = lines


@dataclass(frozen=True, slots=True)
class RegistryDiff:
    """Which devices a new registry adds, removes and changes, and whether its place tree differs."""

    added: list[str]
    removed: list[str]
    changed: list[str]
    places_changed: bool

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.places_changed)


@dataclass(frozen=True, slots=True)
class RegistryChange:
    """What applying a registry did (or, for a dry run, would do)."""

    diff: RegistryDiff
    applied: bool
    persisted_to: Path | None  # the registry file now holding it; None: kept in memory only
    note: str


class RegistryControl(Protocol):
    """What the API needs to read and change the running service's registry (firewatch.service)."""

    @property
    def registry(self) -> Registry: ...

    @property
    def profile_ids(self) -> Collection[str]: ...

    def apply_registry(
        self, new: Registry | Callable[[Registry], Registry], *, dry_run: bool = False
    ) -> RegistryChange:
        """Validate `new` (or `new(current)`, built under the change lock so concurrent changes
        never lose one another) and swap it in; RegistryError, UnknownProfileError: nothing applied."""
        ...


def diff_registries(old: Registry, new: Registry) -> RegistryDiff:
    """Devices compare as the service sees them (inherited departments filled in).

    >>> from core.registry import SiteSpec
    >>> empty = Registry([SiteSpec(id="s1", name="医院")], [])
    >>> diff_registries(empty, empty).empty
    True
    """
    return RegistryDiff(
        added=sorted(new.devices.keys() - old.devices.keys()),
        removed=sorted(old.devices.keys() - new.devices.keys()),
        changed=sorted(
            d
            for d in old.devices.keys() & new.devices.keys()
            if old.device_key(d) != new.device_key(d)  # a location follows from the place
        ),
        places_changed=old.places != new.places,
    )


# --- CSV --------------------------------------------------------------------------------------------


def registry_to_csv(registry: Registry) -> str:
    """One row per device as specified (an empty department is inherited from the room or zone),
    tags joined with ';', preceded by a byte-order mark."""
    out = io.StringIO()
    out.write(BOM)
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for d in registry.specs.values():
        x, y = (_number(d.position[0]), _number(d.position[1])) if d.position is not None else ("", "")
        px, py = (_number(d.plan[0]), _number(d.plan[1])) if d.plan is not None else ("", "")
        writer.writerow(
            [
                d.id,
                d.profile,
                d.place,
                d.name,
                d.department,
                d.responsible,
                d.installed.isoformat() if d.installed else "",
                x,
                y,
                TAG_SEPARATOR.join(d.tags),
                d.gateway,
                px,
                py,
            ]
        )
    return out.getvalue()


def decode_text(data: bytes) -> str:
    """UTF-8 text (a leading byte-order mark dropped); otherwise an error naming the line."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise RegistryImportError(
            [LineIssue(line, "not UTF-8 text (save the spreadsheet as 'CSV UTF-8')")]
        ) from None


def devices_from_csv(text: str) -> list[tuple[int, Device]]:
    """The devices of a CSV document, each with the line its row starts on.

    Columns are matched by their header (any order; `id`, `profile` and `place` are required, the
    others optional); blank rows are skipped. Every bad row is reported, with its line number.

    >>> devices_from_csv("id,profile,place\\nd1,smoke,s1/b1/f1/z1\\n")[0][0]
    2
    >>> devices_from_csv("id,profile,place,colour\\n")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    core.registry_io.RegistryImportError: line 1: unknown column 'colour' (columns: id, profile, ...)
    """
    reader = csv.reader(io.StringIO(text.removeprefix(BOM), newline=""))
    issues: list[LineIssue] = []
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise RegistryImportError([LineIssue(1, f"not CSV: {exc}")]) from None
    if header is None:
        raise RegistryImportError([LineIssue(1, f"empty: expected the header {','.join(CSV_COLUMNS)}")])
    names = [h.strip() for h in header]
    for name in names:
        if name not in CSV_COLUMNS:
            issues.append(LineIssue(1, f"unknown column {name!r} (columns: {', '.join(CSV_COLUMNS)})"))
    for name in REQUIRED_COLUMNS:
        if name not in names:
            issues.append(LineIssue(1, f"missing column {name!r}"))
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        issues.append(LineIssue(1, f"columns listed twice: {', '.join(duplicated)}"))
    if issues:
        raise RegistryImportError(issues)
    devices: list[tuple[int, Device]] = []
    first_line: dict[str, int] = {}
    while True:
        line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            issues.append(LineIssue(line, f"not CSV: {exc}"))
            break
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(names):
            issues.append(LineIssue(line, f"{len(row)} fields, the header has {len(names)}"))
            continue
        try:
            device = _device(dict(zip(names, row, strict=True)))
        except _RowError as exc:
            issues.extend(LineIssue(line, m) for m in exc.messages)
            continue
        if device.id in first_line:
            issues.append(LineIssue(line, f"device {device.id!r} is already on line {first_line[device.id]}"))
            continue
        first_line[device.id] = line
        devices.append((line, device))
    if issues:
        raise RegistryImportError(_capped(issues))
    return devices


def registry_from_csv(text: str, *, base: Registry, profiles: Collection[str]) -> Registry:
    """`base`'s place tree with the CSV's devices; each row checked for its profile and place."""
    rows = devices_from_csv(text)
    line_of = {d.id: line for line, d in rows}
    issues = [
        LineIssue(n, _unknown_profile(d.profile, profiles)) for n, d in rows if d.profile not in profiles
    ]
    try:
        registry = base.with_devices(d for _, d in rows)
    except RegistryError as exc:
        issues += [LineIssue(line_of.get(i.device_id or ""), i.message) for i in exc.issues]
        registry = None
    if issues or registry is None:
        raise RegistryImportError(_capped(sorted(issues, key=lambda i: i.line or 0)))
    return registry


class _RowError(Exception):
    def __init__(self, messages: list[str]) -> None:
        self.messages = messages


def _device(cells: dict[str, str]) -> Device:
    paired = {column for pair in PAIRS.values() for column in pair}
    raw: dict[str, Any] = {k: v.strip() for k, v in cells.items() if k not in paired}
    messages: list[str] = []
    if not raw.get("installed"):
        raw.pop("installed", None)
    raw["tags"] = [t.strip() for t in raw.get("tags", "").split(TAG_SEPARATOR) if t.strip()]
    for field, (x_column, y_column) in PAIRS.items():
        x, y = cells.get(x_column, "").strip(), cells.get(y_column, "").strip()
        if x or y:
            if not (x and y):
                messages.append(f"{x_column} and {y_column} go together: give both or neither")
            else:
                raw[field] = (x, y)
    try:
        device = Device.model_validate(raw)
    except ValidationError as exc:
        for e in exc.errors():
            column = str(e["loc"][0]) if e["loc"] else "row"
            if column in PAIRS:
                column = PAIRS[column][0] if e["loc"][1:2] == (0,) else PAIRS[column][1]
            messages.append(f"{column}: {e['msg']} (got {_shown(e.get('input'))})")
        raise _RowError(messages) from None
    if messages:
        raise _RowError(messages)
    return device


# --- YAML -------------------------------------------------------------------------------------------


def registry_from_yaml(text: str, *, profiles: Collection[str]) -> Registry:
    """A whole registry from YAML (as `load_registry` reads it), its devices' profiles checked;
    each problem with the line it is on."""
    try:
        raw = yaml.load(text, Loader=YAML_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise RegistryImportError([LineIssue(line, f"not YAML: {problem}")]) from None
    try:
        spec = RegistryFile.model_validate(raw)
    except ValidationError as exc:
        root = _compose(text)
        raise RegistryImportError(
            _capped(
                [
                    LineIssue(
                        _line(root, e["loc"]),
                        f"{'.'.join(str(p) for p in e['loc']) or 'document'}: {e['msg']}",
                    )
                    for e in exc.errors()
                ]
            )
        ) from None
    position = {d.id: i for i, d in enumerate(spec.devices)}
    issues: list[tuple[str | None, str]] = [
        (d.id, f"device {d.id!r}: {_unknown_profile(d.profile, profiles)}")
        for d in spec.devices
        if d.profile not in profiles
    ]
    try:
        registry: Registry | None = Registry(spec.sites, spec.devices)
    except RegistryError as exc:
        issues += [(i.device_id, i.message) for i in exc.issues]
        registry = None
    if issues or registry is None:
        root = _compose(text)
        lines = [
            LineIssue(_line(root, ("devices", position[d]) if d in position else ()), message)
            for d, message in issues
        ]
        raise RegistryImportError(_capped(sorted(lines, key=lambda i: i.line or 0)))
    return registry


def _compose(text: str) -> yaml.Node | None:
    """The node tree, for line numbers (only on error: composing costs a second parse)."""
    try:
        return yaml.compose(text, Loader=YAML_LOADER)
    except yaml.YAMLError:
        return None


def _line(root: yaml.Node | None, loc: Iterable[int | str]) -> int | None:
    """The line of the deepest node along `loc` (a pydantic error location) that exists."""
    node = root
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        found: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            found = next((v for k, v in node.value if getattr(k, "value", None) == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            found = node.value[part]
        if found is None:
            break
        node = found
        line = node.start_mark.line + 1
    return line


# --- shared -----------------------------------------------------------------------------------------


def _unknown_profile(profile: str, profiles: Collection[str]) -> str:
    return f"unknown profile {profile!r} (known: {', '.join(sorted(profiles))})"


def _number(x: float) -> str:
    """Shortest text that reads back as `x`, and 2 for 2.0 (as a spreadsheet would show it)."""
    return repr(x).removesuffix(".0")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _capped(issues: list[LineIssue]) -> list[LineIssue]:
    if len(issues) <= MAX_ISSUES:
        return issues
    return [*issues[:MAX_ISSUES], LineIssue(None, f"{len(issues) - MAX_ISSUES} more problems not listed")]
