"""Load and validate device profiles, reporting every problem with its file, line and column.

A profile is parsed once into PyYAML's node tree, which keeps where every node starts; pydantic's
error locations (``('detectors', 0, 'threshold', 'levels', 1, 'at')``) are then walked down that tree
to the offending node, so an operator is sent to the line to edit rather than to the top of the file.
An unknown key points at the key itself, a missing key at the mapping that lacks it, and a cross-field
check (hysteresis, a detector's channel) at the field it names (`schema.LocatedValueError`).

Two things YAML does silently are refused here, because both turn a typo into a setting nobody wrote:
a key given twice (YAML keeps the last) and a key YAML reads as something other than a string (YAML 1.1
reads an unquoted `on`, `off`, `yes`, `no` as booleans).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from device_profiles.schema import LocatedValueError, Profile, Strict

STR_TAG = "tag:yaml.org,2002:str"
MERGE_TAG = "tag:yaml.org,2002:merge"
KEY = "[key]"  # pydantic's location part for "the key of this mapping entry, not its value"

Loc = tuple[str | int, ...]


def shipped_profiles_dir() -> Path:
    """The profiles that ship inside the package (package data), used when no folder is given."""
    return Path(__file__).resolve().parent / "profiles"


@dataclass(frozen=True, order=True)
class ProfileIssue:
    """One problem in one profile file; sorts by file, then line, so a listing reads top to bottom."""

    file: str
    line: int  # 1-based
    column: int  # 1-based
    location: str  # dotted path into the profile, e.g. detectors[0].levels[1].at; "" for the whole file
    message: str

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        return f"{self.file}:{self.line}:{self.column}: {where}{self.message}"


class ProfileError(ValueError):
    """One or more profiles are invalid; `issues` says where and why."""

    def __init__(self, issues: Sequence[ProfileIssue]) -> None:
        self.issues = list(issues)
        super().__init__("invalid device profiles:\n" + "\n".join(f"  {i}" for i in self.issues))


@dataclass
class _Checked:
    """The outcome of checking one file: the profile if it is valid, and where its `id` is written
    (the place a duplicate id across files is reported)."""

    path: Path
    profile: Profile | None = None
    issues: list[ProfileIssue] = field(default_factory=list)
    id_mark: tuple[int, int] = (1, 1)


# --- locations ---------------------------------------------------------------------------------------


def _location(loc: Loc) -> str:
    """`('detectors', 0, 'levels', 1, 'at')` -> `detectors[0].levels[1].at`."""
    out = ""
    for part in loc:
        if part == KEY:
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _mark(node: yaml.Node) -> tuple[int, int]:
    """PyYAML counts from 0; editors and compilers count lines and columns from 1."""
    return node.start_mark.line + 1, node.start_mark.column + 1


def _entry(mapping: yaml.MappingNode, key: str) -> tuple[yaml.Node, yaml.Node] | None:
    """The (key node, value node) that YAML construction used for `key`.

    Searched from the end: after merge keys (`<<: *anchor`) are flattened, merged entries come first
    and the mapping's own entries after them, and the last one wins, as it does in the loaded data.
    """
    for key_node, value_node in reversed(mapping.value):
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag == STR_TAG and key_node.value == key:
            return key_node, value_node
    return None


def _is_union_tag(node: yaml.Node, part: str | int) -> bool:
    """Whether `part` is the discriminator value pydantic inserts for a tagged union member
    (`detectors.0.threshold.levels`): it names the member, and the YAML has no such key."""
    if not isinstance(node, yaml.MappingNode) or not isinstance(part, str) or _entry(node, part):
        return False
    tag = _entry(node, "type")
    return tag is not None and isinstance(tag[1], yaml.ScalarNode) and tag[1].value == part


def _resolve(root: yaml.Node, loc: Loc, at_key: bool) -> tuple[Loc, yaml.Node]:
    """Walk `loc` down the node tree: the location as the user wrote it, and the node to report.

    Stops at the deepest node that exists, so a missing key lands on the mapping that lacks it.
    With `at_key` (an unknown key), or when `loc` ends in pydantic's `[key]`, the key node is
    reported instead of its value.
    """
    node = root
    clean: list[str | int] = []
    parts = list(loc)
    for i, part in enumerate(parts):
        if part == KEY:
            continue
        if _is_union_tag(node, part):
            continue
        clean.append(part)
        rest = parts[i + 1 :]
        if isinstance(node, yaml.MappingNode):
            found = _entry(node, str(part))
            if found is None:
                return tuple(clean + [p for p in rest if p != KEY]), node
            want_key = (at_key and not rest) or rest == [KEY]
            node = found[0] if want_key else found[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
        else:
            return tuple(clean + [p for p in rest if p != KEY]), node
    return tuple(clean), node


# --- what pydantic says, said for a profile author ---------------------------------------------------


def _schema_keys() -> list[str]:
    """Every key any part of a profile accepts: the candidates for "did you mean"."""
    keys: set[str] = set()
    pending: list[type[BaseModel]] = [Strict]
    while pending:
        model = pending.pop()
        keys.update(model.model_fields)
        pending.extend(model.__subclasses__())
    return sorted(keys)


def _message(error: ErrorDetails, loc: Loc) -> str:
    """A message that says what to change; pydantic's own text where it already does."""
    kind = error["type"]
    if kind == "extra_forbidden":
        name = str(loc[-1]) if loc else "?"
        close = difflib.get_close_matches(name, _schema_keys(), n=1, cutoff=0.75)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown key {name!r} (not in the profile schema){hint}"
    if kind == "missing" and loc:
        return f"missing required key {loc[-1]!r}"
    cause = error.get("ctx", {}).get("error")
    if kind == "value_error" and isinstance(cause, ValueError):
        return str(cause)  # without pydantic's "Value error, " prefix
    return error["msg"]


