"""Drills (演练): which alarms belong to a declared drill, and who hears of them.

Pure values and decisions; the alarm service holds the drills in force as `DrillScope` values
(refreshed whenever a drill is declared or ended, alarms/drill_service.py), so tagging an alarm
reads no database on the alarm path.

Safety rules (docs/drills.md):
- Only fire-side alarms (火警, 预警) are tagged: a drill exercises the response to a fire. A fault,
  a supervisory signal or an offline device in a drill's places is as real during a drill as at any
  other time: pushed to the people on duty and ticketed as always.
- An alarm is tagged only when its device is under one of the drill's places and it is raised
  within the drill's window on the service clock (an ended drill's window ends when it was ended).
- A drill alarm joins only an incident of the same drill, and a real alarm never joins a drill's
  incident (the drill is part of the incident's grouping key), so a real fire in the same building
  during a drill is an incident of its own, told to the people on duty as always.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from core.domain import AlarmCategory, IncidentAction
from core.settings import PushRoute

# The service's MQTT alarm topic (firewatch/service.py): integrations read every transition there,
# drill alarms included, with their `drill_id` so they can tell them apart.
ALARM_TOPIC_NAME = "mqtt-alarm-topic"
# A drill is an exercise of hours, not a mode: a longer window is refused (docs/drills.md).
DRILL_MAX_S = 24 * 3600.0
# How far ahead a drill may be declared.
DRILL_AHEAD_MAX_S = 90 * 24 * 3600.0
TAGGED = frozenset({AlarmCategory.FIRE.value, AlarmCategory.PRE_ALARM.value})


@dataclass(frozen=True, slots=True)
class DrillScope:
    """A drill as the alarm path needs it: its places and its window (end: as ended, if early)."""

    id: int
    places: tuple[str, ...]
    start_ts: float
    end_ts: float

    def covers(self, place: str, now: float) -> bool:
        """Whether an alarm at `place` raised at `now` is part of this drill.

        >>> d = DrillScope(1, ("s/b1/f2",), 100.0, 200.0)
        >>> d.covers("s/b1/f2/z1/r3", 150.0), d.covers("s/b1/f20", 150.0), d.covers("s/b1/f2", 200.0)
        (True, False, False)
        """
        return self.start_ts <= now < self.end_ts and any(
            place == p or place.startswith(p + "/") for p in self.places
        )


def drill_of(scopes: Sequence[DrillScope], category: str, place: str, now: float) -> int | None:
    """The drill an alarm of `category` at `place` raised at `now` belongs to, if any (the first
    declared, when windows overlap)."""
    if category not in TAGGED or not place:
        return None
    for scope in scopes:
        if scope.covers(place, now):
            return scope.id
    return None


def group_suffix(drill_id: int | None) -> str:
    """What a drill adds to an incident's grouping key: its alarms group apart from real ones."""
    return "" if drill_id is None else f"#drill-{drill_id}"


def url_route_name(drill_id: int, n: int) -> str:
    """The push route name of a drill's `n`th Apprise URL (a route of its own in the dispatcher)."""
    return f"drill-{drill_id}-{n}"


# What a drill's recipients hear of its incidents: every step the people on duty would hear of a
# fire — the escalations, reminders and an overdue verification included, which the drill is there
# to exercise — but the silent ones (an alarm joining, the record closing).
DRILL_INCIDENT_ACTIONS: tuple[IncidentAction, ...] = tuple(
    a for a in IncidentAction if a not in (IncidentAction.JOINED, IncidentAction.CLOSED)
)


def recipient_routes(
    drill_id: int, route_names: Iterable[str], urls: Sequence[str], configured: Sequence[PushRoute]
) -> list[PushRoute]:
    """The routes a drill's incidents are pushed on: its named routes, as subscriptions to the
    incident steps people hear of (their duty roles and filters set aside: the drill chose them),
    and one route per Apprise URL; the alarm topic as always."""
    by_name = {r.name: r for r in configured}
    out: list[PushRoute] = []
    for name in route_names:
        route = by_name.get(name)
        if route is not None:
            unfiltered: dict[str, list[Any]] = {
                "roles": [],
                "categories": [],
                "sites": [],
                "departments": [],
                "incident_actions": list(DRILL_INCIDENT_ACTIONS),
            }
            out.append(route.model_copy(update=unfiltered))
    for n, url in enumerate(urls):
        out.append(
            PushRoute(
                name=url_route_name(drill_id, n), url=url, incident_actions=list(DRILL_INCIDENT_ACTIONS)
            )
        )
    if ALARM_TOPIC_NAME in by_name:
        out.append(by_name[ALARM_TOPIC_NAME])
    return out
