"""Load and validate device profiles, reporting every problem with its file, line and column.

PyYAML's node tree (``yaml.compose``) keeps where each node starts; pydantic's error locations
(``('detectors', 0, 'levels', 1, 'on')``) are walked down that tree to the offending node. An unknown
key points at the key itself; a missing key at the mapping that lacks it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from device_profiles.schema import Profile


def shipped_profiles_dir() -> Path:
    return Path(__file__).resolve().parent / "profiles"


@dataclass(frozen=True, order=True)
class ProfileIssue:
    file: str
    line: int  # 1-based
    column: int  # 1-based
    location: str  # e.g. detectors[0].levels[1].at
    message: str

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        return f"{self.file}:{self.line}:{self.column}: {where}{self.message}"


class ProfileError(ValueError):
    """One or more profiles are invalid; `issues` says where and why."""

    def __init__(self, issues: Sequence[ProfileIssue]) -> None:
        self.issues = list(issues)
        super().__init__("invalid device profiles:\n" + "\n".join(f"  {i}" for i in self.issues))


def _location(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _node_for(root: yaml.Node, loc: Sequence[int | str], unknown_key: bool) -> yaml.Node:
    """The deepest node along `loc`; for an unknown key, the key node itself."""
    node = root
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, yaml.MappingNode):
            match = next(
                ((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(part)),
                None,
            )
            if match is None:
                return node
            node = match[0] if (last and unknown_key) else match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
        else:
            return node
    return node


def _issues_from_validation(path: Path, root: yaml.Node, exc: ValidationError) -> list[ProfileIssue]:
    issues = []
    for error in exc.errors():
        # Discriminated unions add the tag ('threshold') to the location; it is not a YAML key.
        loc = [p for p in error["loc"] if not (isinstance(p, str) and p in ("threshold",))]
        unknown = error["type"] == "extra_forbidden"
        node = _node_for(root, loc, unknown)
        message = error["msg"]
        if unknown:
            message = "unknown key (not in the profile schema)"
        elif error["type"] == "missing":
            message = f"missing required key {loc[-1]!r}" if loc else message
        issues.append(
            ProfileIssue(
                str(path), node.start_mark.line + 1, node.start_mark.column + 1, _location(loc), message
            )
        )
    return issues


def _check_file(path: Path) -> tuple[Profile | None, list[ProfileIssue]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return None, [ProfileIssue(str(path), 1, 1, "", f"cannot read: {exc.strerror or exc}")]
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        return None, [ProfileIssue(str(path), line, col, "", f"YAML syntax: {exc.problem or exc}")]
    if root is None or not isinstance(data, dict):
        return None, [ProfileIssue(str(path), 1, 1, "", "a profile must be a YAML mapping")]
    try:
        return Profile.model_validate(data), []
    except ValidationError as exc:
        return None, _issues_from_validation(path, root, exc)


def _files(paths: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        out.extend(sorted(p.glob("*.yaml")) if p.is_dir() else [p])
    return out


def validate_profiles(paths: Iterable[Path]) -> list[ProfileIssue]:
    """Every problem in the given files and folders (a folder means its *.yaml), sorted by file and line."""
    _, issues = _load(_files(paths))
    return sorted(issues)


def _load(files: list[Path]) -> tuple[dict[str, Profile], list[ProfileIssue]]:
    profiles: dict[str, Profile] = {}
    where: dict[str, Path] = {}
    issues: list[ProfileIssue] = []
    for path in files:
        if not path.exists():
            issues.append(ProfileIssue(str(path), 1, 1, "", "no such file"))
            continue
        profile, found = _check_file(path)
        issues.extend(found)
        if profile is None:
            continue
        if profile.id in profiles:
            issues.append(
                ProfileIssue(
                    str(path), 1, 1, "id", f"profile id {profile.id!r} is also defined in {where[profile.id]}"
                )
            )
            continue
        profiles[profile.id] = profile
        where[profile.id] = path
    return profiles, issues


def load_profile(path: Path) -> Profile:
    profile, issues = _check_file(path)
    if profile is None:
        raise ProfileError(issues)
    return profile


def load_profiles(directory: Path | None = None) -> dict[str, Profile]:
    """All profiles in a folder (default: the shipped ones), by id; raises ProfileError if any is bad."""
    folder = directory or shipped_profiles_dir()
    if not folder.is_dir():
        raise ProfileError([ProfileIssue(str(folder), 1, 1, "", "profiles folder does not exist")])
    profiles, issues = _load(sorted(folder.glob("*.yaml")))
    if issues:
        raise ProfileError(sorted(issues))
    if not profiles:
        raise ProfileError([ProfileIssue(str(folder), 1, 1, "", "no *.yaml profiles in this folder")])
    return profiles