def _validation_issues(path: Path, root: yaml.Node, exc: ValidationError) -> list[ProfileIssue]:
    """One issue per pydantic error, placed on the node the error is about."""
    issues = []
    for error in exc.errors():
        if error["type"] == "invalid_key":
            continue  # a non-string key; already reported at the key by _structure_issues
        loc: Loc = tuple(error["loc"])
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, LocatedValueError):
            loc += cause.loc
        clean, node = _resolve(root, loc, at_key=error["type"] == "extra_forbidden")
        line, column = _mark(node)
        issues.append(ProfileIssue(str(path), line, column, _location(clean), _message(error, clean)))
    return issues


# --- what YAML would do silently ---------------------------------------------------------------------


def _mappings(root: yaml.Node) -> Iterator[tuple[Loc, yaml.MappingNode]]:
    """Every mapping in the tree with its location, each node once (an alias repeats a node)."""
    seen: set[int] = set()
    stack: list[tuple[Loc, yaml.Node]] = [((), root)]
    while stack:
        loc, node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            yield loc, node
            for key_node, value_node in node.value:
                stack.append(((*loc, str(key_node.value)), value_node))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(((*loc, i), item) for i, item in enumerate(node.value))


_NOT_A_STRING = (
    "key {key!r} is not read as a string by YAML (YAML 1.1 reads unquoted on/off/yes/no as booleans);"
    " quote it or rename it"
)
_TWICE = "key {key!r} given twice (first on line {line}); YAML would silently keep only the last"


def _structure_issues(path: Path, root: yaml.Node) -> list[ProfileIssue]:
    """Keys given twice and keys YAML does not read as strings, found before YAML hides them."""
    issues = []
    for loc, mapping in _mappings(root):
        first: dict[str, yaml.Node] = {}
        for key_node, _ in mapping.value:
            if key_node.tag == MERGE_TAG:
                continue
            line, column = _mark(key_node)
            where = _location((*loc, str(key_node.value)))
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != STR_TAG:
                issues.append(
                    ProfileIssue(str(path), line, column, where, _NOT_A_STRING.format(key=key_node.value))
                )
                continue
            if key_node.value in first:
                earlier, _ = _mark(first[key_node.value])
                issues.append(
                    ProfileIssue(
                        str(path), line, column, where, _TWICE.format(key=key_node.value, line=earlier)
                    )
                )
            first.setdefault(key_node.value, key_node)
    return issues


# --- one file ----------------------------------------------------------------------------------------


