"""Incidents (火情/事件): which alarms are one thing to handle, and how far an incident has spread.

Pure decisions over place paths and small values; alarms/incident_service.py applies them to rows.

A control room handles a fire, not its detectors: one zone fire raised 21 cards and ~40 pushes a
minute when every alarm stood alone. So alarms are grouped:

- **fire**: fire and pre-alarms of every system but combustible gas, per building, for as long as
  the incident is open (a fire spreading over floors over an hour is still the one fire). The
  incident's place grows from the detector to its zone, floor and building as alarms join.
- **gas**: combustible-gas alarms apart (GB 50116-2013 §8.1.4), per building, likewise.
- **outage**: devices lost together (offline and outage alarms), per site, while the incident's last
  alarm is recent (`incident_gap_s`).
- **supervisory, fault, hazard**: per building and category, while recent.

Place paths are `site/building/floor/zone[/room]` (core/registry.py), so levels are path prefixes.

>>> kind_of(AlarmCategory.PRE_ALARM, "fire_alarm", "smoke.prealarm")
<IncidentKind.FIRE: 'fire'>
>>> kind_of(AlarmCategory.FIRE, "combustible_gas", "gas.alarm")
<IncidentKind.GAS: 'gas'>
>>> group_key(IncidentKind.FIRE, "s1/b2/f3/z1/r301"), group_key(IncidentKind.OUTAGE, "s1/b2/f3")
('s1/b2', 's1')
>>> common_place(["s1/b2/f3/z1/r301", "s1/b2/f3/z1/r302"]), common_place(["s1/b2/f3/z1", "s1/b2/f4/z1"])
('s1/b2/f3/z1', 's1/b2')
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from core.domain import CATEGORY_RANK, AlarmCategory, IncidentAction, IncidentKind, SystemType

OUTAGE_TYPES = frozenset({"device.offline", "device.outage"})
FIRE_SIDE = frozenset({AlarmCategory.FIRE, AlarmCategory.PRE_ALARM})

# Depth of each level in a place path (site = 1 part).
BUILDING_DEPTH, FLOOR_DEPTH, ZONE_DEPTH = 2, 3, 4


def kind_of(category: AlarmCategory, system: str, alarm_type: str) -> IncidentKind:
    """The kind of incident an alarm belongs to."""
    if alarm_type in OUTAGE_TYPES:
        return IncidentKind.OUTAGE
    if category in FIRE_SIDE:
        return IncidentKind.GAS if system == SystemType.COMBUSTIBLE_GAS.value else IncidentKind.FIRE
    return {
        AlarmCategory.SUPERVISORY: IncidentKind.SUPERVISORY,
        AlarmCategory.FAULT: IncidentKind.FAULT,
        AlarmCategory.DISABLED: IncidentKind.DISABLED,
    }.get(category, IncidentKind.HAZARD)


def latched_kind(kind: IncidentKind) -> bool:
    """Fire and gas incidents stay joinable while open, whatever their age: a fire that spreads
    slowly is still one fire. Other kinds group only alarms close in time."""
    return kind in (IncidentKind.FIRE, IncidentKind.GAS)


def prefix(path: str, depth: int) -> str:
    """The first `depth` parts of a place path ("" when the path is shallower)."""
    parts = path.split("/")
    return "/".join(parts[:depth]) if len(parts) >= depth else ""


def group_key(kind: IncidentKind, place: str) -> str:
    """What the alarms of one incident share: the site for outages, the building otherwise (the
    whole path when it is shallower, e.g. an alarm about a site)."""
    depth = 1 if kind is IncidentKind.OUTAGE else BUILDING_DEPTH
    return prefix(place, depth) or place


def common_place(places: Iterable[str]) -> str:
    """The deepest place holding all of `places` (their common path prefix, part by part)."""
    common: list[str] | None = None
    for place in places:
        parts = place.split("/")
        if common is None:
            common = parts
            continue
        n = 0
        while n < min(len(common), len(parts)) and common[n] == parts[n]:
            n += 1
        common = common[:n]
    return "/".join(common or [])


def worse(a: AlarmCategory, b: AlarmCategory) -> AlarmCategory:
    """The worse of two categories (fire first, CATEGORY_RANK)."""
    return a if CATEGORY_RANK[a] <= CATEGORY_RANK[b] else b


@dataclass(frozen=True, slots=True)
class Growth:
    """What one more alarm does to an incident's extent."""

    place: str  # the incident's place afterwards
    new_zone: str | None  # a zone it had not reached
    new_floor: str | None  # a floor it had not reached

    @property
    def spread(self) -> bool:
        """Meaningful to the people on duty: it reached another zone or floor (not its first)."""
        return self.new_zone is not None or self.new_floor is not None


def grow(places: Sequence[str], zones: Sequence[str], floors: Sequence[str], new_place: str) -> Growth:
    """The incident's extent after an alarm at `new_place` joins one with these places, zones and
    floors. The first zone and floor are not a spread; each later one is.

    >>> g = grow(["s/b/f1/z1/r1"], ["s/b/f1/z1"], ["s/b/f1"], "s/b/f1/z1/r2")
    >>> g.place, g.spread
    ('s/b/f1/z1', False)
    >>> g = grow(["s/b/f1/z1/r1"], ["s/b/f1/z1"], ["s/b/f1"], "s/b/f2/z1")
    >>> g.place, g.new_zone, g.new_floor
    ('s/b', 's/b/f2/z1', 's/b/f2')
    """
    zone = prefix(new_place, ZONE_DEPTH)
    floor = prefix(new_place, FLOOR_DEPTH)
    return Growth(
        common_place([*places, new_place]),
        zone if zone and zone not in zones else None,
        floor if floor and floor not in floors else None,
    )


# --- notices ---------------------------------------------------------------------------------------

# Pushed at once, never held or rate-limited: the first notice, a fire, a spread, a real fire, an
# escalation, an overdue verification and a person's reset (the stand-down). The alarms ending on
# their own (ENDED) is an update: a flapping detector must not push every cycle. Everything else an
# incident does is an update a route hears at most once per `incident_update_interval_s`, the latest
# replacing the one waiting; JOINED (one more detector) is never pushed: the board shows the count.
URGENT: frozenset[IncidentAction] = frozenset(
    {
        IncidentAction.OPENED,
        IncidentAction.UPGRADED,
        IncidentAction.SPREAD,
        IncidentAction.REOPENED,
        IncidentAction.CONFIRMED,
        IncidentAction.ESCALATED,
        IncidentAction.VERIFY_OVERDUE,
        IncidentAction.RESET,
    }
)
SILENT: frozenset[IncidentAction] = frozenset({IncidentAction.JOINED})


def urgent(action: IncidentAction) -> bool:
    return action in URGENT
