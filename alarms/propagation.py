"""Propagation up the place tree: a building, floor or zone shows the worst active alarm below it.

Pure: no database, no clock. Given the places and the alarms, every place gets the worst active
alarm at or below it, the worst active gas alarm apart (combustible-gas alarms are never mixed with
fire-side alarms, GB 50116-2013 §8.1.4), and how many active alarms of each category it holds, gas
counted apart. Each alarm is walked up its own path once, so the work is O(alarms × depth) plus one
entry per place.

Worst means: category first (fire, pre-alarm, supervisory, fault, hazard: `CATEGORY_RANK`), then
severity, then the alarm that has been active longest (the origin of a spreading fire), then the
lowest id, so the answer never depends on input order.

>>> fire = AlarmRecord(7, "smk-1", "smoke.alarm", AlarmCategory.FIRE, Severity.CRITICAL,
...                    "fire_alarm", "s/b/f/z/r1", AlarmState.ACTIVE_UNACKNOWLEDGED, 100.0)
>>> fault = AlarmRecord(8, "smk-2", "device.fault", AlarmCategory.FAULT, Severity.MINOR,
...                     "fire_alarm", "s/b/f/z2", AlarmState.ACTIVE_UNACKNOWLEDGED, 50.0)
>>> status = propagate(["s", "s/b", "s/b/f", "s/b/f/z", "s/b/f/z2", "s/b/f/z/r1"], [fire, fault])
>>> status["s/b"].worst.id, status["s/b"].worst.place
(7, 's/b/f/z/r1')
>>> sorted((c.value, n) for c, n in status["s/b"].counts.items())
[('fault', 1), ('fire', 1)]
>>> status["s/b/f/z2"].worst.id, status["s/b/f/z2"].total
(8, 1)
>>> status["s/b/f/z"].worst_gas is None
True
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from core.domain import CATEGORY_RANK, AlarmCategory, AlarmState, Severity, SystemType

SEVERITY_RANK: dict[Severity, int] = {s: i for i, s in enumerate(Severity)}  # critical first


@dataclass(frozen=True, slots=True)
class AlarmRecord:
    """What propagation needs of one alarm."""

    id: int
    device_id: str
    alarm_type: str
    category: AlarmCategory
    severity: Severity
    system: str
    place: str  # the device's place path, e.g. "sxzyy/b1/f3/z2/r305"
    state: AlarmState
    first_ts: float = 0.0

    @property
    def is_gas(self) -> bool:
        return self.system == SystemType.COMBUSTIBLE_GAS.value

    def rank(self) -> tuple[int, int, float, int]:
        """Sort key: lower is worse."""
        return (CATEGORY_RANK[self.category], SEVERITY_RANK[self.severity], self.first_ts, self.id)


_EMPTY: Mapping[AlarmCategory, int] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class PlaceStatus:
    """The active alarms at or below one place. Counts list only categories that occur."""

    path: str
    worst: AlarmRecord | None = None  # worst active alarm outside the gas system
    worst_gas: AlarmRecord | None = None  # worst active combustible-gas alarm
    counts: Mapping[AlarmCategory, int] = field(default_factory=lambda: _EMPTY)  # active non-gas alarms
    gas_counts: Mapping[AlarmCategory, int] = field(default_factory=lambda: _EMPTY)  # active gas alarms

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def gas_total(self) -> int:
        return sum(self.gas_counts.values())


class _Acc:
    __slots__ = ("counts", "gas_counts", "worst", "worst_gas")

    def __init__(self) -> None:
        self.worst: AlarmRecord | None = None
        self.worst_gas: AlarmRecord | None = None
        self.counts: dict[AlarmCategory, int] = {}
        self.gas_counts: dict[AlarmCategory, int] = {}

    def add(self, a: AlarmRecord) -> None:
        if a.is_gas:
            self.gas_counts[a.category] = self.gas_counts.get(a.category, 0) + 1
            if self.worst_gas is None or a.rank() < self.worst_gas.rank():
                self.worst_gas = a
        else:
            self.counts[a.category] = self.counts.get(a.category, 0) + 1
            if self.worst is None or a.rank() < self.worst.rank():
                self.worst = a


def ancestors(path: str) -> list[str]:
    """The path itself and every path above it, nearest first.

    >>> ancestors("s/b/f")
    ['s/b/f', 's/b', 's']
    """
    out = [path]
    cut = path.rfind("/")
    while cut > 0:
        out.append(path[:cut])
        cut = path.rfind("/", 0, cut)
    return out


def propagate(places: Iterable[str], alarms: Iterable[AlarmRecord]) -> dict[str, PlaceStatus]:
    """The status of every place given, and of every place above an active alarm.

    Alarms that are not active (cleared or closed) and alarms without a place are ignored; an alarm
    counts at its own place and at each place above it. Places without active alarms below them get
    an empty status.
    """
    acc: dict[str, _Acc] = {}
    for a in alarms:
        if not a.state.is_active or not a.place:
            continue
        for path in ancestors(a.place):
            entry = acc.get(path)
            if entry is None:
                entry = acc[path] = _Acc()
            entry.add(a)
    out = {
        path: PlaceStatus(
            path,
            e.worst,
            e.worst_gas,
            MappingProxyType(e.counts) if e.counts else _EMPTY,
            MappingProxyType(e.gas_counts) if e.gas_counts else _EMPTY,
        )
        for path, e in acc.items()
    }
    for path in places:
        if path not in out:
            out[path] = PlaceStatus(path)
    return out
