"""The place tree held as columns: a `Place` or a `SiteSpec` made only when one is asked for.

A generated hospital has about one room per device, and a room held as a pydantic `RoomSpec`, a
`Place` and strings of its own cost a million-device registry about 500 MB (decision 0010). Here a
place is a row, in the order a walk of the tree meets it (a site, its first building, that
building's first floor, ..., its rooms, the next zone, ...): its level, its parent's row, the row
after its subtree, and integer codes into one table of distinct values for its id, name,
department, tags and the set of fields given. Only its path is a string of its own, the key the
registry is looked up by.

`from_document` reads the `sites` list of a parsed registry document (JSON or YAML) into columns,
checking each column in bulk against the `SiteSpec` schema; a tree of any other shape returns None,
and the caller validates it with pydantic instead, whose messages then name the field.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from core.device_columns import Values, all_of, each_matches, numbered
from core.registry_spec import (
    LEVELS,
    BuildingSpec,
    FloorSpec,
    PlaceKind,
    RoomSpec,
    SiteSpec,
    ZoneSpec,
)

Codes = npt.NDArray[np.int32]

SITE, BUILDING, FLOOR, ZONE, ROOM = range(5)  # levels, the positions of `LEVELS`
# Per level: its model, the fields a document may give, and the key of its children (None: a room).
MODELS: tuple[type[Any], ...] = (SiteSpec, BuildingSpec, FloorSpec, ZoneSpec, RoomSpec)
FIELDS: tuple[frozenset[str], ...] = tuple(frozenset(m.model_fields) for m in MODELS)
CHILDREN: tuple[str | None, ...] = ("buildings", "floors", "zones", "rooms", None)
# One line per id, so a whole column is checked by one match (`core.registry_spec.ID_RE`).
_ID_LINES = re.compile(r"(?:[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\n)*")
_NOTHING: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False, slots=True)
class PlaceColumns:
    """The place tree as rows in walk order; `row_of[path]` is a place's row.

    Read-only once made: registries derived from one another (a device added, removed, changed)
    share it."""

    values: Values
    paths: list[str]
    row_of: dict[str, int]  # the last row of a path defined twice (`duplicate` names the first)
    level: npt.NDArray[np.int8]
    parent: Codes  # the parent's row; -1 for a site
    end: Codes  # the row after this place's subtree
    id: Codes
    name: Codes
    department: Codes  # as given ('' where a zone or room gives none)
    in_effect: Codes  # a room's own department, else its zone's: `Place.department`
    tags: Codes  # a tuple of tags (rooms; () elsewhere)
    given: Codes  # the frozenset of the fields given (pydantic's `model_fields_set`)

    def __len__(self) -> int:
        return len(self.paths)

    def duplicate(self) -> str | None:
        """The first path (in walk order) that the tree defines twice, if any."""
        if len(self.row_of) == len(self.paths):
            return None
        seen: set[str] = set()
        for path in self.paths:
            if path in seen:
                return path
            seen.add(path)
        raise AssertionError("a path counted twice but not found twice")

    def kind(self, row: int) -> PlaceKind:
        return LEVELS[int(self.level[row])]

    def sites(self) -> list[SiteSpec]:
        """The tree as the `SiteSpec`s it was read from (equal to what pydantic validates, with the
        same fields set)."""
        v = self.values.items
        level, end, ids, names = self.level.tolist(), self.end.tolist(), self.id.tolist(), self.name.tolist()
        departments, tags, given = self.department.tolist(), self.tags.tolist(), self.given.tolist()

        def spec(row: int) -> Any:
            depth = level[row]
            fields: dict[str, Any] = {"id": v[ids[row]], "name": v[names[row]]}
            if depth >= ZONE:
                fields["department"] = v[departments[row]]
            children_key = CHILDREN[depth]
            if children_key is None:
                fields["tags"] = list(v[tags[row]])
            else:
                fields[children_key] = [spec(child) for child in self._children(row, end)]
            return MODELS[depth].model_construct(set(v[given[row]]), **fields)

        return [spec(row) for row in self._children(-1, end)]

    def document(self) -> list[dict[str, Any]]:
        """The `sites` of a registry document, as `SiteSpec.model_dump(mode="json",
        exclude_defaults=True)` gives them, made from the columns without a model per place."""
        v = self.values.items
        level, end, ids, names = self.level.tolist(), self.end.tolist(), self.id.tolist(), self.name.tolist()
        departments, tags = self.department.tolist(), self.tags.tolist()

        def dumped(row: int) -> dict[str, Any]:
            depth = level[row]
            out: dict[str, Any] = {"id": v[ids[row]], "name": v[names[row]]}
            if depth >= ZONE and v[departments[row]] != "":
                out["department"] = v[departments[row]]
            children_key = CHILDREN[depth]
            if children_key is None:
                if v[tags[row]]:
                    out["tags"] = list(v[tags[row]])
            elif end[row] > row + 1:
                out[children_key] = [dumped(child) for child in self._children(row, end)]
            return out

        return [dumped(row) for row in self._children(-1, end)]

    def _children(self, row: int, end: list[int]) -> Iterator[int]:
        """The rows of `row`'s children (-1: the sites): each starts where its elder sibling's
        subtree ends."""
        child, stop = row + 1, end[row] if row >= 0 else len(end)
        while child < stop:
            yield child
            child = end[child]

    @classmethod
    def from_sites(cls, sites: Iterable[SiteSpec]) -> PlaceColumns:
        """The columns of validated `SiteSpec`s."""
        dumped = [site.model_dump(exclude_unset=True) for site in sites]
        columns = cls.from_document(dumped)
        if columns is None:  # every value of a validated model is of the schema's exact type
            raise AssertionError("validated sites not taken as columns")
        return columns

    @classmethod
    def from_document(cls, sites: object) -> PlaceColumns | None:
        """The `sites` list of a parsed registry document as columns, if every place is a mapping
        of its level's fields with values of exactly the schema's types (strings, lists of places,
        a list of strings for tags); None otherwise (validate with pydantic)."""
        if type(sites) is not list:
            return None
        walk = _Walk()
        if not walk.add(sites, SITE, -1):
            return None
        places, level, parent, end = walk.places, walk.level, walk.parent, walk.end
        n = len(places)
        for depth, on_level in enumerate(walk.by_level):
            if not all_of(on_level, dict) or not set().union(*on_level) <= FIELDS[depth]:
                return None
        ids = [p.get("id") for p in places]
        names = [p.get("name") for p in places]
        departments = [p.get("department", "") for p in places]
        if not (all_of(ids, str) and all_of(names, str) and all_of(departments, str)):
            return None
        if not each_matches(_ID_LINES, ids):
            return None
        tags = [p.get("tags", _NOTHING) for p in places]
        if not all_of(tags, list, tuple) or not all_of(itertools.chain.from_iterable(tags), str):
            return None
        paths: list[str] = []
        for row in range(n):
            up = parent[row]
            paths.append(ids[row] if up < 0 else f"{paths[up]}/{ids[row]}")
        table = Values()
        department = table.encode(departments, n)
        parents = np.array(parent, dtype=np.int32)
        levels = np.array(level, dtype=np.int8)
        in_effect = department.copy()
        # A room without a department of its own has its zone's (rooms are only ever in zones).
        bare_rooms = (levels == ROOM) & (department == table.code(""))
        in_effect[bare_rooms] = department[parents[bare_rooms]]
        return cls(
            table,
            paths,
            numbered(paths),
            levels,
            parents,
            np.array(end, dtype=np.int32),
            table.encode(ids, n),
            table.encode(names, n),
            department,
            in_effect,
            table.encode(map(tuple, tags), n),
            table.encode(map(frozenset, places), n),
        )


class _Walk:
    """The places of a document's tree in walk order, with their level, parent and subtree end,
    and the places of each level (a level's fields are checked together)."""

    def __init__(self) -> None:
        self.places: list[Any] = []
        self.level: list[int] = []
        self.parent: list[int] = []
        self.end: list[int] = []
        self.by_level: list[list[Any]] = [[] for _ in LEVELS]

    def add(self, children: list[Any], depth: int, up: int) -> bool:
        """Append `children` (places at `depth` under row `up`) and their subtrees; False if a
        list of children is not a list."""
        self.by_level[depth].extend(children)
        key = CHILDREN[depth]
        if key is None:  # rooms, most of the tree: in bulk
            first, count = len(self.places), len(children)
            self.places.extend(children)
            self.level.extend([depth] * count)
            self.parent.extend([up] * count)
            self.end.extend(range(first + 1, first + count + 1))
            return True
        for place in children:
            row = len(self.places)
            self.places.append(place)
            self.level.append(depth)
            self.parent.append(up)
            self.end.append(0)
            if type(place) is dict:
                below = place.get(key, [])
                if type(below) is not list or (below and not self.add(below, depth + 1, row)):
                    return False
            self.end[row] = len(self.places)
        return True