def _parse(path: Path, text: str) -> tuple[yaml.Node | None, Any, list[ProfileIssue]]:
    """Compose the node tree, check its keys, then construct the data from that same tree.

    The key check must see the tree before construction, which flattens merge keys (`<<: *anchor`)
    in place; the tree returned is the flattened one, so a location inside a merged mapping resolves
    to the line the value was written on.
    """
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, None, []
        structure = _structure_issues(path, root)
        return root, loader.construct_document(root), structure
    finally:
        loader.dispose()


def _check_file(path: Path) -> _Checked:
    """Read, parse and validate one file; every problem becomes an issue, none is raised."""
    out = _Checked(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        out.issues.append(ProfileIssue(str(path), 1, 1, "", f"cannot read: {exc}"))
        return out
    try:
        root, data, structure = _parse(path, text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        out.issues.append(ProfileIssue(str(path), line, column, "", f"YAML syntax: {exc.problem or exc}"))
        return out
    if root is None or not isinstance(root, yaml.MappingNode) or not isinstance(data, dict):
        line, column = _mark(root) if root is not None else (1, 1)
        out.issues.append(ProfileIssue(str(path), line, column, "", "a profile must be a YAML mapping"))
        return out
    out.issues.extend(structure)
    found = _entry(root, "id")
    if found is not None:
        out.id_mark = _mark(found[1])
    try:
        profile = Profile.model_validate(data)
    except ValidationError as exc:
        out.issues.extend(_validation_issues(path, root, exc))
        return out
    if not out.issues:
        out.profile = profile
    return out


# --- many files --------------------------------------------------------------------------------------


def _files(paths: Iterable[Path | str]) -> tuple[list[Path], list[ProfileIssue]]:
    """Expand folders to their `*.yaml`; a path that is neither file nor folder is an issue."""
    files: list[Path] = []
    issues: list[ProfileIssue] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = sorted(path.glob("*.yaml"))
            if not found:
                issues.append(ProfileIssue(str(path), 1, 1, "", "no *.yaml profiles in this folder"))
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            issues.append(ProfileIssue(str(path), 1, 1, "", "no such file or folder"))
    return files, issues


def _check_all(files: Iterable[Path]) -> tuple[dict[str, Profile], list[ProfileIssue]]:
    """Check every file and the one rule that spans files: a profile id is defined once."""
    profiles: dict[str, Profile] = {}
    defined_in: dict[str, Path] = {}
    issues: list[ProfileIssue] = []
    for path in files:
        checked = _check_file(path)
        issues.extend(checked.issues)
        profile = checked.profile
        if profile is None:
            continue
        if profile.id in profiles:
            line, column = checked.id_mark
            message = f"profile id {profile.id!r} is also defined in {defined_in[profile.id]}"
            issues.append(ProfileIssue(str(path), line, column, "id", message))
            continue
        profiles[profile.id] = profile
        defined_in[profile.id] = path
    return profiles, issues


def validate_profiles(paths: Iterable[Path | str]) -> list[ProfileIssue]:
    """Every problem in the given files and folders (a folder means its `*.yaml`), sorted by file and
    line; an empty list means all are valid. Never raises for a bad profile: the CLI prints them all."""
    files, issues = _files(paths)
    _, found = _check_all(files)
    return sorted(issues + found)


def load_profile(path: Path | str) -> Profile:
    """One profile file; raises ProfileError with every problem in it."""
    checked = _check_file(Path(path))
    if checked.profile is None:
        raise ProfileError(sorted(checked.issues))
    return checked.profile


def load_profiles(directory: Path | str | None = None) -> dict[str, Profile]:
    """All profiles in a folder (default: the shipped ones), by id.

    All or nothing: one bad file raises ProfileError listing every problem, because a service
    running with a profile silently missing would leave its devices unmonitored.
    """
    folder = Path(directory) if directory is not None else shipped_profiles_dir()
    if not folder.is_dir():
        raise ProfileError([ProfileIssue(str(folder), 1, 1, "", "profiles folder does not exist")])
    files, issues = _files([folder])
    profiles, found = _check_all(files)
    if issues or found:
        raise ProfileError(sorted(issues + found))
    return profiles
